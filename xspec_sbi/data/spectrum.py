"""Spectra: counts, exposure, scales, grouping, quality, background, and
XSPEC's channel selection (``ignore``/``notice``).

The rules follow XSPEC 12's source (HEASoft ``DataUtility::patchGrouping``,
``OGIP_92aData::groupArrays``, ``OGIP_92aResponse::groupEbounds``,
``SpectralData::setChannels``/``setBadChannels``):

Quality and grouping at load time
    * QUALITY = 1 ("bad by software") channels are dropped: they belong to no
      bin, cannot be noticed, and their counts are never used.
    * QUALITY = 2 ("dubious") and 5 ("bad by user") channels stay, in bins that
      are noticed at load time; ``ignore("bad")`` ignores every bin whose
      quality (the largest quality of its channels) is not 0.
    * Grouping is first patched as XSPEC does: the first good channel always
      starts a bin; a run of consecutive channels with the same quality 2 or 5
      (quality-1 channels inside it skipped) starts a new bin at its first
      channel and the channel after it starts a new bin too, so good and
      dubious/bad channels never share a bin (grouping flags inside the run are
      kept). A quality-1 channel never starts a bin: good channels flagged -1
      after it continue the bin before it.

Channel numbers in ``ignore``/``notice``
    Integers are XSPEC's channel numbers: 1-based indices of the grouped bins
    (after quality-1 channels are dropped), whatever the file's first channel
    (TLMIN 0 or 1) is. For ungrouped data without quality-1 channels, channel
    ``k`` is the ``k``-th row of the file.

Energies in ``ignore``/``notice``
    Reals are keV. A grouped bin spans E_MIN of its first channel to E_MAX of
    its last (quality-1 channels excluded). For a range ``[a, b]`` the bins
    affected run from the first bin with upper edge >= a to the first bin with
    upper edge >= b, inclusive, over all grouped bins (noticed or not); nothing
    happens if the range lies entirely outside ``(lo_0, hi_last]``. So
    ``ignore("**-0.3")`` also ignores the bin that contains 0.3 keV, and a bin
    whose upper edge equals ``a`` in ``ignore("a-**")`` is ignored as well.
    ``**`` is the edge of the spectrum (``-b`` means ``**-b``); a single value
    selects one bin; ranges given backwards are swapped; a range is in keV when
    either end contains a ``.`` or an exponent. Channel ranges beyond the last
    bin are clipped; channel 0 or below is refused.

Per-channel BACKSCAL/AREASCAL in bins
    As XSPEC, for TOTAL/BKG spectra a bin's scale is the counts-weighted
    harmonic mean ``sum(C_k) / sum(C_k / s_k)`` over its channels (the plain
    harmonic mean ``n / sum(1 / s_k)`` when the bin has no counts); for NET
    spectra (HDUCLAS2 = NET) it is the arithmetic mean.

Background
    The background is binned with the source's grouping, quality and notice
    state (as XSPEC does); its scales are averaged with its own counts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse

from xspec_sbi.data import ogip
from xspec_sbi.data.response import Response, load_response

__all__ = ["SpectrumError", "Spectrum", "load_spectrum", "xspec_bin_index"]

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^(?P<a>\*\*|{_NUMBER})?(?:(?P<dash>-)(?P<b>\*\*|{_NUMBER}))?$")
_FUZZ_KEV = 1e-12  # XSPEC's margin for "**" in energy ranges


class SpectrumError(ValueError):
    """Inconsistent spectrum arrays, files or channel selections."""


def xspec_bin_index(grouping: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Grouped-bin index of each channel, following XSPEC's rules.

    Parameters
    ----------
    grouping : numpy.ndarray, shape (n_chan,), int
        1 starts a bin, -1 continues it.
    quality : numpy.ndarray, shape (n_chan,), int
        OGIP quality flags (0, 1, 2, 5).

    Returns
    -------
    numpy.ndarray, shape (n_chan,), int
        0-based index of the grouped bin holding each channel; -1 for quality-1
        channels, which XSPEC drops. See the module docstring for the rules.
    """
    group = np.array(grouping, dtype=np.int64).reshape(-1)
    qual = np.asarray(quality, dtype=np.int64).reshape(-1)
    n = group.size
    if qual.size != n:
        raise SpectrumError(f"grouping ({n}) and quality ({qual.size}) lengths differ")
    if n and group[0] == -1:
        group[0] = 1
    i = 0
    first_good = True
    # A plain loop: the rule is sequential and spectra have at most ~10^4 channels.
    while i < n:
        if qual[i] == 1:
            i += 1
            continue
        if first_good:
            group[i] = 1 if group[i] == -1 else group[i]
            first_good = False
        if qual[i] == 0 and group[i] == 1:
            i += 1
            while i < n and (qual[i] == 1 or (qual[i] == 0 and group[i] == -1)):
                i += 1
        elif qual[i] > 1:
            run_quality = qual[i]
            group[i] = 1
            while i < n and (qual[i] == run_quality or qual[i] == 1):
                i += 1
            if i < n and group[i] == -1:
                group[i] = 1
        else:
            i += 1
    good = qual != 1
    index = np.cumsum((group != -1) & good) - 1
    index[~good] = -1
    return index


def _grouped_scale(values: float | np.ndarray, counts: np.ndarray, bin_index: np.ndarray,
                   n_bins: int, net: bool) -> np.ndarray:
    """XSPEC's per-bin BACKSCAL/AREASCAL, shape (n_bins,)."""
    if np.ndim(values) == 0:
        return np.full(n_bins, float(values))
    good = bin_index >= 0
    b = bin_index[good]
    s = np.asarray(values, dtype=np.float64)[good]
    n = np.bincount(b, minlength=n_bins).astype(np.float64)
    if net:
        return np.bincount(b, weights=s, minlength=n_bins) / n
    c = counts[good]
    total = np.bincount(b, weights=c, minlength=n_bins)
    weighted = np.bincount(b, weights=c / s, minlength=n_bins)
    harmonic = n / np.bincount(b, weights=1.0 / s, minlength=n_bins)
    return np.where(weighted != 0, total / np.where(weighted != 0, weighted, 1.0), harmonic)


def _scale_value(value: float | np.ndarray, n_chan: int, name: str, where: str) -> float | np.ndarray:
    if np.ndim(value) == 0:
        out = float(value)
        ok = np.isfinite(out) and out > 0
    else:
        out = np.asarray(value, dtype=np.float64).reshape(-1)
        if out.size != n_chan:
            raise SpectrumError(f"{where}: {name} has {out.size} values for {n_chan} channels")
        ok = bool(np.all(np.isfinite(out)) and np.all(out > 0))
    if not ok:
        raise SpectrumError(f"{where}: {name} must be finite and > 0")
    return out


@dataclass(frozen=True, eq=False)
class Spectrum:
    """One spectrum with its response, background and XSPEC notice state.

    Build it from files with :func:`load_spectrum` or directly from arrays
    (only ``counts`` and ``exposure`` are required). "Changing" a spectrum
    (``ignore``, ``notice``, ``with_counts``...) returns a new one.

    Parameters
    ----------
    counts : numpy.ndarray, shape (n_chan,)
        Counts per channel (RATE files converted with EXPOSURE), >= 0.
    exposure : float
        Exposure time, s, > 0.
    channels : numpy.ndarray, shape (n_chan,), int, optional
        Channel numbers as in the file; default counts from the response's
        first channel (1 without a response).
    backscal, areascal : float or numpy.ndarray, shape (n_chan,), optional
        Background and area scaling, > 0 (default 1).
    grouping : numpy.ndarray, shape (n_chan,), int, optional
        1 starts a bin, -1 continues it (default all 1: ungrouped).
    quality : numpy.ndarray, shape (n_chan,), int, optional
        OGIP quality, 0 good (default all 0).
    noticed : numpy.ndarray, shape (n_bins_all,), bool, optional
        XSPEC notice state per grouped bin (default all noticed).
    response : Response, optional
        Detector response, with ``n_chan`` channels.
    background : Spectrum, optional
        Background spectrum with ``n_chan`` channels.
    path : str, optional
        Source file.
    row : int, optional
        Row of a type II file.
    poisserr : bool, optional
        POISSERR keyword.
    spectrum_type : str, optional
        HDUCLAS2: ``TOTAL`` (default), ``NET`` or ``BKG``.
    """

    counts: np.ndarray
    exposure: float
    channels: np.ndarray | None = None
    backscal: float | np.ndarray = 1.0
    areascal: float | np.ndarray = 1.0
    grouping: np.ndarray | None = None
    quality: np.ndarray | None = None
    noticed: np.ndarray | None = None
    response: Response | None = None
    background: Spectrum | None = None
    path: str | None = None
    row: int | None = None
    poisserr: bool = True
    spectrum_type: str = "TOTAL"

    def __post_init__(self) -> None:
        where = self.label
        counts = np.asarray(self.counts, dtype=np.float64).reshape(-1)
        n = counts.size
        if n == 0:
            raise SpectrumError(f"{where}: no channels")
        if not np.all(np.isfinite(counts)):
            raise SpectrumError(f"{where}: counts have non-finite values")
        if np.any(counts < 0):
            raise SpectrumError(f"{where}: negative counts (channel index "
                                f"{int(np.flatnonzero(counts < 0)[0])})")
        exposure = float(self.exposure)
        if not (np.isfinite(exposure) and exposure > 0):
            raise SpectrumError(f"{where}: exposure {self.exposure} s must be finite and > 0")
        if self.channels is None:
            start = self.response.first_channel if self.response is not None else 1
            channels = start + np.arange(n)
        else:
            channels = np.asarray(self.channels, dtype=np.int64).reshape(-1)
            if channels.size != n:
                raise SpectrumError(f"{where}: {channels.size} channel numbers for {n} counts")
        grouping = (np.ones(n, dtype=np.int64) if self.grouping is None
                    else np.asarray(self.grouping, dtype=np.int64).reshape(-1))
        quality = (np.zeros(n, dtype=np.int64) if self.quality is None
                   else np.asarray(self.quality, dtype=np.int64).reshape(-1))
        if grouping.size != n or quality.size != n:
            raise SpectrumError(f"{where}: grouping/quality lengths ({grouping.size}, "
                                f"{quality.size}) differ from {n} channels")
        if not np.all(np.isin(grouping, (-1, 1))):
            raise SpectrumError(f"{where}: grouping values must be 1 or -1")
        if np.any((quality < 0) | (quality > 5)):
            raise SpectrumError(f"{where}: quality values must be in 0..5")
        bin_index = xspec_bin_index(grouping, quality)
        n_bins_all = int(bin_index.max()) + 1 if np.any(bin_index >= 0) else 0
        if n_bins_all == 0:
            raise SpectrumError(f"{where}: every channel has quality 1 (bad); no bins left")
        if self.noticed is None:
            noticed = np.ones(n_bins_all, dtype=bool)
        else:
            noticed = np.asarray(self.noticed, dtype=bool).reshape(-1)
            if noticed.size != n_bins_all:
                raise SpectrumError(f"{where}: noticed has {noticed.size} entries for "
                                    f"{n_bins_all} grouped bins")
        if self.response is not None:
            if not isinstance(self.response, Response):
                raise SpectrumError(f"{where}: response must be a Response")
            if self.response.n_channels != n:
                raise SpectrumError(
                    f"{where}: spectrum has {n} channels but response "
                    f"{self.response.rmf_path or self.response.description} has "
                    f"{self.response.n_channels}")
        if self.background is not None:
            if not isinstance(self.background, Spectrum):
                raise SpectrumError(f"{where}: background must be a Spectrum")
            if self.background.n_channels != n:
                raise SpectrumError(f"{where}: spectrum has {n} channels but background "
                                    f"{self.background.label} has {self.background.n_channels}")
        spectrum_type = str(self.spectrum_type).strip().upper() or "TOTAL"
        sets = object.__setattr__
        sets(self, "counts", counts)
        sets(self, "exposure", exposure)
        sets(self, "channels", channels)
        sets(self, "backscal", _scale_value(self.backscal, n, "BACKSCAL", where))
        sets(self, "areascal", _scale_value(self.areascal, n, "AREASCAL", where))
        sets(self, "grouping", grouping)
        sets(self, "quality", quality)
        sets(self, "noticed", noticed)
        sets(self, "spectrum_type", spectrum_type)
        sets(self, "_bin_index", bin_index)
        sets(self, "_n_bins_all", n_bins_all)

    # ------------------------------------------------------------------ basics

    @property
    def label(self) -> str:
        """File name (with ``{row}``) or ``"<arrays>"``, for messages."""
        if self.path is None:
            return "<spectrum from arrays>"
        return self.path if self.row is None else f"{self.path}{{{self.row}}}"

    @property
    def n_channels(self) -> int:
        """Number of detector channels."""
        return self.counts.size

    @property
    def n_bins_all(self) -> int:
        """Number of grouped bins (quality-1 channels dropped), noticed or not."""
        return self._n_bins_all

    @property
    def n_bins(self) -> int:
        """Number of noticed grouped bins."""
        return int(self.noticed.sum())

    @property
    def bin_index(self) -> np.ndarray:
        """numpy.ndarray, shape (n_chan,), int: grouped bin of each channel, -1 if dropped."""
        return self._bin_index.copy()

    @cached_property
    def bin_quality(self) -> np.ndarray:
        """numpy.ndarray, shape (n_bins_all,), int: largest quality of each bin's channels."""
        good = self._bin_index >= 0
        out = np.zeros(self.n_bins_all, dtype=np.int64)
        np.maximum.at(out, self._bin_index[good], self.quality[good])
        return out

    @cached_property
    def _bin_edges_pos(self) -> tuple[np.ndarray, np.ndarray]:
        good = np.flatnonzero(self._bin_index >= 0)
        b = self._bin_index[good]
        change = b[1:] != b[:-1]
        return good[np.r_[True, change]], good[np.r_[change, True]]

    # ----------------------------------------------------------------- binning

    @cached_property
    def grouping_matrix(self) -> scipy.sparse.csr_matrix:
        """scipy.sparse.csr_matrix, shape (n_bins_all, n_chan): 0/1, all grouped bins."""
        good = np.flatnonzero(self._bin_index >= 0)
        return scipy.sparse.csr_matrix(
            (np.ones(good.size), (self._bin_index[good], good)),
            shape=(self.n_bins_all, self.n_channels))

    def binning_matrix(self) -> scipy.sparse.csr_matrix:
        """Sum channels into noticed bins.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (n_bins, n_chan)
            Entry (b, c) is 1 when channel c belongs to the b-th noticed bin.
        """
        return self.grouping_matrix[np.flatnonzero(self.noticed)]

    def binned_counts(self) -> np.ndarray:
        """numpy.ndarray, shape (n_bins,): counts in the noticed bins."""
        return self.binning_matrix() @ self.counts

    def bin_channels(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last channel number (as in the file) of each noticed bin.

        Returns
        -------
        tuple of numpy.ndarray, each shape (n_bins,), int
        """
        first, last = self._bin_edges_pos
        return self.channels[first][self.noticed], self.channels[last][self.noticed]

    def _all_bin_energies(self) -> tuple[np.ndarray, np.ndarray]:
        if self.response is None:
            raise SpectrumError(f"{self.label}: energies need a response (EBOUNDS); none loaded")
        first, last = self._bin_edges_pos
        return self.response.e_min[first], self.response.e_max[last]

    def bin_energies(self) -> tuple[np.ndarray, np.ndarray]:
        """Nominal energy bounds of the noticed bins (EBOUNDS of first/last channel).

        Returns
        -------
        tuple of numpy.ndarray, each shape (n_bins,)
            Lower and upper edges, keV.
        """
        lo, hi = self._all_bin_energies()
        return lo[self.noticed], hi[self.noticed]

    # --------------------------------------------------------------- selection

    def ignore(self, selection: str) -> Spectrum:
        """Ignore bins, with XSPEC's ``ignore`` syntax.

        Parameters
        ----------
        selection : str
            Comma- or space-separated ranges: integers are channel (grouped
            bin) numbers from 1, reals are keV, ``**`` an open end, e.g.
            ``"**-0.3 10.-**"``, ``"1-20,500-**"``; or ``"bad"`` (bins with
            quality != 0) or ``"all"``.

        Returns
        -------
        Spectrum
            A copy with the new notice state.
        """
        return self._select(selection, value=False)

    def notice(self, selection: str) -> Spectrum:
        """Notice bins, with XSPEC's ``notice`` syntax (``"all"`` resets).

        Parameters
        ----------
        selection : str
            As :meth:`ignore`, without ``"bad"``.

        Returns
        -------
        Spectrum
            A copy with the new notice state.
        """
        return self._select(selection, value=True)

    def _select(self, selection: str, value: bool) -> Spectrum:
        if not isinstance(selection, str):
            raise SpectrumError(f"{self.label}: selection must be a string, got {selection!r}")
        tokens = [t for t in re.split(r"[,\s]+", selection.strip()) if t]
        if not tokens:
            raise SpectrumError(f"{self.label}: empty channel selection")
        noticed = self.noticed.copy()
        for token in tokens:
            noticed[self._token_bins(token, value)] = value
        return replace(self, noticed=noticed)

    def _token_bins(self, token: str, value: bool) -> np.ndarray:
        """Indices (into all grouped bins) that one selection token addresses."""
        word = token.lower()
        if word == "all":
            return np.arange(self.n_bins_all)
        if word == "bad":
            if value:
                raise SpectrumError(f"{self.label}: 'notice bad' is not an XSPEC selection")
            return np.flatnonzero(self.bin_quality != 0)
        if ":" in token:
            raise SpectrumError(f"{self.label}: spectrum prefixes ('{token}') are not supported "
                                "here; a Spectrum is a single spectrum")
        match = _RANGE.match(token)
        if match is None or (match.group("a") is None and match.group("dash") is None):
            raise SpectrumError(f"{self.label}: cannot parse channel/energy range '{token}'")
        a = match.group("a")
        b = match.group("b") if match.group("dash") else a
        ends = [x for x in (a, b) if x not in (None, "**")]
        if any(("." in x) or ("e" in x.lower()) for x in ends):
            return self._energy_bins(a, b, token)
        return self._channel_bins(a, b, token)

    def _channel_bins(self, a: str | None, b: str | None, token: str) -> np.ndarray:
        start = 1 if a in (None, "**") else int(a)
        stop = self.n_bins_all if b in (None, "**") else int(b)
        if start > stop:
            start, stop = stop, start
        if start < 1:
            raise SpectrumError(f"{self.label}: channel {start} in '{token}'; XSPEC channel "
                                "numbers count grouped bins from 1")
        stop = min(stop, self.n_bins_all)
        return np.arange(start - 1, stop)

    def _energy_bins(self, a: str | None, b: str | None, token: str) -> np.ndarray:
        lo, hi = self._all_bin_energies()
        if np.any(np.diff(hi) < 0):
            raise SpectrumError(f"{self.label}: energy selection needs increasing EBOUNDS")
        begin = lo[0] - _FUZZ_KEV if a in (None, "**") else float(a)
        end = hi[-1] + _FUZZ_KEV if b in (None, "**") else float(b)
        if begin > end:
            begin, end = end, begin
        if not (end > lo[0] and begin <= hi[-1]):
            return np.arange(0)
        first = int(np.searchsorted(hi, begin, side="left"))
        last = min(int(np.searchsorted(hi, end, side="left")), self.n_bins_all - 1)
        return np.arange(first, last + 1)

    # ------------------------------------------------------------ scales, bkg

    def binned_backscal(self) -> np.ndarray:
        """numpy.ndarray, shape (n_bins,): BACKSCAL per noticed bin (XSPEC averaging)."""
        return self._own_scale(self.backscal)[self.noticed]

    def binned_areascal(self) -> np.ndarray:
        """numpy.ndarray, shape (n_bins,): AREASCAL per noticed bin (XSPEC averaging)."""
        return self._own_scale(self.areascal)[self.noticed]

    def _own_scale(self, values: float | np.ndarray) -> np.ndarray:
        return _grouped_scale(values, self.counts, self._bin_index, self.n_bins_all,
                              self.spectrum_type == "NET")

    def _require_background(self) -> Spectrum:
        if self.background is None:
            raise SpectrumError(f"{self.label}: no background spectrum")
        return self.background

    def binned_background_counts(self) -> np.ndarray:
        """Background counts in the source's noticed bins.

        Returns
        -------
        numpy.ndarray, shape (n_bins,)
            Background counts binned with the source's grouping, quality and
            notice state (the background's own grouping is not used).
        """
        return self.binning_matrix() @ self._require_background().counts

    def background_scale(self) -> np.ndarray:
        """Factor that scales background counts to the source region and exposure.

        Returns
        -------
        numpy.ndarray, shape (n_bins,)
            ``(t_src * AREASCAL_src * BACKSCAL_src) / (t_bkg * AREASCAL_bkg *
            BACKSCAL_bkg)`` per noticed bin, so that the expected background in
            the source spectrum is ``binned_background_counts() *
            background_scale()``. Scales are binned as XSPEC does (module
            docstring), the background's weighted by its own counts.
        """
        bkg = self._require_background()
        net = bkg.spectrum_type == "NET"
        bkg_back = _grouped_scale(bkg.backscal, bkg.counts, self._bin_index, self.n_bins_all, net)
        bkg_area = _grouped_scale(bkg.areascal, bkg.counts, self._bin_index, self.n_bins_all, net)
        src = self.exposure * self._own_scale(self.areascal) * self._own_scale(self.backscal)
        return (src / (bkg.exposure * bkg_area * bkg_back))[self.noticed]

    # ------------------------------------------------------------------ copies

    def with_counts(self, counts: np.ndarray) -> Spectrum:
        """Copy with other counts per channel (e.g. a simulation), same set-up."""
        return replace(self, counts=counts)

    def with_response(self, response: Response | None) -> Spectrum:
        """Copy with another response (channel count checked)."""
        return replace(self, response=response)

    def with_background(self, background: Spectrum | None) -> Spectrum:
        """Copy with another background (channel count checked)."""
        return replace(self, background=background)


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------

def _explicit_file(value: str | os.PathLike | None, header_value: str | None) -> tuple[str | None, bool]:
    """(path or None, came_from_header). An explicit 'none' or '' means no file."""
    if value is None:
        return header_value, True
    text = os.fspath(value).strip()
    if not text or text.lower() == "none":
        return None, False
    return text, False


def _require_file(path: str, keyword: str, from_header: bool, spectrum: str) -> None:
    bare, _ = ogip.split_row_suffix(path)
    if not os.path.isfile(bare):
        origin = f"{keyword} keyword" if from_header else f"{keyword.lower()} argument"
        raise ogip.OGIPFileNotFoundError(
            f"{spectrum}: file {bare} (from the {origin}) not found; pass "
            f"{keyword.lower()}='none' to load without it, or another path")


def _from_record(rec: ogip.PHARecord, response: Response | None,
                 background: Spectrum | None) -> Spectrum:
    return Spectrum(counts=rec.counts, exposure=rec.exposure, channels=rec.channels,
                    backscal=rec.backscal, areascal=rec.areascal, grouping=rec.grouping,
                    quality=rec.quality, response=response, background=background,
                    path=rec.path, row=rec.row, poisserr=rec.poisserr,
                    spectrum_type=rec.spectrum_type)


def load_spectrum(
    path: str | os.PathLike,
    *,
    row: int | None = None,
    respfile: str | os.PathLike | None = None,
    ancrfile: str | os.PathLike | None = None,
    backfile: str | os.PathLike | None = None,
) -> Spectrum:
    """Load a spectrum with its response and background, as XSPEC's ``data``.

    Parameters
    ----------
    path : str or path-like
        PHA file; ``file.pha{N}`` selects row N of a type II file.
    row : int, optional
        1-based row of a type II file (same as ``{N}``).
    respfile, ancrfile, backfile : str or path-like, optional
        None (default) uses the RESPFILE/ANCRFILE/BACKFILE keyword, resolved
        relative to the spectrum's folder (blank or ``none...`` meaning no
        file). An explicit ``"none"`` (any case) or ``""`` means no file; any
        other value is a path (relative to the working directory).

    Returns
    -------
    Spectrum
        All grouped bins noticed. The background is read with the source's row
        when it is a type II file without its own ``{N}``.

    Raises
    ------
    ogip.OGIPFileNotFoundError
        The spectrum, or a file it names, does not exist.
    ogip.OGIPError, response.ResponseError, SpectrumError
        Malformed files, mismatched grids or channel counts.

    Notes
    -----
    An ARF without an RMF is skipped when it comes from the header (as XSPEC
    does) and refused when passed explicitly. Spectrum and response channels
    are matched by position (XSPEC checks only their number), so a spectrum
    numbered from 0 works with a response whose TLMIN is 1.
    """
    rec = ogip.read_pha(path, row=row)
    label = rec.path if rec.row is None else f"{rec.path}{{{rec.row}}}"
    rmf, rmf_from_header = _explicit_file(respfile, rec.respfile)
    arf, arf_from_header = _explicit_file(ancrfile, rec.ancrfile)
    bkg, bkg_from_header = _explicit_file(backfile, rec.backfile)

    response = None
    if rmf is not None:
        _require_file(rmf, "RESPFILE", rmf_from_header, label)
        if arf is not None:
            _require_file(arf, "ANCRFILE", arf_from_header, label)
        response = load_response(rmf, arf)
    elif arf is not None and not arf_from_header:
        raise SpectrumError(f"{label}: ancrfile={arf!r} given but no response (RMF) to apply it to")

    background = None
    if bkg is not None:
        _require_file(bkg, "BACKFILE", bkg_from_header, label)
        bare, bkg_row = ogip.split_row_suffix(bkg)
        if bkg_row is None and rec.row is not None and ogip.is_type2(bare):
            bkg_row = rec.row
        bkg_rec = ogip.read_pha(bare, row=bkg_row)
        background = _from_record(bkg_rec, None, None)
    spectrum = _from_record(rec, response, background)
    return spectrum
