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

Reading the file is :mod:`xspec_sbi.model.table_file`.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np

from xspec_sbi.model.catalogue import ComponentInfo

__all__ = ["TableModel", "TableInfo", "TABLE_KINDS", "REDSHIFT_ROW", "rebin_flux", "average_values"]

# The expression's keyword -> how the table's values enter the model.
TABLE_KINDS = {"atable": "add", "mtable": "mul", "etable": "exp"}

# XSPEC's redshift parameter of a table, frozen (negative delta), as XSPEC
# 12.9.1 shows it: z = 0, delta 0.001, limits 0-5 (checked in the live tests).
REDSHIFT_ROW = ("z", "", 0.0, 0.0, 0.0, 5.0, 5.0, -0.001, "")


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

    def digest(self) -> str:
        """SHA-256 (16 hex digits) of what the table evaluates: a network trained on one
        table is refused on a file edited in place under the same name."""
        h = hashlib.sha256(f"{self.kind}|{self.name}|{self.rows!r}|{self.log}|{self.redshift}|"
                           f"{self.outside}".encode())
        for a in (*self.grid, self.energy_edges, self.spectra):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

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


@dataclass(frozen=True)
class TableInfo(ComponentInfo):
    """A table model as a component of an expression (``ComponentInfo`` plus its table)."""

    table: TableModel | None = None
    keyword: str = ""
