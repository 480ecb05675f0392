"""Readers of OGIP response files: RMF/RSP matrices with EBOUNDS, and ARFs.

:func:`read_rmf` returns a frozen :class:`RMFRecord` (the redistribution
matrix as a sparse (n_e, n_chan) array, assembled without a Python loop over
rows), :func:`read_arf` an :class:`ARFRecord`. Header checks and the
conventions taken from XSPEC are described in :mod:`xspec_sbi.data.ogip`;
:mod:`xspec_sbi.data.response` turns the records into a :class:`Response`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from astropy.io import fits

from xspec_sbi.data.ogip import (
    OGIPError,
    check_finite,
    check_grid,
    find_hdu,
    has_column,
    open_fits,
    require_columns,
)

__all__ = ["RMFRecord", "ARFRecord", "read_rmf", "read_arf"]


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
# RMF / RSP
# --------------------------------------------------------------------------

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
    check_finite(values, path, "MATRIX")
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
    with open_fits(path) as hdul:
        hdu = find_hdu(hdul, path, ("MATRIX", "SPECRESP MATRIX"),
                        (("HDUCLAS2", "RSP_MATRIX"),), "MATRIX / SPECRESP MATRIX")
        ebounds = find_hdu(hdul, path, ("EBOUNDS",), (("HDUCLAS2", "EBOUNDS"),), "EBOUNDS")
        require_columns(hdu, path, ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"))
        require_columns(ebounds, path, ("E_MIN", "E_MAX"))

        energ_lo = np.asarray(hdu.data["ENERG_LO"], dtype=np.float64).reshape(-1)
        energ_hi = np.asarray(hdu.data["ENERG_HI"], dtype=np.float64).reshape(-1)
        check_grid(energ_lo, energ_hi, path, "MATRIX")

        e_min = np.asarray(ebounds.data["E_MIN"], dtype=np.float64).reshape(-1)
        e_max = np.asarray(ebounds.data["E_MAX"], dtype=np.float64).reshape(-1)
        check_finite(e_min, path, "EBOUNDS E_MIN")
        check_finite(e_max, path, "EBOUNDS E_MAX")
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
        if has_column(ebounds, "CHANNEL"):
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
    with open_fits(path) as hdul:
        hdu = find_hdu(hdul, path, ("SPECRESP",), (("HDUCLAS2", "SPECRESP"),), "SPECRESP")
        require_columns(hdu, path, ("ENERG_LO", "ENERG_HI", "SPECRESP"))
        area = np.asarray(hdu.data["SPECRESP"])
        if area.dtype == object or (area.ndim == 2 and area.shape[1] > 1):
            raise OGIPError(f"{path}: type II ARF (vector SPECRESP) is not supported")
        energ_lo = np.asarray(hdu.data["ENERG_LO"], dtype=np.float64).reshape(-1)
        energ_hi = np.asarray(hdu.data["ENERG_HI"], dtype=np.float64).reshape(-1)
        area = area.astype(np.float64).reshape(-1)
        check_grid(energ_lo, energ_hi, path, "SPECRESP")
        check_finite(area, path, "SPECRESP")
        if np.any(area < 0):
            raise OGIPError(f"{path}: negative SPECRESP (min {area.min()} cm^2)")
        return ARFRecord(path=path, energ_lo=energ_lo, energ_hi=energ_hi, specresp=area)
