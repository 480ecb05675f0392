"""Writers of small OGIP files for the data-layer tests (astropy only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits


def _header(extname: str, hduclas1: str, extra: dict | None) -> fits.Header:
    header = fits.Header()
    header["EXTNAME"] = extname
    header["HDUCLASS"] = "OGIP"
    header["HDUCLAS1"] = hduclas1
    header["HDUVERS"] = "1.2.1"
    for key, value in (extra or {}).items():
        header[key] = value
    return header


def write_pha(path: Path, values, *, column: str = "COUNTS", exposure: float | None = 100.0,
              first_channel: int = 1, grouping=None, quality=None, columns: dict | None = None,
              keywords: dict | None = None, extname: str = "SPECTRUM", channel_column: bool = True) -> Path:
    """Type I PHA with ``values`` in COUNTS (int) or RATE (float)."""
    values = np.asarray(values)
    n = values.size
    cols = []
    if channel_column:
        cols.append(fits.Column("CHANNEL", "J", array=first_channel + np.arange(n)))
    cols.append(fits.Column(column, "J" if column == "COUNTS" else "D", array=values))
    if grouping is not None:
        cols.append(fits.Column("GROUPING", "I", array=np.asarray(grouping)))
    if quality is not None:
        cols.append(fits.Column("QUALITY", "I", array=np.asarray(quality)))
    for name, array in (columns or {}).items():
        cols.append(fits.Column(name, "D", array=np.asarray(array, dtype=float)))
    base = {"DETCHANS": n, "POISSERR": True, "BACKSCAL": 1.0, "AREASCAL": 1.0,
            "RESPFILE": "none", "ANCRFILE": "none", "BACKFILE": "none", "HDUCLAS2": "TOTAL"}
    if exposure is not None:
        base["EXPOSURE"] = exposure
    base.update(keywords or {})
    base = {k: v for k, v in base.items() if v is not None}
    hdu = fits.BinTableHDU.from_columns(cols, header=_header(extname, "SPECTRUM", base))
    if channel_column:
        hdu.header["TLMIN1"] = first_channel
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def write_pha_type2(path: Path, counts2d, exposures, backscals, *, keywords: dict | None = None,
                    first_channel: int = 1) -> Path:
    """Type II PHA: one spectrum per row, EXPOSURE and BACKSCAL as columns."""
    counts2d = np.asarray(counts2d)
    n_spec, n = counts2d.shape
    cols = [
        fits.Column("SPEC_NUM", "I", array=np.arange(1, n_spec + 1)),
        fits.Column("CHANNEL", f"{n}J", array=np.tile(first_channel + np.arange(n), (n_spec, 1))),
        fits.Column("COUNTS", f"{n}J", array=counts2d),
        fits.Column("EXPOSURE", "D", array=np.asarray(exposures, dtype=float)),
        fits.Column("BACKSCAL", "D", array=np.asarray(backscals, dtype=float)),
    ]
    base = {"DETCHANS": n, "POISSERR": True, "AREASCAL": 1.0, "RESPFILE": "none",
            "ANCRFILE": "none", "BACKFILE": "none", "HDUCLAS4": "TYPE:II"}
    base.update(keywords or {})
    hdu = fits.BinTableHDU.from_columns(cols, header=_header("SPECTRUM", "SPECTRUM", base))
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def _groups(row: np.ndarray) -> list[tuple[int, int]]:
    """(first index, length) of each run of non-zero entries."""
    nz = np.flatnonzero(row)
    if nz.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(nz) > 1)
    starts = np.r_[nz[0], nz[breaks + 1]]
    ends = np.r_[nz[breaks], nz[-1]]
    return [(int(s), int(e - s + 1)) for s, e in zip(starts, ends)]


def write_rmf(path: Path, energ_lo, energ_hi, e_min, e_max, dense, *, tlmin: int | None = 1,
              variable_length: bool = True, extname: str = "MATRIX", hduclas3: str | None = "REDIST",
              ebounds: bool = True) -> Path:
    """RMF/RSP from a dense (n_e, n_chan) matrix, encoded in F_CHAN/N_CHAN groups."""
    dense = np.asarray(dense, dtype=float)
    n_e, n_chan = dense.shape
    first = 1 if tlmin is None else tlmin
    groups = [_groups(row) for row in dense]
    n_grp = np.array([len(g) for g in groups])
    width = max(int(n_grp.max()), 1)
    if variable_length:
        f_chan = np.array([np.array([first + s for s, _ in g], dtype=np.int32) for g in groups], dtype=object)
        n_ch = np.array([np.array([k for _, k in g], dtype=np.int32) for g in groups], dtype=object)
        values = np.array([np.concatenate([row[s:s + k] for s, k in g]) if g else np.zeros(0)
                           for row, g in zip(dense, groups)], dtype=object)
        cols = [fits.Column("F_CHAN", "PJ()", array=f_chan), fits.Column("N_CHAN", "PJ()", array=n_ch),
                fits.Column("MATRIX", "PE()", array=values)]
    else:
        f_chan = np.zeros((n_e, width), dtype=np.int32)
        n_ch = np.zeros((n_e, width), dtype=np.int32)
        values = np.zeros((n_e, n_chan))
        for i, g in enumerate(groups):
            packed = np.concatenate([dense[i, s:s + k] for s, k in g]) if g else np.zeros(0)
            values[i, :packed.size] = packed
            for j, (s, k) in enumerate(g):
                f_chan[i, j], n_ch[i, j] = first + s, k
        cols = [fits.Column("F_CHAN", f"{width}J", array=f_chan),
                fits.Column("N_CHAN", f"{width}J", array=n_ch),
                fits.Column("MATRIX", f"{n_chan}E", array=values)]
    cols = [fits.Column("ENERG_LO", "E", array=np.asarray(energ_lo)),
            fits.Column("ENERG_HI", "E", array=np.asarray(energ_hi)),
            fits.Column("N_GRP", "I", array=n_grp)] + cols
    extra = {"DETCHANS": n_chan, "HDUCLAS2": "RSP_MATRIX", "CHANTYPE": "PI"}
    if hduclas3:
        extra["HDUCLAS3"] = hduclas3
    matrix = fits.BinTableHDU.from_columns(cols, header=_header(extname, "RESPONSE", extra))
    if tlmin is not None:
        matrix.header["TLMIN4"] = tlmin
    hdus = [fits.PrimaryHDU(), matrix]
    if ebounds:
        eb = fits.BinTableHDU.from_columns(
            [fits.Column("CHANNEL", "J", array=first + np.arange(n_chan)),
             fits.Column("E_MIN", "E", array=np.asarray(e_min)),
             fits.Column("E_MAX", "E", array=np.asarray(e_max))],
            header=_header("EBOUNDS", "RESPONSE", {"HDUCLAS2": "EBOUNDS", "DETCHANS": n_chan}))
        hdus.append(eb)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_arf(path: Path, energ_lo, energ_hi, area) -> Path:
    """ARF SPECRESP table."""
    cols = [fits.Column("ENERG_LO", "E", array=np.asarray(energ_lo)),
            fits.Column("ENERG_HI", "E", array=np.asarray(energ_hi)),
            fits.Column("SPECRESP", "E", array=np.asarray(area))]
    hdu = fits.BinTableHDU.from_columns(cols, header=_header("SPECRESP", "RESPONSE",
                                                             {"HDUCLAS2": "SPECRESP"}))
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def toy_grid(n_e: int = 40, n_chan: int = 12):
    """Small energy grid (keV), channel bounds and a banded dense redistribution."""
    edges = np.linspace(0.2, 8.2, n_e + 1)
    cedges = np.linspace(0.0, 9.6, n_chan + 1)
    centre = 0.5 * (edges[:-1] + edges[1:])
    dense = np.zeros((n_e, n_chan))
    for i, e in enumerate(centre):
        j = min(int(np.searchsorted(cedges, e) - 1), n_chan - 1)
        dense[i, j] = 0.7
        if j + 1 < n_chan:
            dense[i, j + 1] = 0.2
        if j >= 1:
            dense[i, j - 1] = 0.1
    return edges[:-1], edges[1:], cedges[:-1], cedges[1:], dense


def write_toy_response(folder: Path, area_cm2: float = 20.0) -> Path:
    """``toy.rmf`` (12 channels, 0.2-8.2 keV, :func:`toy_grid`) and ``toy.arf`` (flat, cm²) in ``folder``."""
    elo, ehi, cmin, cmax, dense = toy_grid(n_e=40, n_chan=12)
    write_rmf(folder / "toy.rmf", elo, ehi, cmin, cmax, dense)
    write_arf(folder / "toy.arf", elo, ehi, np.full(elo.size, area_cm2))
    return folder
