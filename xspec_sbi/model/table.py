"""XSPEC table models (OGIP/92-009): ``atable{file}``, ``mtable{file}``, ``etable{file}``.

A table model file holds model spectra on a grid of parameter values:

* primary header: ``MODLNAME`` (the component's name), ``ADDMODEL``
  (additive or not), ``REDSHIFT`` (a redshift parameter is added),
  ``LOELIMIT``/``HIELIMIT`` (the value outside the tabulated energies);
* ``PARAMETERS``: ``NAME``, ``METHOD`` (0 linear, 1 logarithmic
  interpolation), ``INITIAL``, ``DELTA`` (negative: frozen), ``MINIMUM``,
  ``BOTTOM``, ``TOP``, ``MAXIMUM``, ``NUMBVALS``, ``VALUE``; header
  ``NINTPARM`` interpolated parameters, then ``NADDPARM`` additional ones;
* ``ENERGIES``: ``ENERG_LO``, ``ENERG_HI`` (keV);
* ``SPECTRA``: ``PARAMVAL`` (one row per grid point), ``INTPSPEC`` and one
  ``ADDSPnnn`` per additional parameter.

Evaluation follows XSPEC's table routines (``tblint``, ``xsatbl``,
``xsmtbl``):

1. multilinear interpolation of the spectra over the grid of the
   interpolated parameters, in the parameter or in its logarithm
   (``METHOD = 1``), a value outside the grid taken at its end;
2. the additional spectra, interpolated the same way, added times their
   parameter's value;
3. with ``REDSHIFT = T`` the table's energies divided by ``1 + z``;
4. onto the evaluation grid: an additive table's values are photons per bin,
   so they are rebinned (each table bin's flux spread evenly over its
   width, i.e. the cumulative interpolated linearly) and divided by
   ``1 + z`` (time dilation); a multiplicative table's values are averaged
   over the table bins an output bin covers, each weighted by the fraction
   of it inside the output bin (XSPEC's ``eintrp``), ``LOELIMIT``/``HIELIMIT``
   (default 1) where the output bin covers no table bin; an exponential
   table is ``exp(-value)`` of that average (default value 0).

The spectra rows are placed on the grid by their ``PARAMVAL``, so their order
in the file does not matter; a grid point missing or given twice is an error
naming the file. ``ESCALE = T`` and several spectra per grid point
(``NXFLTEXP``) are refused: XSPEC 12.9.1, the reference here, reads neither.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

from xspec_sbi.model.catalogue import ComponentInfo, ModelError

__all__ = ["TableModel", "TableInfo", "TABLE_KINDS", "read_table", "table_component"]

# The expression's keyword -> how the table's values enter the model.
TABLE_KINDS = {"atable": "add", "mtable": "mul", "etable": "exp"}

# XSPEC's redshift parameter of a table, frozen (negative delta), as XSPEC
# 12.9.1 shows it: z = 0, delta 0.001, limits 0-5 (checked in the live tests).
_REDSHIFT_ROW = ("z", "", 0.0, 0.0, 0.0, 5.0, 5.0, -0.001, "")


@dataclass(frozen=True, eq=False)
class TableModel:
    """The content of one table model file, ready to evaluate.

    Parameters
    ----------
    path : str
        The file, as resolved when read (absolute).
    kind : str
        ``"add"`` (atable), ``"mul"`` (mtable) or ``"exp"`` (etable).
    name : str
        ``MODLNAME``: the component's name.
    rows : tuple of tuple
        Parameter rows in ``model.dat``'s layout ``(name, unit, value, min,
        bot, top, max, delta, special)``: interpolated, additional, then the
        redshift when there is one (no norm: the model adds it).
    grid : tuple of ndarray
        Tabulated values of each interpolated parameter, increasing.
    log : tuple of bool
        Whether each interpolated parameter is interpolated in its logarithm.
    energy_edges : ndarray (n_t + 1,), keV
    spectra : ndarray (n_1, ..., n_k, 1 + n_add, n_t)
        ``INTPSPEC`` then each ``ADDSPnnn`` at every grid point.
    redshift : bool
    outside : tuple of float
        Value below and above the tabulated energies (mul/exp tables).
    """

    path: str
    kind: str
    name: str
    rows: tuple
    grid: tuple
    log: tuple
    energy_edges: np.ndarray
    spectra: np.ndarray
    redshift: bool
    outside: tuple = (1.0, 1.0)

    @property
    def n_interpolated(self) -> int:
        return len(self.grid)

    @property
    def n_additional(self) -> int:
        return self.spectra.shape[-2] - 1

    def evaluate(self, edges: np.ndarray, pars: np.ndarray) -> np.ndarray:
        """The table's model on ``edges`` for a batch of its own parameters.

        Parameters
        ----------
        edges : ndarray (n_e + 1,), keV
        pars : ndarray (n_batch, len(rows))
            Interpolated, additional, then redshift values (no norm).

        Returns
        -------
        ndarray (n_batch, n_e)
            Photons cm^-2 s^-1 per bin for a norm of 1 (additive), or the
            multiplicative factor (mtable, etable).
        """
        pars = np.atleast_2d(np.asarray(pars, dtype=np.float64))
        uniq, inverse = np.unique(pars, axis=0, return_inverse=True)
        values = self.interpolate(uniq[:, :self.n_interpolated + self.n_additional])
        z = uniq[:, -1] if self.redshift else np.zeros(uniq.shape[0])
        out = np.empty((uniq.shape[0], edges.size - 1))
        for zi in np.unique(z):
            rows = z == zi
            # The table's bin edges as observed: E / (1 + z); equivalently the
            # output edges moved into the table's frame, E (1 + z).
            frame_edges = np.asarray(edges, dtype=np.float64) * (1.0 + zi)
            if self.kind == "add":
                out[rows] = rebin_flux(self.energy_edges, values[rows], frame_edges) / (1.0 + zi)
            else:
                avg = average_values(self.energy_edges, values[rows], frame_edges, self.outside)
                out[rows] = np.exp(-avg) if self.kind == "exp" else avg
        return out[inverse.reshape(-1)]

    def interpolate(self, pars: np.ndarray) -> np.ndarray:
        """The table's spectrum on its own energy grid, shape (n_batch, n_t).

        Multilinear over the ``2**k`` corners of the grid cell holding each
        parameter vector; additional spectra added times their parameter.
        """
        k = self.n_interpolated
        lower, weight = [], []
        for j in range(k):
            i, w = _cell(self.grid[j], pars[:, j], self.log[j])
            lower.append(i)
            weight.append(w)
        total = np.zeros((pars.shape[0],) + self.spectra.shape[-2:])
        for corner in itertools.product((0, 1), repeat=k):
            w = np.ones(pars.shape[0])
            index = []
            for j, up in enumerate(corner):
                w = w * (weight[j] if up else 1.0 - weight[j])
                index.append(np.minimum(lower[j] + up, self.grid[j].size - 1))
            if not np.any(w):
                continue
            total += w[:, None, None] * self.spectra[tuple(index)]
        out = total[:, 0, :]
        for a in range(self.n_additional):
            out = out + pars[:, k + a][:, None] * total[:, 1 + a, :]
        return out


def _cell(grid: np.ndarray, value: np.ndarray, log: bool):
    """Lower grid index and the weight of the upper one; values clamped to the grid."""
    if grid.size == 1:
        return np.zeros(value.shape, dtype=int), np.zeros(value.shape)
    v = np.clip(value, grid[0], grid[-1])
    i = np.clip(np.searchsorted(grid, v, side="right") - 1, 0, grid.size - 2)
    lo, hi = grid[i], grid[i + 1]
    if log:
        w = (np.log(v) - np.log(lo)) / (np.log(hi) - np.log(lo))
    else:
        w = (v - lo) / (hi - lo)
    return i, w


def _cumulative_at(table_edges: np.ndarray, cumulative: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A cumulative over table bins (n, n_t + 1) at energies ``x``, linear within a bin."""
    xc = np.clip(x, table_edges[0], table_edges[-1])
    i = np.clip(np.searchsorted(table_edges, xc, side="right") - 1, 0, table_edges.size - 2)
    f = (xc - table_edges[i]) / (table_edges[i + 1] - table_edges[i])
    return cumulative[:, i] * (1.0 - f) + cumulative[:, i + 1] * f


def rebin_flux(table_edges: np.ndarray, flux: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Photons per table bin rebinned onto ``edges``, each bin's flux spread evenly.

    Parameters
    ----------
    table_edges : ndarray (n_t + 1,), keV
    flux : ndarray (n, n_t), photons cm^-2 s^-1 per table bin
    edges : ndarray (n_e + 1,), keV, in the table's frame

    Returns
    -------
    ndarray (n, n_e)
        Zero outside the tabulated energies; the total over bins that cover
        the table is the table's total (XSPEC's ``erebin``).
    """
    cumulative = np.concatenate([np.zeros((flux.shape[0], 1)), np.cumsum(flux, axis=1)], axis=1)
    return np.diff(_cumulative_at(table_edges, cumulative, edges), axis=1)


def average_values(table_edges: np.ndarray, values: np.ndarray, edges: np.ndarray,
                   outside=(1.0, 1.0)) -> np.ndarray:
    """Table values averaged over each output bin, as XSPEC's ``eintrp``.

    Each table bin counts by the fraction of it inside the output bin; an
    output bin that covers no table bin takes ``outside[0]`` below the table
    and ``outside[1]`` above it.

    Parameters
    ----------
    table_edges : ndarray (n_t + 1,), keV
    values : ndarray (n, n_t)
    edges : ndarray (n_e + 1,), keV, in the table's frame
    outside : (float, float)

    Returns
    -------
    ndarray (n, n_e)
    """
    n_t = table_edges.size - 1
    cumulative = np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(values, axis=1)],
                                axis=1)
    weighted = np.diff(_cumulative_at(table_edges, cumulative, edges), axis=1)
    count = np.diff(_cumulative_at(table_edges, np.arange(n_t + 1.0)[None, :], edges), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = weighted / count
    centre = 0.5 * (edges[:-1] + edges[1:])
    empty = ~(count[0] > 0)
    if empty.any():
        fill = np.where(centre < table_edges[0], outside[0], outside[1])
        out[:, empty] = fill[empty]
    return out


# --- reading ---------------------------------------------------------------

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
            raise ModelError(f"table model {path}: ADDMODEL = {'T' if additive else 'F'}, so it "
                             f"is {'an additive' if additive else 'a multiplicative'} table; "
                             f"{keyword} needs {'ADDMODEL = T' if kind == 'add' else 'ADDMODEL = F'}")
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
            rows.append(_REDSHIFT_ROW)

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
        if b.reshape(b.shape[0], -1).shape[1] != lo.size:
            raise ModelError(f"table model {path}: SPECTRA rows have "
                             f"{b.reshape(b.shape[0], -1).shape[1]} values, ENERGIES {lo.size} bins")
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


@dataclass(frozen=True)
class TableInfo(ComponentInfo):
    """A table model as a component of an expression (``ComponentInfo`` plus its table)."""

    table: TableModel | None = None
    keyword: str = ""


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
