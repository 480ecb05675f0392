"""Reader of OGIP PHA files (type I, and one row of type II): counts and header values.

:func:`read_pha` returns a frozen :class:`PHARecord`; :func:`is_type2` tells
whether a file holds several spectra; :func:`read_header_keywords` and
:func:`observation_time` read keywords (TSTART/TSTOP, TELESCOP, ...) of the
SPECTRUM extension without reading the data. Header checks and the
conventions taken from XSPEC are described in :mod:`xspec_sbi.data.ogip`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from xspec_sbi.data.ogip import (
    OGIPError,
    check_finite,
    find_hdu,
    float_keyword,
    has_column,
    open_fits,
    split_row_suffix,
)

__all__ = [
    "PHARecord",
    "is_type2",
    "read_pha",
    "read_header_keywords",
    "observation_time",
]

_QUALITY_RANGE = (0, 5)  # XSPEC accepts 0..5; OGIP defines 0, 1, 2, 5


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
    with open_fits(bare) as hdul:
        hdu = find_hdu(hdul, bare, ("SPECTRUM",), (("HDUCLAS1", "SPECTRUM"),), "SPECTRUM")
        return _data_column(hdu, bare)[1].ndim == 2


def _data_column(hdu: fits.BinTableHDU, path: str) -> tuple[str, np.ndarray]:
    for name in ("RATE", "COUNTS"):  # XSPEC takes RATE when both exist
        if has_column(hdu, name):
            values = hdu.data[name]
            if values.dtype == object:
                raise OGIPError(f"{path}: variable-length {name} column is not supported")
            return name, np.asarray(values)
    raise OGIPError(f"{path}[{hdu.name}]: neither a COUNTS nor a RATE column")


def _per_row(hdu: fits.BinTableHDU, name: str, index: int | None, n_chan: int,
             path: str) -> np.ndarray | None:
    """Column ``name`` for one spectrum: (n_chan,) array, or None when absent."""
    if not has_column(hdu, name):
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
        if index is not None and has_column(hdu, name) and np.asarray(hdu.data[name]).ndim == 1:
            return float(values[0])  # type II scalar column: one value per spectrum
        check_finite(values, path, f"column {name}")
        return values
    value = float_keyword(hdu.header, name, path)
    if value is None:
        if default is None:
            raise OGIPError(f"{path}: required keyword/column {name} is missing")
        return float(default)
    if not np.isfinite(value):
        raise OGIPError(f"{path}: keyword {name}={value} is not finite")
    return value


def _file_keyword(hdu: fits.BinTableHDU, name: str, index: int | None, folder: str) -> str | None:
    value = None
    if index is not None and has_column(hdu, name):
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
    with open_fits(bare) as hdul:
        hdu = find_hdu(hdul, bare, ("SPECTRUM",), (("HDUCLAS1", "SPECTRUM"),), "SPECTRUM")
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

        check_finite(values, label, data_name)
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
        if has_column(hdu, "CHANNEL"):
            col_number = [n.upper() for n in hdu.columns.names].index("CHANNEL") + 1
            if f"TLMIN{col_number}" in header:
                tlmin = int(header[f"TLMIN{col_number}"])

        quality = _per_row(hdu, "QUALITY", index, n_chan, label)
        if quality is None:
            q = float_keyword(header, "QUALITY", label)
            quality = np.full(n_chan, 0 if q is None else int(q), dtype=np.int64)
        quality = quality.astype(np.int64)
        bad_q = (quality < _QUALITY_RANGE[0]) | (quality > _QUALITY_RANGE[1])
        if np.any(bad_q):
            raise OGIPError(f"{label}: QUALITY values {sorted(set(quality[bad_q].tolist()))} "
                            "outside 0..5")

        grouping = _per_row(hdu, "GROUPING", index, n_chan, label)
        if grouping is None:
            g = float_keyword(header, "GROUPING", label)
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
# header keywords only
# --------------------------------------------------------------------------

def _spectrum_headers(hdul: fits.HDUList) -> list[fits.Header]:
    """Headers of the SPECTRUM extension(s), then the primary header (OGIP keywords may sit there)."""
    found = [h.header for h in hdul
             if str(h.header.get("HDUCLAS1", "")).upper() == "SPECTRUM"
             or str(h.header.get("EXTNAME", "")).upper() == "SPECTRUM"]
    return found + [hdul[0].header]


def read_header_keywords(path: str | os.PathLike, keywords) -> dict[str, object]:
    """Header keywords of a PHA file, without reading its data.

    Parameters
    ----------
    path : str or path-like
        PHA file; a ``{N}`` row suffix is ignored (keywords are per file).
    keywords : iterable of str
        Keyword names, e.g. ``("TELESCOP", "INSTRUME", "TSTART", "TSTOP")``.

    Returns
    -------
    dict
        For each keyword found, its value from the SPECTRUM extension, else
        from the primary header; keywords found in neither are left out.

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        The file is not readable as FITS.
    """
    bare, _ = split_row_suffix(path)
    wanted = [str(k).upper() for k in keywords]
    out: dict[str, object] = {}
    with open_fits(bare) as hdul:
        for header in _spectrum_headers(hdul):
            for key in wanted:
                if key not in out and key in header:
                    out[key] = header[key]
    return out


def observation_time(path: str | os.PathLike) -> float | None:
    """Mid-time of a spectrum, s (mission time): ``(TSTART + TSTOP) / 2``, or TSTART alone.

    Parameters
    ----------
    path : str or path-like
        PHA file; a ``{N}`` row suffix is ignored.

    Returns
    -------
    float or None
        From the first header (SPECTRUM extensions, then the primary) that has
        TSTART, with TSTOP from that same header; None when no header has TSTART.

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        The file is not readable as FITS.
    """
    bare, _ = split_row_suffix(path)
    with open_fits(bare) as hdul:
        for header in _spectrum_headers(hdul):
            if "TSTART" in header:
                t0 = float(header["TSTART"])
                return 0.5 * (t0 + float(header["TSTOP"])) if "TSTOP" in header else t0
    return None
