"""Evaluating a parsed model expression on an energy grid, for a batch of parameters.

Speed comes from identities that hold exactly for XSPEC's functions and are
tested against direct calls:

* additive components are linear in their norm (XSPEC itself multiplies the
  norm in after the call);
* single-parameter photoelectric absorbers obey ``f(nH) = f(1) ** nH``
  (``tbabs``, ``phabs``: exp of nH times a cross-section; not ``wabs``, whose
  values break it);
* ``powerlaw`` has XSPEC's closed-form bin integral;
* a component whose parameters do not vary across the batch is computed once
  (one row, broadcast against the batch: the same numbers as a row per
  vector), and repeated parameter vectors are computed once.

A convolution node (``("conv", component, operand)``) is
:mod:`xspec_sbi.model.convolution`'s: the operand is evaluated on the grid
the component needs, then the component's function is applied row by row.

Each component calls the function ``model.dat`` lists, by its interface
(:attr:`xspec_sbi.model.catalogue.ComponentInfo.model_function`).
"""
from __future__ import annotations

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.convolution import convolve, extended_grid, grid_extension
from xspec_sbi.model.table import TableInfo

__all__ = ["Evaluator", "powerlaw_integral"]

# Single-parameter absorbers for which f(nH) = f(1)**nH was checked against
# XSPEC (tests). Not wabs: its values break the identity by tens of percent.
_POWER_IN_NH = {"tbabs", "phabs"}


class Evaluator:
    """Evaluates ``model``'s expression tree on ``edges`` (n_e + 1,), keV."""

    def __init__(self, model: Model, edges: np.ndarray):
        self.model = model
        self.edges = edges

    def run(self, values):
        """Flux (n_batch, n_e) of every row of ``values`` (n_batch, n_parameters)."""
        return _full(self._eval(self.model._tree, values), values.shape[0])

    def _eval(self, tree, values):
        if tree[0] == "conv":
            return self._convolution(tree, values)
        if tree[0] == "c":
            return self._component(self.model.components[tree[1]], values)
        parts = [self._eval(t, values) for t in tree[1]]
        op = np.add if tree[0] == "+" else np.multiply
        out = parts[0]
        for p in parts[1:]:
            # Every part is a fresh array of this evaluation: the result is written into the
            # one of the batch's shape (IEEE + and * commute: the bits of out + p), sparing
            # a batch-sized allocation per operator.
            out = op(out, p, out=out) if out.shape[0] >= p.shape[0] else op(p, out, out=p)
        return out

    def _convolution(self, tree, values):
        """A con component on its operand, the operand evaluated on the grid it needs."""
        comp = self.model.components[tree[1]]
        info = comp.info
        pars = values[:, comp.first_parameter:comp.first_parameter + len(info.parameters)]
        return convolve(info.model_function, info.name, self.edges, pars,
                        lambda grid: _full(Evaluator(self.model, grid)._eval(tree[2], values),
                                           values.shape[0]))

    def extension(self, values) -> tuple[int, int]:
        """Extra bins below and above the grid the evaluation of ``values`` uses.

        Nested convolutions extend an extended grid further, with the same end
        ratios, so the total is one extension of the original grid: XSPEC's
        ``energies extend low|high <E> <n> log`` makes that grid.
        """
        return self._extension(self.model._tree, values)

    def _extension(self, tree, values):
        if tree[0] == "c":
            return 0, 0
        if tree[0] != "conv":
            parts = [self._extension(t, values) for t in tree[1]]
            return max(p[0] for p in parts), max(p[1] for p in parts)
        info = self.model.components[tree[1]].info
        first = self.model.components[tree[1]].first_parameter
        below, above = grid_extension(info.name, self.edges,
                                      values[:, first:first + len(info.parameters)])
        b, a = int(below.max(initial=0)), int(above.max(initial=0))
        inner = Evaluator(self.model, extended_grid(self.edges, b, a))._extension(tree[2], values)
        return b + inner[0], a + inner[1]

    def _component(self, comp: Component, values):
        """(n_batch, n_e), or (1, n_e) for a multiplicative component the same for every row.

        A fresh array (the caller may write into it).
        """
        info = comp.info
        n_own = len(info.parameters)
        pars = values[:, comp.first_parameter:comp.first_parameter + n_own]
        if len(pars) > 1 and np.all(pars == pars[:1]):
            # Frozen shape parameters (a burst sequence's nH and photon index): one row,
            # which broadcasting multiplies into the batch as a row per vector would.
            pars = pars[:1]
        key = info.name.lower()
        if isinstance(info, TableInfo):
            # atable/mtable/etable: the file's grid, not a library function
            # (its name is the table's MODLNAME and may shadow one).
            # a copy: the evaluation writes into its parts
            shape = np.array(info.table.evaluate(self.edges, pars), dtype=np.float64)
        elif key == "powerlaw":
            shape = powerlaw_integral(self.edges, pars[:, 0])
        elif key in _POWER_IN_NH and n_own == 1:
            log_unit = _log_unit_absorption(info.model_function, self.edges, xslibrary.current_settings())
            shape = _power(log_unit, pars[:, 0])
        else:
            shape = _by_unique_rows(info.model_function, self.edges, pars)
        if info.kind == "add":
            norm = values[:, comp.first_parameter + n_own][:, None]
            shape = np.multiply(shape, norm, out=shape) if len(shape) == len(norm) else shape * norm
        return shape


def powerlaw_integral(edges: np.ndarray, index: np.ndarray) -> np.ndarray:
    """XSPEC's ``powerlaw`` with norm 1: the bin integral of E^-index.

    Parameters
    ----------
    edges : ndarray (n_e + 1,), keV
    index : ndarray (n_batch,)
        Photon index.

    Returns
    -------
    ndarray (n_batch, n_e), photons cm^-2 s^-1 per bin

    Notes
    -----
    ``(E_hi^(1-a) - E_lo^(1-a)) / (1-a)``, and ``ln(E_hi/E_lo)`` at ``a = 1``,
    the same closed form as XSPEC's C_powerLaw (checked against it in tests).
    """
    a = np.asarray(index, dtype=np.float64)[:, None]
    s = 1.0 - a
    log_edges = np.log(edges)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.exp(s * log_edges)
        out = (p[:, 1:] - p[:, :-1]) / s
    flat = np.abs(s[:, 0]) < 1e-10
    if flat.any():
        out[flat] = (log_edges[:, 1:] - log_edges[:, :-1])
    return out


_unit_cache: dict = {}


def _log_unit_absorption(function, edges, settings):
    """ln f(nH=1) of an absorber, cached per grid and XSPEC settings.

    Where f(1) underflows (deep absorption at low energy; phabs
    compute in single precision, so below ~1e-30) the logarithm is recovered
    from f(1e-3) * 1e3, so f(nH) stays right for small nH. For those
    single-precision absorbers the identity holds to their own rounding
    (~1e-7 relative per unit optical depth); for tbabs to ~1e-14.
    """
    key = (function, edges.tobytes(), settings)
    if key not in _unit_cache:
        if len(_unit_cache) > 16:
            _unit_cache.clear()
        with np.errstate(divide="ignore"):
            log_one = np.log(xslibrary.call_model(function, edges, np.array([1.0])))
            small = ~(log_one > np.log(1e-30))
            if small.any():
                log_milli = np.log(xslibrary.call_model(function, edges, np.array([1e-3])))
                log_one[small] = 1e3 * log_milli[small]
        _unit_cache[key] = log_one
    return _unit_cache[key]


def _power(log_unit: np.ndarray, nh: np.ndarray) -> np.ndarray:
    """``exp(nh * ln f(1))`` for a batch; 1 at nH = 0 even where ln f(1) = -inf."""
    with np.errstate(invalid="ignore"):
        out = np.exp(nh[:, None] * log_unit[None, :])
    dead = np.isneginf(log_unit)
    if dead.any():
        out[:, dead] = np.where(nh[:, None] == 0.0, 1.0, 0.0)
    return out


def _full(flux, n_batch: int):
    """``flux`` as a fresh (n_batch, n_e) array (a component the same for every row is one row)."""
    if flux.shape[0] == n_batch:
        return flux
    return np.repeat(flux, n_batch, axis=0)


def _by_unique_rows(function, edges, pars):
    uniq, inverse = np.unique(pars, axis=0, return_inverse=True)
    if len(uniq) == len(pars):
        # every vector its own (posterior draws): in their order, sparing a gather of the batch
        uniq, inverse = pars, None
    rows = xslibrary.call_model_rows(function, edges, uniq)
    return rows if inverse is None else rows[inverse.reshape(-1)]
