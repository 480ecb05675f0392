"""The minimum of a batched statistic in the unit cube, and its curvature there.

:func:`xspec_sbi.inference.region.restrict_by_statistic` needs the best fit
and the shape of the statistic around it, in the prior's warped coordinates
``u`` in [0, 1]^k. Folding a batch of rows costs little more than folding one
(the call overhead dominates below ~10 rows), so each gradient is one batch of
``2 k + 1`` rows (central differences) and the Hessian one batch of
``1 + 2 k^2`` rows. The full C-stat fit with its error analysis lives in
:mod:`xspec_sbi.baseline.fit`; this is the few-call version the restriction
needs (a start and a shape, checked afterwards by probing). A statistic with
several minima is fitted from more starts (:func:`multistart_minima`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import minimize

__all__ = ["minimise_in_cube", "curvature_in_cube", "multistart_minima", "distinct_starts"]

#: ``f(u (n, k)) -> (n,)``: the statistic at warped positions.
Objective = Callable[[np.ndarray], np.ndarray]


def _finite(s: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(s), s, np.inf)


def minimise_in_cube(f: Objective, u0: np.ndarray, *, step: float = 1e-6, max_iter: int = 200,
                     ftol: float = 1e-7) -> tuple[np.ndarray, float]:
    """Bounded local minimum of ``f`` from ``u0`` (L-BFGS-B, batched central differences).

    Parameters
    ----------
    f : callable
        ``f(u (n, k)) -> (n,)``, e.g. C-stat at ``prior.from_unit(u)``.
    u0 : (k,) ndarray
        Start, in [0, 1]^k.
    step : float
        Finite-difference step in ``u`` (one-sided at a face of the cube).
    max_iter : int
    ftol : float
        Stop when an iteration improves ``f`` by less than this fraction of it: the
        restriction needs the minimum to a small part of its chi-square floor
        (1e-7 of a C-stat of 1e4 is 1e-3), not to L-BFGS-B's default 2e-9.

    Returns
    -------
    u : (k,) ndarray
        The minimum found (never worse than ``u0``).
    value : float
        ``f`` there.
    """
    u0 = np.clip(np.asarray(u0, dtype=float), 0.0, 1.0)
    k = len(u0)
    eye = np.eye(k)

    def value_and_grad(u):
        u = np.clip(u, 0.0, 1.0)
        hi = np.minimum(u + step, 1.0)
        lo = np.maximum(u - step, 0.0)
        rows = np.vstack([u[None], u + (hi - u)[:, None] * eye, u - (u - lo)[:, None] * eye])
        s = _finite(np.asarray(f(rows), dtype=float))
        if not np.all(np.isfinite(s)):
            # an undefined neighbour: report no slope, L-BFGS-B then stops here
            return float(s[0]), np.zeros(k)
        return float(s[0]), (s[1:k + 1] - s[k + 1:]) / (hi - lo)

    s0 = float(_finite(np.asarray(f(u0[None]), dtype=float))[0])
    if not np.isfinite(s0):
        return u0, s0
    res = minimize(value_and_grad, u0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * k,
                   options={"maxiter": max_iter, "ftol": ftol})
    u = np.clip(res.x, 0.0, 1.0)
    value = float(res.fun)
    return (u, value) if np.isfinite(value) and value <= s0 else (u0, s0)


def curvature_in_cube(f: Objective, u: np.ndarray, *, step: float = 1e-3) -> np.ndarray | None:
    """(k, k) Hessian of ``f`` at ``u`` by central differences, in one batch.

    The stencil is moved inside the cube where ``u`` lies on or near a face,
    so the Hessian is that of a neighbouring point: a start for the region's
    shape, not a result.

    Parameters
    ----------
    f : callable
        ``f(u (n, k)) -> (n,)``.
    u : (k,) ndarray
    step : float
        Step in ``u``.

    Returns
    -------
    (k, k) ndarray or None
        None when a stencil point gives no finite value.
    """
    k = len(u)
    h = step
    c = np.clip(np.asarray(u, dtype=float), 2 * h, 1 - 2 * h)
    eye = np.eye(k) * h
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    rows = [c[None], c + eye, c - eye]
    for sign_i, sign_j in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        rows.append(np.array([c + sign_i * eye[i] + sign_j * eye[j] for i, j in pairs]).reshape(-1, k))
    s = np.asarray(f(np.vstack(rows)), dtype=float)
    if not np.all(np.isfinite(s)):
        return None
    s0, plus, minus = s[0], s[1:k + 1], s[k + 1:2 * k + 1]
    hess = np.diag((plus + minus - 2 * s0) / h ** 2)
    m = len(pairs)
    pp, pm, mp, mm = (s[2 * k + 1 + q * m: 2 * k + 1 + (q + 1) * m] for q in range(4))
    for n, (i, j) in enumerate(pairs):
        hess[i, j] = hess[j, i] = (pp[n] - pm[n] - mp[n] + mm[n]) / (4 * h ** 2)
    return hess


def distinct_starts(u: np.ndarray, s: np.ndarray, n: int, spacing: float = 0.05) -> list:
    """The best of ``u`` by ``s``, then the next best ones at least ``spacing`` from those chosen."""
    chosen: list = []
    for i in np.argsort(s)[:max(50, n)]:
        if not np.isfinite(s[i]):
            break
        if all(np.max(np.abs(u[i] - c)) >= spacing for c in chosen):
            chosen.append(u[i])
        if len(chosen) == n:
            break
    return chosen


def multistart_minima(f, u_look: np.ndarray, s: np.ndarray, n_starts: int, *, tolerance: float,
                      max_starts: int) -> list:
    """Local fits from the best distinct points ``u_look`` by ``s``: ``n_starts``, all ``max_starts`` if they disagree.

    A statistic with several minima (``tbabs*(diskbb+powerlaw)`` under wide
    log priors has five, 5 to 180 apart: a cool disc of huge norm mimics the
    power law) sends fits from different starts to different minima; from
    three starts all three missed the lowest on a trial spectrum, and the
    region, the network and the exact chain then stayed around a minimum
    111 above it. So when the first ``n_starts`` fits do not all end within
    ``tolerance`` of their lowest, fits run from the next best starts up to
    ``max_starts`` (stopping once the lowest is reached three times would
    have stopped at a minimum 97 above the lowest: secondary minima have
    wide basins too). Where the later fits find nothing lower (to
    ``tolerance``), only the first ones are returned, so a statistic whose
    first fits agree, or whose later fits add nothing, gives the fits it gave
    before.

    Parameters
    ----------
    f : callable
        ``f(u (n, k)) -> (n,)``.
    u_look, s : (n, k) and (n,) ndarray
        Points of a look at the cube and ``f`` there (non-finite: not a start).
    n_starts : int
        Fits always run.
    tolerance : float
        Statistic difference under which two minima count as one.
    max_starts : int
        Fits at most.

    Returns
    -------
    list of (u (k,) ndarray, value float)
        Each fit's minimum, in the order run; only the first ``n_starts`` fits'
        when the later ones found nothing lower.
    """
    starts = distinct_starts(u_look, s, max_starts)
    first = [minimise_in_cube(f, u0) for u0 in starts[:n_starts]]
    values = np.array([v for _, v in first])
    if np.all(values <= values.min() + tolerance):
        return first
    optima = first + [minimise_in_cube(f, u0) for u0 in starts[n_starts:]]
    return optima if min(v for _, v in optima) < values.min() - tolerance else first
