"""XSPEC's grouping and quality rules: which channels make each grouped bin.

The rules follow XSPEC 12's source (HEASoft ``DataUtility::patchGrouping``,
``OGIP_92aData::groupArrays``, ``OGIP_92aResponse::groupEbounds``):

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

Per-channel BACKSCAL/AREASCAL in bins
    As XSPEC, for TOTAL/BKG spectra a bin's scale is the counts-weighted
    harmonic mean ``sum(C_k) / sum(C_k / s_k)`` over its channels (the plain
    harmonic mean ``n / sum(1 / s_k)`` when the bin has no counts); for NET
    spectra (HDUCLAS2 = NET) it is the arithmetic mean.

Everything here works on arrays indexed by channel; :class:`~xspec_sbi.data.spectrum.Spectrum`
keeps the results.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = [
    "SpectrumError",
    "xspec_bin_index",
    "bin_quality",
    "bin_edge_positions",
    "grouping_matrix",
    "grouped_scale",
]


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


def bin_quality(bin_index: np.ndarray, quality: np.ndarray, n_bins: int) -> np.ndarray:
    """Quality of each grouped bin: the largest quality of its channels.

    Parameters
    ----------
    bin_index : numpy.ndarray, shape (n_chan,), int
        From :func:`xspec_bin_index` (-1: channel dropped).
    quality : numpy.ndarray, shape (n_chan,), int
        OGIP quality flags.
    n_bins : int
        Number of grouped bins.

    Returns
    -------
    numpy.ndarray, shape (n_bins,), int
    """
    good = bin_index >= 0
    out = np.zeros(n_bins, dtype=np.int64)
    np.maximum.at(out, bin_index[good], quality[good])
    return out


def bin_edge_positions(bin_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (row in the file) of the first and last channel of each grouped bin.

    Parameters
    ----------
    bin_index : numpy.ndarray, shape (n_chan,), int
        From :func:`xspec_bin_index`; dropped (quality-1) channels are skipped.

    Returns
    -------
    tuple of numpy.ndarray, each shape (n_bins,), int
        0-based channel positions.
    """
    good = np.flatnonzero(bin_index >= 0)
    b = bin_index[good]
    change = b[1:] != b[:-1]
    return good[np.r_[True, change]], good[np.r_[change, True]]


def grouping_matrix(bin_index: np.ndarray, n_bins: int) -> scipy.sparse.csr_matrix:
    """Sum channels into grouped bins.

    Parameters
    ----------
    bin_index : numpy.ndarray, shape (n_chan,), int
        From :func:`xspec_bin_index`.
    n_bins : int
        Number of grouped bins.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_bins, n_chan)
        Entry (b, c) is 1 when channel c belongs to bin b; dropped channels
        have an empty column.
    """
    good = np.flatnonzero(bin_index >= 0)
    return scipy.sparse.csr_matrix(
        (np.ones(good.size), (bin_index[good], good)),
        shape=(n_bins, bin_index.size))


def grouped_scale(values: float | np.ndarray, counts: np.ndarray, bin_index: np.ndarray,
                  n_bins: int, net: bool) -> np.ndarray:
    """XSPEC's BACKSCAL or AREASCAL of each grouped bin.

    Parameters
    ----------
    values : float or numpy.ndarray, shape (n_chan,)
        The scale, one value for the spectrum (keyword) or one per channel (column).
    counts : numpy.ndarray, shape (n_chan,)
        Counts per channel that weight the average.
    bin_index : numpy.ndarray, shape (n_chan,), int
        From :func:`xspec_bin_index` (-1: channel dropped).
    n_bins : int
        Number of grouped bins.
    net : bool
        True for a NET spectrum (HDUCLAS2 = NET): arithmetic mean.

    Returns
    -------
    numpy.ndarray, shape (n_bins,)
        A keyword scale repeated; a column scale averaged as the module
        docstring says (counts-weighted harmonic mean, or the plain harmonic
        mean in a bin without counts).
    """
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
