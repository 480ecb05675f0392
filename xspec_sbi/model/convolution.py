"""Convolution (``con``) components: the energy grid each needs, and applying one.

XSPEC's convolution functions take the flux of the expression they act on
and modify it in place, on the model's energy grid (``model.dat``'s ``con``
kind; XSPEC manual, "Convolution Model Components"). XSPEC evaluates them on
the response's grid unless the user extends it (``energies extend``), so a
model that moves flux across energies is wrong near the grid's ends: a
redshift needs the input up to ``(1 + z)`` times the top energy, a Gaussian
smoothing a few widths beyond both ends. The engine extends the grid where
the component needs it, evaluates the operand there, applies the function,
and cuts back to the original bins.

The extension (:func:`grid_extension`), per row of parameters:

=====================  ===========================================================
component              extra bins, below / above the grid
=====================  ===========================================================
zashift, zmshift       down to ``E_lo (1 + z)`` for ``z < 0``; up to ``E_hi (1 + z)``
                       for ``z > 0``
vashift, vmshift       both ends by the factor ``1 / (1 - |v|/c)`` (either sign of
                       XSPEC's velocity convention is covered)
gsmooth                6 widths ``Sigma(E) = Sig_6keV (E/6)^Index`` at each end
                       (XSPEC's kernel stops within 5 widths, measured); none below
                       when that would reach under half the grid's lowest energy
others (cflux, ...)    none: XSPEC's own behaviour, on the grid as given
=====================  ===========================================================

The extra bins continue the grid geometrically, with the ratio of its first
(last) bin, in steps of :data:`STEP_QUANTUM` bins, so a longer extension
contains a shorter one bin for bin. Each row is convolved on its own
extension (a slice of the batch's), so a row's result does not depend on the
other rows of its batch. The library is not thread-safe: one call per row,
in this thread.
"""
from __future__ import annotations

import math

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.catalogue import ModelError

__all__ = ["STEP_QUANTUM", "MAX_EXTRA_BINS", "grid_extension", "extended_grid", "convolve"]

# Extensions are rounded up to a multiple of this many bins: fewer distinct
# grids across batches (the absorber cache is per grid), the same results.
STEP_QUANTUM = 64
# A grid extended by more than this many bins on one side is refused (a
# redshift of 10 on a 1 eV grid), naming the component.
MAX_EXTRA_BINS = 200_000

_C_KM_S = 299792.458   # speed of light, km s^-1
_GSMOOTH_WIDTHS = 6.0


def _needed_energies(key: str, edges: np.ndarray, pars: np.ndarray):
    """Lowest and highest energy (keV) each row needs, shape (n_batch,) each."""
    n = pars.shape[0]
    lo, hi = np.full(n, edges[0]), np.full(n, edges[-1])
    if key in ("zashift", "zmshift"):
        z = pars[:, 0]
        lo = np.where(z < 0, edges[0] * (1.0 + z), lo)
        hi = np.where(z > 0, edges[-1] * (1.0 + z), hi)
    elif key in ("vashift", "vmshift"):
        beta = np.minimum(np.abs(pars[:, 0]) / _C_KM_S, 0.5)
        factor = 1.0 / (1.0 - beta)
        lo, hi = edges[0] / factor, edges[-1] * factor
    elif key == "gsmooth":
        sigma6, index = pars[:, 0], pars[:, 1]

        def width(e):
            return np.abs(sigma6) * (e / 6.0) ** index
        # Below the grid only where the kernel is narrow there: a kernel wider than
        # half the lowest energy would smooth in whatever lies near 0 keV, which
        # depends on where one stops; XSPEC's grid as given is kept then.
        lo = edges[0] - _GSMOOTH_WIDTHS * width(edges[0])
        lo = np.where(lo >= 0.5 * edges[0], lo, edges[0])
        # The width grows with energy for Index > 0: take it at the far end.
        hi = edges[-1] + _GSMOOTH_WIDTHS * width(edges[-1])
        hi = edges[-1] + _GSMOOTH_WIDTHS * np.maximum(width(hi), width(edges[-1]))
    return lo, hi


def _steps(factor, ratio, label, energy):
    """Bins of ``ratio`` that span ``factor`` (>= 1), rounded up to STEP_QUANTUM."""
    need = np.log(factor) / math.log(ratio)
    # The small slack keeps an exact fit (factor = ratio**k) at k bins.
    k = np.ceil(np.maximum(need, 0.0) - 1e-9).astype(np.int64)
    k = -(-k // STEP_QUANTUM) * STEP_QUANTUM
    if k.size and int(k.max()) > MAX_EXTRA_BINS:
        raise ModelError(f"convolution component {label}: extending the energy grid to "
                         f"{energy:.4g} keV takes more than {MAX_EXTRA_BINS} bins of its "
                         "edge bin's ratio; use a coarser energy grid")
    return k


def grid_extension(name: str, edges: np.ndarray, pars: np.ndarray):
    """Extra bins below and above ``edges`` each row of parameters needs.

    Parameters
    ----------
    name : str
        The component's name in ``model.dat`` (any case).
    edges : ndarray (n_e + 1,), keV
    pars : ndarray (n_batch, n_par)
        The component's parameters, ``model.dat`` order.

    Returns
    -------
    below, above : ndarray (n_batch,) of int
        Bin counts, multiples of :data:`STEP_QUANTUM` (0 where none is needed).
    """
    key = name.lower()
    lo, hi = _needed_energies(key, edges, pars)
    n = pars.shape[0]
    below = above = np.zeros(n, dtype=np.int64)
    if np.any(lo < edges[0]):
        if edges[0] <= 0:
            raise ModelError(f"convolution component {name}: the energy grid starts at "
                             f"{edges[0]:g} keV; it must start above 0 to be extended")
        below = _steps(edges[0] / np.minimum(lo, edges[0]), edges[1] / edges[0], name,
                       float(np.min(lo)))
    if np.any(hi > edges[-1]):
        above = _steps(np.maximum(hi, edges[-1]) / edges[-1], edges[-1] / edges[-2], name,
                       float(np.max(hi)))
    return below, above


def extended_grid(edges: np.ndarray, below: int, above: int) -> np.ndarray:
    """``edges`` with ``below`` and ``above`` extra bins continuing its end ratios, keV.

    The extra edges are ``E_lo r_lo^-k`` and ``E_hi r_hi^k`` (``k = 1..``), with
    ``r_lo``, ``r_hi`` the ratios of the first and last bins, so the grid with
    fewer extra bins is a slice of the one with more.
    """
    parts = []
    if below:
        r = edges[1] / edges[0]
        parts.append(edges[0] * r ** -np.arange(below, 0, -1, dtype=np.float64))
    parts.append(edges)
    if above:
        r = edges[-1] / edges[-2]
        parts.append(edges[-1] * r ** np.arange(1, above + 1, dtype=np.float64))
    return np.concatenate(parts)


def convolve(function, name: str, edges: np.ndarray, pars: np.ndarray, operand) -> np.ndarray:
    """A convolution component applied to its operand, for a batch of rows.

    Parameters
    ----------
    function : ModelFunction
        The component's function (``model.dat``'s interface).
    name : str
        The component's name (for its grid extension and errors).
    edges : ndarray (n_e + 1,), keV
        The grid the result is wanted on.
    pars : ndarray (n_batch, n_par)
        The component's parameters.
    operand : callable
        ``operand(grid) -> (n_batch, n_grid - 1)``: the expression the component
        acts on, evaluated on a grid (photons cm^-2 s^-1 per bin, or the factor
        of a multiplicative expression).

    Returns
    -------
    ndarray (n_batch, n_e)
    """
    below, above = grid_extension(name, edges, pars)
    b_max, a_max = int(below.max(initial=0)), int(above.max(initial=0))
    grid = extended_grid(edges, b_max, a_max)
    inner = np.asarray(operand(grid), dtype=np.float64)
    n_e = edges.size - 1
    out = np.empty((pars.shape[0], n_e))
    done: dict = {}
    for row in range(pars.shape[0]):
        # The row's own extension, a slice of the batch's grid.
        start, stop = b_max - int(below[row]), b_max + n_e + int(above[row])
        flux = inner[row, start:stop]
        key = (pars[row].tobytes(), start, stop, flux.tobytes())
        if key not in done:
            result = xslibrary.call_model(function, grid[start:stop + 1], pars[row], flux=flux)
            cut = b_max - start
            done[key] = result[cut:cut + n_e]
        out[row] = done[key]
    return out
