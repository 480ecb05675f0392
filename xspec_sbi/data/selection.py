"""XSPEC's channel selection grammar (``ignore``/``notice``), on grouped bins.

The rules follow XSPEC 12's source (HEASoft ``SpectralData::setChannels``/
``setBadChannels``):

Channel numbers
    Integers are XSPEC's channel numbers: 1-based indices of the grouped bins
    (after quality-1 channels are dropped), whatever the file's first channel
    (TLMIN 0 or 1) is. For ungrouped data without quality-1 channels, channel
    ``k`` is the ``k``-th row of the file.

Energies
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

Words
    ``all`` selects every bin; ``bad`` (``ignore`` only) the bins whose quality
    is not 0.

:meth:`Spectrum.ignore <xspec_sbi.data.spectrum.Spectrum.ignore>` and
``notice`` call :func:`apply_selection`.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from xspec_sbi.data.grouping import SpectrumError

__all__ = ["BinEnergies", "apply_selection", "selection_bins"]

_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^(?P<a>\*\*|{_NUMBER})?(?:(?P<dash>-)(?P<b>\*\*|{_NUMBER}))?$")
_FUZZ_KEV = 1e-12  # XSPEC's margin for "**" in energy ranges

#: ``() -> (lo, hi)``: lower and upper energy of every grouped bin, keV, each (n_bins_all,).
BinEnergies = Callable[[], tuple[np.ndarray, np.ndarray]]


def apply_selection(noticed: np.ndarray, selection: str, value: bool, *,
                    bin_quality: np.ndarray, bin_energies: BinEnergies,
                    label: str) -> np.ndarray:
    """Notice state after one XSPEC ``ignore`` (``value=False``) or ``notice`` (``True``).

    Parameters
    ----------
    noticed : numpy.ndarray, shape (n_bins_all,), bool
        Notice state before, one entry per grouped bin.
    selection : str
        Comma- or space-separated ranges, e.g. ``"**-0.3 10.-**"``,
        ``"1-20,500-**"``, ``"bad"`` or ``"all"`` (module docstring).
    value : bool
        True to notice the selected bins, False to ignore them.
    bin_quality : numpy.ndarray, shape (n_bins_all,), int
        Quality of each grouped bin (for ``bad``).
    bin_energies : callable
        ``() -> (lo, hi)`` in keV of every grouped bin; called only for energy
        ranges, so a spectrum without a response fails only when one is asked.
    label : str
        Spectrum name, for messages.

    Returns
    -------
    numpy.ndarray, shape (n_bins_all,), bool
        A new notice state (the input is not changed).

    Raises
    ------
    SpectrumError
        A selection that is not a string, is empty or cannot be parsed, a
        channel below 1, ``notice bad``, or a spectrum prefix (``1:``).
    """
    if not isinstance(selection, str):
        raise SpectrumError(f"{label}: selection must be a string, got {selection!r}")
    tokens = [t for t in re.split(r"[,\s]+", selection.strip()) if t]
    if not tokens:
        raise SpectrumError(f"{label}: empty channel selection")
    out = np.array(noticed, dtype=bool, copy=True)
    for token in tokens:
        out[selection_bins(token, value, n_bins_all=out.size, bin_quality=bin_quality,
                           bin_energies=bin_energies, label=label)] = value
    return out


def selection_bins(token: str, value: bool, *, n_bins_all: int, bin_quality: np.ndarray,
                   bin_energies: BinEnergies, label: str) -> np.ndarray:
    """Indices (into all grouped bins) that one selection token addresses.

    Parameters
    ----------
    token : str
        One range or word, e.g. ``"0.3-10."``, ``"5"``, ``"**-20"``, ``"bad"``.
    value : bool
        True for ``notice`` (which refuses ``bad``), False for ``ignore``.
    n_bins_all : int
        Number of grouped bins, noticed or not.
    bin_quality, bin_energies, label
        As in :func:`apply_selection`.

    Returns
    -------
    numpy.ndarray, int
        0-based bin indices, possibly empty.
    """
    word = token.lower()
    if word == "all":
        return np.arange(n_bins_all)
    if word == "bad":
        if value:
            raise SpectrumError(f"{label}: 'notice bad' is not an XSPEC selection")
        return np.flatnonzero(bin_quality != 0)
    if ":" in token:
        raise SpectrumError(f"{label}: spectrum prefixes ('{token}') are not supported "
                            "here; a Spectrum is a single spectrum")
    match = _RANGE.match(token)
    if match is None or (match.group("a") is None and match.group("dash") is None):
        raise SpectrumError(f"{label}: cannot parse channel/energy range '{token}'")
    a = match.group("a")
    b = match.group("b") if match.group("dash") else a
    ends = [x for x in (a, b) if x not in (None, "**")]
    if any(("." in x) or ("e" in x.lower()) for x in ends):
        return _energy_bins(a, b, bin_energies, n_bins_all, label)
    return _channel_bins(a, b, token, n_bins_all, label)


def _channel_bins(a: str | None, b: str | None, token: str, n_bins_all: int,
                  label: str) -> np.ndarray:
    start = 1 if a in (None, "**") else int(a)
    stop = n_bins_all if b in (None, "**") else int(b)
    if start > stop:
        start, stop = stop, start
    if start < 1:
        raise SpectrumError(f"{label}: channel {start} in '{token}'; XSPEC channel "
                            "numbers count grouped bins from 1")
    stop = min(stop, n_bins_all)
    return np.arange(start - 1, stop)


def _energy_bins(a: str | None, b: str | None, bin_energies: BinEnergies, n_bins_all: int,
                 label: str) -> np.ndarray:
    lo, hi = bin_energies()
    if np.any(np.diff(hi) < 0):
        raise SpectrumError(f"{label}: energy selection needs increasing EBOUNDS")
    begin = lo[0] - _FUZZ_KEV if a in (None, "**") else float(a)
    end = hi[-1] + _FUZZ_KEV if b in (None, "**") else float(b)
    if begin > end:
        begin, end = end, begin
    if not (end > lo[0] and begin <= hi[-1]):
        return np.arange(0)
    first = int(np.searchsorted(hi, begin, side="left"))
    last = min(int(np.searchsorted(hi, end, side="left")), n_bins_all - 1)
    return np.arange(first, last + 1)
