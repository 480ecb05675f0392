"""Reading an OGIP/92-009 table model file into a :class:`~xspec_sbi.model.table.TableModel`.

What the file holds and how it is evaluated: :mod:`xspec_sbi.model.table`.
The checks name the file and the missing extension, column or keyword;
:func:`table_component` reads each file once (per modification time) and
gives the component an expression's ``atable{file}`` stands for.
"""
from __future__ import annotations

import os

import numpy as np

from xspec_sbi.model.catalogue import ModelError
from xspec_sbi.model.table import REDSHIFT_ROW, TABLE_KINDS, TableInfo, TableModel

__all__ = ["read_table", "table_component"]


def _hdu(hdul, name: str, path: str):
    for h in hdul[1:]:
        if str(h.header.get("EXTNAME", "")).strip().upper() == name:
            return h
    raise ModelError(f"table model {path}: no {name} extension (OGIP/92-009)")


def _column(hdu, name: str, path: str):
    names = [c.upper() for c in hdu.columns.names]
    if name not in names:
        raise ModelError(f"table model {path}: extension {hdu.name} has no {name} column")
    return hdu.data.field(hdu.columns.names[names.index(name)])


def _flag(header, key: str, default: bool) -> bool:
    value = header.get(key, default)
    if isinstance(value, str):
        return value.strip().upper() in ("T", "TRUE", "Y", "YES")
    return bool(value)


def read_table(path: str | os.PathLike, keyword: str) -> TableModel:
    """Read a table model file for ``atable``, ``mtable`` or ``etable``.

    Parameters
    ----------
    path : str or path-like
        The FITS file; a relative path is taken from the working directory,
        as XSPEC does.
    keyword : str
        ``"atable"``, ``"mtable"`` or ``"etable"``.

    Raises
    ------
    ModelError
        Naming the file and the missing extension, column or keyword, or the
        inconsistency (an additive file used as mtable, a grid point missing).
    """
    from astropy.io import fits

    keyword = keyword.lower()
    kind = TABLE_KINDS[keyword]
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ModelError(f"{keyword}{{{path}}}: table model file not found "
                         "(a relative path is taken from the working directory)")
    try:
        hdul = fits.open(path, memmap=False)
    except OSError as exc:
        raise ModelError(f"table model {path}: not a readable FITS file ({exc})") from exc
    with hdul:
        primary = hdul[0].header
        additive = _flag(primary, "ADDMODEL", True)
        if additive != (kind == "add"):
            needs = "ADDMODEL = T" if kind == "add" else "ADDMODEL = F"
            raise ModelError(f"table model {path}: ADDMODEL = {'T' if additive else 'F'}, so it "
                             f"is {'an additive' if additive else 'a multiplicative'} table; "
                             f"{keyword} needs {needs}")
        if _flag(primary, "ESCALE", False):
            raise ModelError(f"table model {path}: ESCALE = T (an energy-scale parameter) is "
                             "not supported (XSPEC 12.9.1 does not read it)")
        if int(primary.get("NXFLTEXP", 1)) > 1:
            raise ModelError(f"table model {path}: NXFLTEXP > 1 (several spectra per grid "
                             "point) is not supported")
        name = str(primary.get("MODLNAME", "")).strip()
        if not name:
            raise ModelError(f"table model {path}: no MODLNAME keyword (the component's name)")
        redshift = _flag(primary, "REDSHIFT", False)
        default = 1.0 if kind == "mul" else 0.0
        outside = (float(primary.get("LOELIMIT", default)), float(primary.get("HIELIMIT", default)))
        if kind == "add" and (outside[0] != 0.0 or outside[1] != 0.0):
            raise ModelError(f"table model {path}: non-zero LOELIMIT/HIELIMIT in an additive "
                             "table is not supported")

        par = _hdu(hdul, "PARAMETERS", path)
        names = [str(n).strip() for n in _column(par, "NAME", path)]
        n_int = int(par.header.get("NINTPARM", len(names)))
        n_add = int(par.header.get("NADDPARM", len(names) - n_int))
        if n_int < 1 or n_int + n_add != len(names):
            raise ModelError(f"table model {path}: NINTPARM = {n_int} and NADDPARM = {n_add} "
                             f"do not match the {len(names)} rows of PARAMETERS")
        cols = {c: np.asarray(_column(par, c, path), dtype=np.float64)
                for c in ("INITIAL", "DELTA", "MINIMUM", "BOTTOM", "TOP", "MAXIMUM")}
        units = ([str(u).strip() for u in _column(par, "UNITS", path)]
                 if "UNITS" in [c.upper() for c in par.columns.names] else [""] * len(names))
        method = np.asarray(_column(par, "METHOD", path), dtype=int)
        numbvals = np.asarray(_column(par, "NUMBVALS", path), dtype=int)
        value = _column(par, "VALUE", path)
        rows, grid, log = [], [], []
        for j, pname in enumerate(names):
            rows.append((pname, units[j], cols["INITIAL"][j], cols["MINIMUM"][j],
                         cols["BOTTOM"][j], cols["TOP"][j], cols["MAXIMUM"][j],
                         cols["DELTA"][j], ""))
            if j >= n_int:
                continue
            g = np.atleast_1d(np.asarray(value[j], dtype=np.float64))[:numbvals[j]]
            if g.size != numbvals[j] or g.size < 1 or np.any(np.diff(g) <= 0):
                raise ModelError(f"table model {path}: parameter {pname}: VALUE must hold "
                                 f"NUMBVALS = {numbvals[j]} increasing values")
            if method[j] not in (0, 1):
                raise ModelError(f"table model {path}: parameter {pname}: METHOD = {method[j]} "
                                 "(0 linear, 1 logarithmic)")
            if method[j] == 1 and g[0] <= 0:
                raise ModelError(f"table model {path}: parameter {pname}: logarithmic "
                                 "interpolation (METHOD = 1) needs positive VALUEs")
            grid.append(g)
            log.append(bool(method[j]))
        if redshift:
            rows.append(REDSHIFT_ROW)

        energies = _hdu(hdul, "ENERGIES", path)
        lo = np.asarray(_column(energies, "ENERG_LO", path), dtype=np.float64)
        hi = np.asarray(_column(energies, "ENERG_HI", path), dtype=np.float64)
        edges = np.append(lo, hi[-1:])
        if lo.size < 1 or np.any(np.diff(edges) <= 0) or not np.allclose(lo[1:], hi[:-1],
                                                                           rtol=1e-6):
            raise ModelError(f"table model {path}: ENERGIES must be contiguous increasing bins "
                             "(ENERG_LO[i+1] = ENERG_HI[i])")

        spectra_hdu = _hdu(hdul, "SPECTRA", path)
        paramval = np.asarray(_column(spectra_hdu, "PARAMVAL", path), dtype=np.float64)
        paramval = paramval.reshape(paramval.shape[0], -1)
        blocks = [np.asarray(_column(spectra_hdu, "INTPSPEC", path), dtype=np.float64)]
        blocks += [np.asarray(_column(spectra_hdu, f"ADDSP{a:03d}", path), dtype=np.float64)
                   for a in range(1, n_add + 1)]
    shape = tuple(g.size for g in grid)
    if paramval.shape[1] != n_int:
        raise ModelError(f"table model {path}: PARAMVAL has {paramval.shape[1]} values per row, "
                         f"NINTPARM = {n_int}")
    for b in blocks:
        n_values = b.reshape(b.shape[0], -1).shape[1]
        if n_values != lo.size:
            raise ModelError(f"table model {path}: SPECTRA rows have {n_values} values, "
                             f"ENERGIES {lo.size} bins")
    spectra = np.full(shape + (1 + n_add, lo.size), np.nan)
    filled = np.zeros(shape, dtype=bool)
    for r in range(paramval.shape[0]):
        index = []
        for j, g in enumerate(grid):
            hit = np.flatnonzero(np.isclose(g, paramval[r, j], rtol=1e-6, atol=0.0))
            if hit.size != 1:
                raise ModelError(f"table model {path}: SPECTRA row {r + 1}: PARAMVAL "
                                 f"{paramval[r, j]!r} of {names[j]} is not one of its VALUEs")
            index.append(int(hit[0]))
        index = tuple(index)
        if filled[index]:
            raise ModelError(f"table model {path}: SPECTRA row {r + 1} repeats a grid point")
        filled[index] = True
        for a, b in enumerate(blocks):
            spectra[index + (a,)] = b[r].reshape(-1)
    if not filled.all():
        raise ModelError(f"table model {path}: SPECTRA has {int(filled.sum())} rows, the grid "
                         f"{int(np.prod(shape))} points")
    return TableModel(path=path, kind=kind, name=name, rows=tuple(rows), grid=tuple(grid),
                      log=tuple(log), energy_edges=edges, spectra=spectra, redshift=redshift,
                      outside=outside)


_cache: dict = {}


def table_component(keyword: str, path: str) -> TableInfo:
    """The component for ``atable{path}`` (read once per file and modification time)."""
    resolved = os.path.abspath(path.strip())
    try:
        stamp = os.stat(resolved).st_mtime_ns
    except OSError:
        stamp = None
    key = (keyword.lower(), resolved, stamp)
    if key not in _cache:
        if len(_cache) > 32:
            _cache.clear()
        table = read_table(resolved, keyword)
        _cache[key] = TableInfo(
            name=table.name, kind="add" if table.kind == "add" else "mul", symbol="",
            emin=float(table.energy_edges[0]), emax=float(table.energy_edges[-1]),
            parameters=table.rows, function="", table=table, keyword=keyword.lower())
    return _cache[key]
