"""What every OGIP reader shares: the errors, opening a FITS file, header checks.

The readers themselves are :mod:`xspec_sbi.data.ogip_pha` (PHA type I/II) and
:mod:`xspec_sbi.data.ogip_response` (RMF/RSP and ARF). Each returns a small
frozen record of columns and header values and checks the header loudly: a
missing file, a missing HDU or column, a non-monotonic energy grid, negative or
NaN counts, an out-of-range row raise :class:`OGIPError` (a ``ValueError``) or
:class:`OGIPFileNotFoundError` (a ``FileNotFoundError``) whose message names
the file and the fault. The readers know nothing about grouping rules, channel
selection or physics; :mod:`xspec_sbi.data.spectrum` and
:mod:`xspec_sbi.data.response` build on them.

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

import numpy as np
from astropy.io import fits

__all__ = [
    "OGIPError",
    "OGIPFileNotFoundError",
    "split_row_suffix",
    "open_fits",
    "find_hdu",
    "require_columns",
    "has_column",
    "float_keyword",
    "check_finite",
    "check_grid",
    "header_keywords",
]

_ROW_SUFFIX = re.compile(r"^(?P<path>.*)\{(?P<row>\s*\d+\s*)\}\s*$")


class OGIPError(ValueError):
    """An OGIP file whose content breaks the standard or our checks."""


class OGIPFileNotFoundError(FileNotFoundError):
    """An OGIP file (or a file named by a header keyword) that does not exist.

    For a file named by a spectrum, ``keyword`` (RESPFILE, ANCRFILE,
    BACKFILE), ``missing`` (its path), ``spectrum`` and ``from_header`` (named
    in the header, or passed) let a front end word its own remedy. The path is
    not OSError's ``filename``, whose ``str()`` would replace the message.
    """

    def __init__(self, message: str, *, keyword: str | None = None, missing: str | None = None,
                 spectrum: str | None = None, from_header: bool = False):
        super().__init__(message)
        self.keyword, self.missing, self.spectrum, self.from_header = keyword, missing, spectrum, from_header


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


def open_fits(path: str) -> fits.HDUList:
    """Open a FITS file for reading, failing with the file's name.

    Parameters
    ----------
    path : str
        File path (no ``{N}`` suffix).

    Returns
    -------
    astropy.io.fits.HDUList
        Opened without memory mapping; use it as a context manager.

    Raises
    ------
    OGIPFileNotFoundError
        The file does not exist.
    OGIPError
        The file is not readable as FITS.
    """
    if not os.path.isfile(path):
        raise OGIPFileNotFoundError(f"{path}: file not found")
    try:
        return fits.open(path, memmap=False)
    except (OSError, ValueError) as err:
        raise OGIPError(f"{path}: not a readable FITS file ({err})") from err


def find_hdu(hdul: fits.HDUList, path: str, names: tuple[str, ...],
             hduclas: tuple[tuple[str, str], ...], what: str) -> fits.BinTableHDU:
    """The first binary table named one of ``names``, else the first with a matching HDUCLASn.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file.
    path : str
        File path, for messages.
    names : tuple of str
        EXTNAME values accepted (upper case).
    hduclas : tuple of (str, str)
        ``(keyword, value)`` pairs that identify the extension when no EXTNAME matches.
    what : str
        Name of the extension, for messages.

    Returns
    -------
    astropy.io.fits.BinTableHDU

    Raises
    ------
    OGIPError
        No such extension; the message lists the HDUs present.
    """
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


def require_columns(hdu: fits.BinTableHDU, path: str, names: tuple[str, ...]) -> None:
    """Raise :class:`OGIPError` naming the file, extension and columns that are missing."""
    have = {n.upper() for n in hdu.columns.names}
    missing = [n for n in names if n not in have]
    if missing:
        raise OGIPError(f"{path}[{hdu.name}]: missing column(s) {missing}")


def has_column(hdu: fits.BinTableHDU, name: str) -> bool:
    """Whether the table has column ``name`` (any case)."""
    return name.upper() in {n.upper() for n in hdu.columns.names}


def float_keyword(header: fits.Header, key: str, path: str) -> float | None:
    """Numeric keyword ``key``, None when absent; a boolean or text value is an :class:`OGIPError`."""
    if key not in header:
        return None
    value = header[key]
    if isinstance(value, bool):
        raise OGIPError(f"{path}: keyword {key} is a boolean ({value}), expected a number")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise OGIPError(f"{path}: keyword {key}={value!r} is not a number") from err


def check_finite(values: np.ndarray, path: str, what: str) -> None:
    """Raise :class:`OGIPError` when ``values`` (column ``what``) holds NaN or inf."""
    bad = ~np.isfinite(values)
    if np.any(bad):
        first = int(np.flatnonzero(bad.ravel())[0])
        raise OGIPError(f"{path}: {what} has {int(bad.sum())} non-finite value(s) "
                        f"(first at index {first})")


def check_grid(lo: np.ndarray, hi: np.ndarray, path: str, what: str) -> None:
    """Check an ENERG_LO/ENERG_HI grid, keV: finite, non-empty, increasing, non-negative.

    Parameters
    ----------
    lo, hi : numpy.ndarray, shape (n_e,)
        Lower and upper bin edges, keV.
    path : str
        File path, for messages.
    what : str
        Extension name, for messages.

    Raises
    ------
    OGIPError
        Naming the first row at fault.
    """
    check_finite(lo, path, f"{what} ENERG_LO")
    check_finite(hi, path, f"{what} ENERG_HI")
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


def header_keywords(path: str | os.PathLike, keywords, extname: str) -> dict[str, object]:
    """Header keywords of any OGIP file, from extension ``extname`` first, then the primary.

    Parameters
    ----------
    path : str or path-like
        FITS file; a ``{N}`` row suffix is ignored.
    keywords : iterable of str
        Keyword names, e.g. ``("TELESCOP", "INSTRUME")``.
    extname : str
        Extension searched first, by EXTNAME or HDUCLAS1/HDUCLAS2 (``SPECRESP``
        for an ARF, ``MATRIX`` for an RMF; PHA files:
        :func:`xspec_sbi.data.ogip_pha.read_header_keywords`).

    Returns
    -------
    dict
        Keywords found (absent ones left out).

    Raises
    ------
    OGIPFileNotFoundError, OGIPError
        The file does not exist or is not readable as FITS.
    """
    bare, _ = split_row_suffix(path)
    name = extname.upper()
    found: dict[str, object] = {}
    with open_fits(bare) as hdul:
        headers = [h.header for h in hdul[1:]
                   if name in {str(h.header.get(k, "")).strip().upper()
                               for k in ("EXTNAME", "HDUCLAS1", "HDUCLAS2")}]
        for header in headers + [hdul[0].header]:
            for key in (str(k).upper() for k in keywords):
                if key not in found and key in header:
                    found[key] = header[key]
    return found
