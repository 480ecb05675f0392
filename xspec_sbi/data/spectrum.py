"""A spectrum: counts, exposure, scales, grouping, quality, background, notice state.

:class:`Spectrum` is a frozen record built from arrays or, with
:func:`load_spectrum`, from a PHA file and the response and background files
it names (as XSPEC's ``data`` command). The grouping and quality rules are in
:mod:`xspec_sbi.data.grouping`, the ``ignore``/``notice`` grammar in
:mod:`xspec_sbi.data.selection`, the file readers in
:mod:`xspec_sbi.data.ogip_pha`.

Background
    The background is binned with the source's grouping, quality and notice
    state (as XSPEC does); its scales are averaged with its own counts
    (:func:`~xspec_sbi.data.grouping.grouped_scale`).

Why this module is over 400 lines: it is one record and its loader. The
record's methods (binning, selection, scales) are each a few lines calling
:mod:`~xspec_sbi.data.grouping` and :mod:`~xspec_sbi.data.selection`; most of
the length is their numpydoc. The loader stays beside the record because
every caller that reads a file imports both from here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse

from xspec_sbi.data import ogip, ogip_pha
from xspec_sbi.data import grouping as rules
from xspec_sbi.data.grouping import SpectrumError
from xspec_sbi.data.response import Response, load_response
from xspec_sbi.data.selection import apply_selection

__all__ = ["SpectrumError", "Spectrum", "load_spectrum"]


def _scale_value(value: float | np.ndarray, n_chan: int, name: str, where: str) -> float | np.ndarray:
    """BACKSCAL/AREASCAL as a float or an (n_chan,) array, checked finite and > 0."""
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
        bin_index = rules.xspec_bin_index(grouping, quality)
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
        return rules.bin_quality(self._bin_index, self.quality, self.n_bins_all)

    @cached_property
    def _bin_edges_pos(self) -> tuple[np.ndarray, np.ndarray]:
        return rules.bin_edge_positions(self._bin_index)

    # ----------------------------------------------------------------- binning

    @cached_property
    def grouping_matrix(self) -> scipy.sparse.csr_matrix:
        """scipy.sparse.csr_matrix, shape (n_bins_all, n_chan): 0/1, all grouped bins."""
        return rules.grouping_matrix(self._bin_index, self.n_bins_all)

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
        noticed = apply_selection(self.noticed, selection, value, bin_quality=self.bin_quality,
                                  bin_energies=self._all_bin_energies, label=self.label)
        return replace(self, noticed=noticed)

    # ------------------------------------------------------------ scales, bkg

    def binned_backscal(self) -> np.ndarray:
        """numpy.ndarray, shape (n_bins,): BACKSCAL per noticed bin (XSPEC averaging)."""
        return self._own_scale(self.backscal)[self.noticed]

    def binned_areascal(self) -> np.ndarray:
        """numpy.ndarray, shape (n_bins,): AREASCAL per noticed bin (XSPEC averaging)."""
        return self._own_scale(self.areascal)[self.noticed]

    def _own_scale(self, values: float | np.ndarray) -> np.ndarray:
        return rules.grouped_scale(values, self.counts, self._bin_index, self.n_bins_all,
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
        bkg_back = rules.grouped_scale(bkg.backscal, bkg.counts, self._bin_index, self.n_bins_all, net)
        bkg_area = rules.grouped_scale(bkg.areascal, bkg.counts, self._bin_index, self.n_bins_all, net)
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
            f"{keyword.lower()}='none' to load without it, or another path",
            keyword=keyword, missing=bare, spectrum=spectrum, from_header=from_header)


def _from_record(rec: ogip_pha.PHARecord, response: Response | None,
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
    rec = ogip_pha.read_pha(path, row=row)
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
        if bkg_row is None and rec.row is not None and ogip_pha.is_type2(bare):
            bkg_row = rec.row
        bkg_rec = ogip_pha.read_pha(bare, row=bkg_row)
        background = _from_record(bkg_rec, None, None)
    spectrum = _from_record(rec, response, background)
    return spectrum
