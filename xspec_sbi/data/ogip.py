"""Raw readers for OGIP spectral files: PHA (type I/II), RMF/RSP and ARF.

Each reader returns a small frozen record of columns and header values and
checks the header loudly: a missing file, a missing HDU or column, a
non-monotonic energy grid, negative or NaN counts, an out-of-range row raise
:class:`OGIPError` (a ``ValueError``) or :class:`OGIPFileNotFoundError` (a
``FileNotFoundError``) whose message names the file and the fault. The
readers know nothing about grouping rules, channel selection or physics;
:mod:`xspec_sbi.data.spectrum` and :mod:`xspec_sbi.data.response` build on them.

Conventions follow XSPEC 12 (HEASoft's ``OGIP_92aData``/``OGIP_92aIO``):
a RATE column wins over COUNTS, EXPOSURE/BACKSCAL/AREASCAL are read from a
column when there is one and from the keyword otherwise, RESPFILE/ANCRFILE/
BACKFILE values that are blank or start with ``none`` (any case) mean "no
file", and an RMF without ``TLMIN`` for ``F_CHAN`` is taken to start at
channel 1.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from astropy.io import fits

__all__ = [
    "OGIPError",
    "OGIPFileNotFoundError",
    "PHARecord",
    "RMFRecord",
    "ARFRecord",
    "split_row_suffix",
    "is_type2",
    "read_pha",
    "read_rmf",
    "read_arf",
    "read_header_keywords",
    "observation_time",
]

_ROW_SUFFIX = re.compile(r"^(?P<path>.*)\{(?P<row>\s*\d+\s*)\}\s*$")
_QUALITY_RANGE = (0, 5)  # XSPEC accepts 0..5; OGIP defines 0, 1, 2, 5


class OGIPError(ValueError):
    """An OGIP file whose content breaks the standard or our checks."""


class OGIPFileNotFoundError(FileNotFoundError):
    """An OGIP file (or a file named by a header keyword) that does not exist."""


@dataclass(frozen=True, eq=False)
class PHARecord:
    """Columns and header values of one spectrum (a type I file or a type II row).

    Parameters
    ----------
    path : str
        File path without any ``{row}`` suffix.
    row : int or None
        1-based row of a type II file; None for type I.
    channels : numpy.ndarray, shape (n_chan,), int
        Channel numbers (CHANNEL column, or 1..n_chan when absent).
    counts : numpy.ndarray, shape (n_chan,), float
        Counts per channel; a RATE column is multiplied by EXPOSURE.
    exposure : float
        Exposure time, s.
    backscal, areascal : float or numpy.ndarray, shape (n_chan,)
        Scaling factors, keyword (float) or column (array); 1 when absent.
    grouping : numpy.ndarray, shape (n_chan,), int
        1 starts a group, -1 continues it (OGIP 0 is read as 1); all 1 when absent.
    quality : numpy.ndarray, shape (n_chan,), int
        0 good, 1 bad (software), 2 dubious, 5 bad (user); all 0 when absent.
    poisserr : bool
        POISSERR keyword (False when absent, as XSPEC assumes).
    stat_err : numpy.ndarray or None, shape (n_chan,)
        STAT_ERR column in counts (converted like RATE), None when absent.
    respfile, ancrfile, backfile : str or None
        Header file names resolved relative to the spectrum's folder; None when
        the keyword is absent, blank or ``none``. A ``{N}`` row suffix is kept.
    detchans : int or None
        DETCHANS keyword.
    tlmin : int or None
        TLMIN of the CHANNEL column.
    spectrum_type : str
        HDUCLAS2 (``TOTAL``, ``NET``, ``BKG``); ``TOTAL`` when absent.
    was_rate : bool
        True when the file stored RATE (counts were derived with EXPOSURE).
    telescope, instrument : str
        TELESCOP and INSTRUME keywords (empty when absent).
    """

    path: str
    row: int | None
    channels: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: float | np.ndarray
    areascal: float | np.ndarray
    grouping: np.ndarray
    quality: np.ndarray
    poisserr: bool
    stat_err: np.ndarray | None
    respfile: str | None
    ancrfile: str | None
    backfile: str | None
    detchans: int | None
    tlmin: int | None
    spectrum_type: str
    was_rate: bool
    telescope: str
    instrument: str


@dataclass(frozen=True, eq=False)
class RMFRecord:
    """An RMF or RSP matrix with its EBOUNDS.

    Parameters
    ----------
    path : str
        File path.
    energ_lo, energ_hi : numpy.ndarray, shape (n_e,)
        Model energy grid, keV, exactly as stored (a 0 keV edge is kept here).
    e_min, e_max : numpy.ndarray, shape (n_chan,)
        Nominal channel bounds from EBOUNDS, keV.
    ebounds_channels : numpy.ndarray, shape (n_chan,), int
        EBOUNDS CHANNEL column.
    first_channel : int
        TLMIN of F_CHAN (1 when the keyword is absent, as XSPEC assumes).
    matrix : scipy.sparse.csr_matrix, shape (n_e, n_chan)
        Redistribution probabilities (times area for an RSP).
    includes_area : bool
        True for an RSP (HDUCLAS3 ``FULL``, or EXTNAME ``SPECRESP MATRIX``
        without HDUCLAS3, or row sums above 1).
    extname : str
        Name of the matrix HDU.
    """

    path: str
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    ebounds_channels: np.ndarray
    first_channel: int
    matrix: scipy.sparse.csr_matrix
    includes_area: bool
    extname: str


@dataclass(frozen=True, eq=False)
class ARFRecord:
    """An ARF ``SPECRESP`` table.

    Parameters
    ----------
    path : str
        File path.
    energ_lo, energ_hi : numpy.ndarray, shape (n_e,)
        Energy grid, keV.
    specresp : numpy.ndarray, shape (n_e,)
        Effective area, cm^2.
    """

    path: str
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------

def split_row_suffix(path: str | os.PathLike) -> tuple[str, int | None]:
    """Split XSPEC's ``file.pha{N}`` row selector off a path.

    Parameters
    ----------
    path : str or path-like
        File name, possibly ending in ``{N}``.

    Returns
    -------
    tuple of (str, int or None)
        The bare path and the 1-based row (None without a suffix).
    """
    text = os.fspath(path)
    match = _ROW_SUFFIX.match(text)
    if match is None:
        return text, None
    return match.group("path"), int(match.group("row"))


def _open(path: str) -> fits.HDUList:
    if not os.path.isfile(path):
        raise OGIPFileNotFoundError(f"{path}: file not found")
    try:
        return fits.open(path, memmap=False)
    except (OSError, ValueError) as err:
        raise OGIPError(f"{path}: not a readable FITS file ({err})") from err


def _find_hdu(hdul: fits.HDUList, path: str, names: tuple[str, ...],
              hduclas: tuple[tuple[str, str], ...], what: str) -> fits.BinTableHDU:
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU) and hdu.name.upper() in names:
            return hdu
    for hdu in hdul[1:]:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        if any(str(hdu.header.get(key, "")).strip().upper() == value for key, value in hduclas):
            return hdu
    present = [h.name for h in hdul]
    raise OGIPError(f"{path}: no {what} extension (looked for EXTNAME {'/'.join(names)}); "
                    f"HDUs present: {present}")


def _require_columns(hdu: fits.BinTableHDU, path: str, names: tuple[str, ...]) -> None:
    have = {n.upper() for n in hdu.columns.names}
    missing = [n for n in names if n not in have]
    if missing:
        raise OGIPError(f"{path}[{hdu.name}]: missing column(s) {missing}")


def _has_column(hdu: fits.BinTableHDU, name: str) -> bool:
    return name.upper() in {n.upper() for n in hdu.columns.names}


def _float_keyword(header: fits.Header, key: str, path: str) -> float | None:
    if key not in header:
        return None
    value = header[key]
    if isinstance(value, bool):
        raise OGIPError(f"{path}: keyword {key} is a boolean ({value}), expected a number")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise OGIPError(f"{path}: keyword {key}={value!r} is not a number") from err


def _check_finite(values: np.ndarray, path: str, what: str) -> None:
    bad = ~np.isfinite(values)
    if np.any(bad):
        first = int(np.flatnonzero(bad.ravel())[0])
        raise OGIPError(f"{path}: {what} has {int(bad.sum())} non-finite value(s) "
                        f"(first at index {first})")


def _check_grid(lo: np.ndarray, hi: np.ndarray, path: str, what: str) -> None:
    _check_finite(lo, path, f"{what} ENERG_LO")
    _check_finite(hi, path, f"{what} ENERG_HI")
    if lo.size == 0:
        raise OGIPError(f"{path}: {what} energy grid is empty")
    if np.any(hi <= lo):
        i = int(np.flatnonzero(hi <= lo)[0])
        raise OGIPError(f"{path}: {what} ENERG_HI <= ENERG_LO at row {i + 1} "
                        f"({lo[i]:g} -> {hi[i]:g} keV)")
    if np.any(np.diff(lo) <= 0):
        i = int(np.flatnonzero(np.diff(lo) <= 0)[0])
        raise OGIPError(f"{path}: {what} energies are not monotonically increasing "
                        f"at row {i + 2} ({lo[i]:g} then {lo[i + 1]:g} keV)")
    if lo[0] < 0:
        raise OGIPError(f"{path}: {what} has a negative energy ({lo[0]:g} keV)")


def _ragged(column: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded (n_rows, width) int copy of a scalar, fixed or variable-length column."""
    if column.dtype == object:
        lengths = np.fromiter((len(c) for c in column), dtype=np.int64, count=n_rows)
        width = max(int(lengths.max(initial=0)), 1)
        out = np.zeros((n_rows, width), dtype=np.int64)
        for i, cell in enumerate(column):
            out[i, :lengths[i]] = cell
        return out, lengths
    array = np.asarray(column, dtype=np.int64).reshape(n_rows, -1)
    return array, np.full(n_rows, array.shape[1], dtype=np.int64)


# --------------------------------------------------------------------------
# PHA
# --------------------------------------------------------------------------

def is_type2(path: str | os.PathLike) -> bool:
    """Whether a PHA file holds several spectra (OGIP type II).

    Parameters
    ----------
    path : str or path-like
        File path; a ``{N}`` suffix is ignored.

    Returns
    -------
    bool
        True when the COUNTS/RATE column is a vector column, as XSPEC decides.
    """
    bare, _ = split_row_suffix(path)
    with _open(bare) as hdul:
        hdu = _find_hdu(hdul, bare, ("SPECTRUM",), (("HDUCLAS1", "SPECTRUM"),), "SPECTRUM")
        return _data_column(hdu, bare)[1].ndim == 2


def _data_column(hdu: fits.BinTableHDU, path: str) -> tuple[str, np.ndarray]:
    for name in ("RATE", "COUNTS"):  # XSPEC takes RATE when both exist
        if _has_column(hdu, name):
            values = hdu.data[name]
            if values.dtype == object:
                raise OGIPError(f"{path}: variable-length {name} column is not supported")
            return name, np.asarray(values)
    raise OGIPError(f"{path}[{hdu.name}]: neither a COUNTS nor a RATE column")


def _per_row(hdu: fits.BinTableHDU, name: str, index: int | None, n_chan: int,
             path: str) -> np.ndarray | None:
    """Column ``name`` for one spectrum: (n_chan,) array, or None when absent."""
    if not _has_column(hdu, name):
        return None
    values = np.asarray(hdu.data[name])
    if index is not None:
        values = np.asarray(values[index])
    if values.ndim == 0 or values.size == 1 and n_chan != 1:
        return np.full(n_chan, values.reshape(-1)[0])
    values = values.reshape(-1)
    if values.size != n_chan:
        raise OGIPError(f"{path}: column {name} has {values.size} values for {n_chan} channels")
    return values


def _scale(hdu: fits.BinTableHDU, name: str, index: int | None, n_chan: int,
           path: str, default: float | None) -> float | np.ndarray:
    column = _per_row(hdu, name, index, n_chan, path)
    if column is not None:
        values = column.astype(np.float64)
        if index is not None and _has_column(hdu, name) and np.asarray(hdu.data[name]).ndim == 1:
            return float(values[0])  # type II scalar column: one value per spectrum
        _check_finite(values, path, f"column {name}")
        return values
    value = _float_keyword(hdu.header, name, path)
    if value is None:
        if default is None:
            raise OGIPError(f"{path}: required keyword/column {name} is missing")
        return float(default)
    if not np.isfinite(value):
        raise OGIPError(f"{path}: keyword {name}={value} is not finite")
    return value


def _file_keyword(hdu: fits.BinTableHDU, name: str, index: int | None, folder: str) -> str | None:
    value = None
    if index is not None and _has_column(hdu, name):
        value = hdu.data[name][index]
    elif name in hdu.header:
        value = hdu.header[name]
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower().startswith("none"):
        return None
    return text if os.path.isabs(text) else os.path.join(folder, text)


def read_pha(path: str | os.PathLike, row: int | None = None) -> PHARecord:
    """Read one spectrum from an OGIP PHA file.

    Parameters
    ----------
    path : str or path-like
        PHA file; may end in XSPEC's ``{N}`` row selector for a type II file.
    row : int, optional
        1-based row of a type II file (same meaning as ``{N}``). Required for
        type II files, refused for type I files (as XSPEC does).

    Returns
    -------
    PHARecord
        Columns and header values of the spectrum.

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        Missing SPECTRUM HDU or column, bad row, EXPOSURE <= 0, NaN or negative
        counts, quality or grouping values outside the OGIP sets.
    """
    bare, suffix_row = split_row_suffix(path)
    if suffix_row is not None and row is not None and suffix_row != row:
        raise OGIPError(f"{path}: row={row} contradicts the {{{suffix_row}}} suffix")
    row = suffix_row if row is None else row
    folder = os.path.dirname(os.path.abspath(bare))
    with _open(bare) as hdul:
        hdu = _find_hdu(hdul, bare, ("SPECTRUM",), (("HDUCLAS1", "SPECTRUM"),), "SPECTRUM")
        header = hdu.header
        data_name, data = _data_column(hdu, bare)
        type2 = data.ndim == 2
        label = bare if row is None else f"{bare}{{{row}}}"
        if type2:
            if row is None:
                raise OGIPError(f"{bare}: type II file ({data.shape[0]} spectra); "
                                "choose one with row=N or the {N} suffix")
            if not 1 <= row <= data.shape[0]:
                raise OGIPError(f"{bare}: row {row} out of range 1..{data.shape[0]}")
            index = row - 1
            values = np.asarray(data[index], dtype=np.float64)
        else:
            if row is not None:
                raise OGIPError(f"{bare}: type I file, a row selector ({row}) does not apply")
            index = None
            values = np.asarray(data, dtype=np.float64).reshape(-1)
        n_chan = values.size
        if n_chan == 0:
            raise OGIPError(f"{label}: spectrum has no channels")

        exposure = _scale(hdu, "EXPOSURE", index, n_chan, label, default=None)
        if isinstance(exposure, np.ndarray):
            exposure = float(exposure[0])
        if not exposure > 0:
            raise OGIPError(f"{label}: EXPOSURE={exposure} s, must be > 0")

        _check_finite(values, label, data_name)
        was_rate = data_name == "RATE"
        counts = values * exposure if was_rate else values
        if was_rate:
            # Counts stored as rates come back as integers up to rounding.
            rounded = np.round(counts)
            if np.allclose(counts, rounded, rtol=0, atol=1e-4):
                counts = rounded
        if np.any(counts < 0):
            i = int(np.flatnonzero(counts < 0)[0])
            raise OGIPError(f"{label}: negative {data_name} ({values[i]}) in channel index {i}")

        channel_col = _per_row(hdu, "CHANNEL", index, n_chan, label)
        channels = (np.arange(1, n_chan + 1) if channel_col is None
                    else channel_col.astype(np.int64))
        if np.any(np.diff(channels) != 1):
            raise OGIPError(f"{label}: CHANNEL column is not contiguous and increasing")
        tlmin = None
        if _has_column(hdu, "CHANNEL"):
            col_number = [n.upper() for n in hdu.columns.names].index("CHANNEL") + 1
            if f"TLMIN{col_number}" in header:
                tlmin = int(header[f"TLMIN{col_number}"])

        quality = _per_row(hdu, "QUALITY", index, n_chan, label)
        if quality is None:
            q = _float_keyword(header, "QUALITY", label)
            quality = np.full(n_chan, 0 if q is None else int(q), dtype=np.int64)
        quality = quality.astype(np.int64)
        bad_q = (quality < _QUALITY_RANGE[0]) | (quality > _QUALITY_RANGE[1])
        if np.any(bad_q):
            raise OGIPError(f"{label}: QUALITY values {sorted(set(quality[bad_q].tolist()))} "
                            "outside 0..5")

        grouping = _per_row(hdu, "GROUPING", index, n_chan, label)
        if grouping is None:
            g = _float_keyword(header, "GROUPING", label)
            if g is not None and g not in (0, 1):
                raise OGIPError(f"{label}: GROUPING keyword = {g}; only 0 (ungrouped) is defined")
            grouping = np.ones(n_chan, dtype=np.int64)
        grouping = grouping.astype(np.int64)
        if not np.all(np.isin(grouping, (-1, 0, 1))):
            raise OGIPError(f"{label}: GROUPING values {sorted(set(grouping.tolist()) - {-1, 0, 1})} "
                            "outside {-1, 0, 1}")
        grouping[grouping == 0] = 1  # XSPEC reads OGIP's 0 (no grouping info) as a bin start

        stat = _per_row(hdu, "STAT_ERR", index, n_chan, label)
        stat_err = None
        if stat is not None:
            stat_err = stat.astype(np.float64) * (exposure if was_rate else 1.0)

        backscal = _scale(hdu, "BACKSCAL", index, n_chan, label, default=1.0)
        areascal = _scale(hdu, "AREASCAL", index, n_chan, label, default=1.0)
        for name, scale in (("BACKSCAL", backscal), ("AREASCAL", areascal)):
            if np.any(np.asarray(scale) <= 0):
                raise OGIPError(f"{label}: {name} must be > 0 (found {np.min(scale)})")

        detchans = header.get("DETCHANS")
        return PHARecord(
            path=bare,
            row=row if type2 else None,
            channels=channels,
            counts=np.ascontiguousarray(counts, dtype=np.float64),
            exposure=float(exposure),
            backscal=backscal,
            areascal=areascal,
            grouping=grouping,
            quality=quality,
            poisserr=bool(header.get("POISSERR", False)),
            stat_err=stat_err,
            respfile=_file_keyword(hdu, "RESPFILE", index, folder),
            ancrfile=_file_keyword(hdu, "ANCRFILE", index, folder),
            backfile=_file_keyword(hdu, "BACKFILE", index, folder),
            detchans=None if detchans is None else int(detchans),
            tlmin=tlmin,
            spectrum_type=str(header.get("HDUCLAS2", "TOTAL")).strip().upper() or "TOTAL",
            was_rate=was_rate,
            telescope=str(header.get("TELESCOP", "")).strip(),
            instrument=str(header.get("INSTRUME", "")).strip(),
        )


# --------------------------------------------------------------------------
# RMF / RSP
# --------------------------------------------------------------------------

def _sparse_matrix(hdu: fits.BinTableHDU, path: str, first_channel: int,
                   n_chan: int) -> scipy.sparse.csr_matrix:
    """Assemble the (n_e, n_chan) matrix from N_GRP/F_CHAN/N_CHAN/MATRIX, vectorised."""
    data = hdu.data
    n_e = len(data)
    n_grp = np.asarray(data["N_GRP"], dtype=np.int64).reshape(-1)
    f_chan, _ = _ragged(data["F_CHAN"], n_e)
    n_chan_g, _ = _ragged(data["N_CHAN"], n_e)
    if f_chan.shape != n_chan_g.shape:
        raise OGIPError(f"{path}[{hdu.name}]: F_CHAN and N_CHAN have different widths")
    if np.any(n_grp < 0) or np.any(n_grp > f_chan.shape[1]):
        raise OGIPError(f"{path}[{hdu.name}]: N_GRP outside 0..{f_chan.shape[1]}")
    used = np.arange(f_chan.shape[1])[None, :] < n_grp[:, None]
    n_in_group = np.where(used, n_chan_g, 0).astype(np.int64)
    if np.any(n_in_group < 0):
        raise OGIPError(f"{path}[{hdu.name}]: negative N_CHAN")
    per_row = n_in_group.sum(axis=1)

    flat_used = used.ravel() & (n_in_group.ravel() > 0)
    group_rows = np.repeat(np.arange(n_e), f_chan.shape[1])[flat_used]
    group_first = f_chan.ravel()[flat_used].astype(np.int64) - first_channel
    group_len = n_in_group.ravel()[flat_used]
    total = int(group_len.sum())
    starts = np.cumsum(group_len) - group_len
    within = np.arange(total) - np.repeat(starts, group_len)
    cols = np.repeat(group_first, group_len) + within
    rows = np.repeat(group_rows, group_len)
    if total and (cols.min() < 0 or cols.max() >= n_chan):
        bad = int(np.flatnonzero((cols < 0) | (cols >= n_chan))[0])
        raise OGIPError(f"{path}[{hdu.name}]: row {rows[bad] + 1} addresses channel "
                        f"{cols[bad] + first_channel} outside {first_channel}.."
                        f"{first_channel + n_chan - 1} (check TLMIN of F_CHAN)")

    matrix_col = data["MATRIX"]
    if matrix_col.dtype == object:
        lengths = np.fromiter((len(c) for c in matrix_col), dtype=np.int64, count=n_e)
        if np.any(lengths < per_row):
            i = int(np.flatnonzero(lengths < per_row)[0])
            raise OGIPError(f"{path}[{hdu.name}]: MATRIX row {i + 1} has {lengths[i]} values, "
                            f"N_CHAN sums to {per_row[i]}")
        if np.array_equal(lengths, per_row):
            values = np.concatenate([np.asarray(c, dtype=np.float64) for c in matrix_col])
        else:
            values = np.concatenate([np.asarray(c[:k], dtype=np.float64)
                                     for c, k in zip(matrix_col, per_row)])
    else:
        dense = np.asarray(matrix_col, dtype=np.float64).reshape(n_e, -1)
        if np.any(per_row > dense.shape[1]):
            i = int(np.flatnonzero(per_row > dense.shape[1])[0])
            raise OGIPError(f"{path}[{hdu.name}]: MATRIX row {i + 1} has {dense.shape[1]} "
                            f"values, N_CHAN sums to {per_row[i]}")
        row_start = np.cumsum(per_row) - per_row
        position = np.arange(total) - np.repeat(row_start, per_row)
        values = dense[rows, position]
    _check_finite(values, path, "MATRIX")
    # Dense-stored RMFs (Swift XRT) carry explicit zeros; they would only cost time.
    keep = values != 0
    if not np.all(keep):
        rows, cols, values = rows[keep], cols[keep], values[keep]
    # Duplicate (row, col) pairs from overlapping groups are summed, as XSPEC does.
    matrix = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(n_e, n_chan))
    matrix.sum_duplicates()
    return matrix


def read_rmf(path: str | os.PathLike) -> RMFRecord:
    """Read an RMF (or RSP) file: the MATRIX and EBOUNDS extensions.

    Parameters
    ----------
    path : str or path-like
        RMF or RSP file.

    Returns
    -------
    RMFRecord
        Energy grid, channel bounds and a sparse matrix of shape (n_e, n_chan).

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        Missing MATRIX/EBOUNDS HDU or column, non-monotonic energies, NaNs,
        groups outside the channel range, descending EBOUNDS.
    """
    path = os.fspath(path)
    with _open(path) as hdul:
        hdu = _find_hdu(hdul, path, ("MATRIX", "SPECRESP MATRIX"),
                        (("HDUCLAS2", "RSP_MATRIX"),), "MATRIX / SPECRESP MATRIX")
        ebounds = _find_hdu(hdul, path, ("EBOUNDS",), (("HDUCLAS2", "EBOUNDS"),), "EBOUNDS")
        _require_columns(hdu, path, ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"))
        _require_columns(ebounds, path, ("E_MIN", "E_MAX"))

        energ_lo = np.asarray(hdu.data["ENERG_LO"], dtype=np.float64).reshape(-1)
        energ_hi = np.asarray(hdu.data["ENERG_HI"], dtype=np.float64).reshape(-1)
        _check_grid(energ_lo, energ_hi, path, "MATRIX")

        e_min = np.asarray(ebounds.data["E_MIN"], dtype=np.float64).reshape(-1)
        e_max = np.asarray(ebounds.data["E_MAX"], dtype=np.float64).reshape(-1)
        _check_finite(e_min, path, "EBOUNDS E_MIN")
        _check_finite(e_max, path, "EBOUNDS E_MAX")
        if np.any(e_max < e_min):
            raise OGIPError(f"{path}: EBOUNDS has E_MAX < E_MIN")
        if np.any(np.diff(e_min) < 0):
            raise OGIPError(f"{path}: EBOUNDS energies are not increasing with channel "
                            "(descending/wavelength-ordered EBOUNDS are not supported)")
        n_chan = e_min.size
        detchans = hdu.header.get("DETCHANS", ebounds.header.get("DETCHANS"))
        if detchans is not None and int(detchans) != n_chan:
            raise OGIPError(f"{path}: DETCHANS={detchans} but EBOUNDS has {n_chan} rows")

        f_chan_number = [n.upper() for n in hdu.columns.names].index("F_CHAN") + 1
        first_channel = int(hdu.header.get(f"TLMIN{f_chan_number}", 1))
        if _has_column(ebounds, "CHANNEL"):
            ebounds_channels = np.asarray(ebounds.data["CHANNEL"], dtype=np.int64).reshape(-1)
        else:
            ebounds_channels = first_channel + np.arange(n_chan)

        matrix = _sparse_matrix(hdu, path, first_channel, n_chan)
        if matrix.data.size and matrix.data.min() < 0:
            raise OGIPError(f"{path}: MATRIX has negative elements (min {matrix.data.min()})")
        hduclas3 = str(hdu.header.get("HDUCLAS3", "")).strip().upper()
        if hduclas3:
            includes_area = hduclas3 == "FULL"
        else:
            row_max = float(matrix.sum(axis=1).max()) if matrix.nnz else 0.0
            includes_area = hdu.name.upper() == "SPECRESP MATRIX" or row_max > 1.01
        return RMFRecord(path=path, energ_lo=energ_lo, energ_hi=energ_hi, e_min=e_min,
                         e_max=e_max, ebounds_channels=ebounds_channels,
                         first_channel=first_channel, matrix=matrix,
                         includes_area=includes_area, extname=hdu.name)


# --------------------------------------------------------------------------
# ARF
# --------------------------------------------------------------------------

def read_arf(path: str | os.PathLike) -> ARFRecord:
    """Read an ARF ``SPECRESP`` extension.

    Parameters
    ----------
    path : str or path-like
        ARF file (type I).

    Returns
    -------
    ARFRecord
        Energy grid (keV) and effective area (cm^2).

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        Missing SPECRESP HDU or column, a type II ARF, non-monotonic energies,
        NaN or negative areas.
    """
    path = os.fspath(path)
    with _open(path) as hdul:
        hdu = _find_hdu(hdul, path, ("SPECRESP",), (("HDUCLAS2", "SPECRESP"),), "SPECRESP")
        _require_columns(hdu, path, ("ENERG_LO", "ENERG_HI", "SPECRESP"))
        area = np.asarray(hdu.data["SPECRESP"])
        if area.dtype == object or (area.ndim == 2 and area.shape[1] > 1):
            raise OGIPError(f"{path}: type II ARF (vector SPECRESP) is not supported")
        energ_lo = np.asarray(hdu.data["ENERG_LO"], dtype=np.float64).reshape(-1)
        energ_hi = np.asarray(hdu.data["ENERG_HI"], dtype=np.float64).reshape(-1)
        area = area.astype(np.float64).reshape(-1)
        _check_grid(energ_lo, energ_hi, path, "SPECRESP")
        _check_finite(area, path, "SPECRESP")
        if np.any(area < 0):
            raise OGIPError(f"{path}: negative SPECRESP (min {area.min()} cm^2)")
        return ARFRecord(path=path, energ_lo=energ_lo, energ_hi=energ_hi, specresp=area)


# --------------------------------------------------------------------------
# header keywords alone (the command line's times and telescope checks)
# --------------------------------------------------------------------------

def read_header_keywords(path: str | os.PathLike, keywords, *,
                         extname: str = "SPECTRUM") -> dict[str, object]:
    """Header keywords of an OGIP file, without reading its data.

    Parameters
    ----------
    path : str or path-like
        OGIP file; a ``{N}`` row suffix is ignored (keywords are per file).
    keywords : iterable of str
        Keyword names, e.g. ``("TELESCOP", "INSTRUME", "TSTART", "TSTOP")``.
    extname : str
        Extension searched first (EXTNAME or HDUCLAS1): ``SPECTRUM`` for a
        PHA file, ``SPECRESP`` for an ARF, ``MATRIX`` for an RMF.

    Returns
    -------
    dict
        For each keyword found, its value from that extension, else from the
        primary header; keywords found in neither are left out.

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        The file is not readable as FITS.
    """
    bare, _ = split_row_suffix(path)
    wanted = [str(k).upper() for k in keywords]
    found: dict[str, object] = {}
    with _open(bare) as hdul:
        headers = [h.header for h in hdul
                   if str(h.header.get("HDUCLAS1", "")).upper() == extname.upper()
                   or str(h.header.get("EXTNAME", "")).upper() == extname.upper()]
        for header in headers + [hdul[0].header]:
            for key in wanted:
                if key not in found and key in header:
                    found[key] = header[key]
    return found


def observation_time(path: str | os.PathLike) -> float | None:
    """Mid-time of a spectrum, s (mission time): ``(TSTART + TSTOP) / 2``, or TSTART alone.

    Parameters
    ----------
    path : str or path-like
        PHA file; a ``{N}`` row suffix is ignored.

    Returns
    -------
    float or None
        From the SPECTRUM extension, else the primary header; None when
        neither has TSTART.

    Raises
    ------
    OGIPFileNotFoundError, OGIPError
        As :func:`read_header_keywords`; also a TSTART or TSTOP that is not a number.
    """
    bare, _ = split_row_suffix(path)
    with _open(bare) as hdul:
        headers = [h.header for h in hdul
                   if str(h.header.get("HDUCLAS1", "")).upper() == "SPECTRUM"
                   or str(h.header.get("EXTNAME", "")).upper() == "SPECTRUM"]
        for header in headers + [hdul[0].header]:
            t0 = _float_keyword(header, "TSTART", bare)
            if t0 is not None:
                t1 = _float_keyword(header, "TSTOP", bare)
                return t0 if t1 is None else 0.5 * (t0 + t1)
    return None
