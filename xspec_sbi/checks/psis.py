"""Pareto-smoothed importance sampling (PSIS): the tail fit and its diagnostic ``k``.

Following Vehtari, Simpson, Gelman, Yao & Gabry (2015, JMLR 2024), a
generalized Pareto distribution is fitted to the largest importance weights
with the estimator of Zhang & Stephens (2009, Technometrics 51, 316) and the
weakly informative prior of the PSIS paper; its shape ``k`` tells how many
moments the weights have (``1/k``). ``k < 0.5``: good; ``0.5 <= k < 0.7``: ok;
``k >= 0.7`` (or above the sample-size dependent ``min(1 - 1/log10 n, 0.7)``,
:func:`pareto_k_threshold`): estimates from the weights cannot be trusted.
:func:`pareto_smooth` replaces the largest weights by the fitted distribution's
expected order statistics. Works on plain arrays of log weights;
:mod:`xspec_sbi.checks.importance` uses it for the likelihood correction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "ImportanceError",
    "ParetoFit",
    "fit_generalized_pareto",
    "pareto_smooth",
    "pareto_k_threshold",
    "psis_tail_length",
]

# Weakly informative prior on k (PSIS paper): a Gaussian centred on 0.5 worth
# this many pseudo-observations of the tail.
_K_PRIOR_CENTRE = 0.5
_K_PRIOR_WEIGHT = 10.0
# Zhang & Stephens' grid: 30 + floor(sqrt(M)) candidate values of b, spread with
# their scale factor 3 (they used 20; the PSIS implementations use 30).
_ZS_MIN_GRID = 30
_ZS_PRIOR_SCALE = 3.0
_MIN_TAIL = 5
# Log weights of the tail that differ by less than this are constant for every
# practical purpose (the weights agree to 1e-8): the proposal is exact.
_FLAT_TAIL_LOG_SPREAD = 1e-8


class ImportanceError(ValueError):
    """Inputs that importance sampling or its Pareto diagnostic cannot use (names the argument at fault)."""


@dataclass(frozen=True)
class ParetoFit:
    """Generalized Pareto fit to the exceedances of a sample over a threshold.

    Attributes
    ----------
    k : float
        Shape (``k > 0``: heavy tail with moments of order below ``1/k``);
        after the weakly informative prior when it was asked for.
    sigma : float
        Scale, in the unit of the exceedances.
    n_tail : int
        Number of exceedances fitted.
    """

    k: float
    sigma: float
    n_tail: int


def fit_generalized_pareto(exceedances, *, weakly_informative_prior: bool = True) -> ParetoFit:
    """Zhang & Stephens (2009) estimate of a generalized Pareto distribution.

    Parameters
    ----------
    exceedances : array_like, (m,)
        Non-negative values above the threshold (location 0), at least 5,
        not all zero.
    weakly_informative_prior : bool
        Shrink ``k`` toward 0.5 as if 10 pseudo-observations said so:
        ``k <- (m k + 10 x 0.5) / (m + 10)`` (Vehtari et al., PSIS, Sect. 3).

    Returns
    -------
    ParetoFit

    Notes
    -----
    With ``b = -k / sigma`` the profile log likelihood is
    ``l(b) = m (log(-b / k(b)) - k(b) - 1)``, ``k(b) = mean(log(1 - b x))``.
    The estimate of ``b`` is its posterior mean over a grid of ``30 +
    floor(sqrt(m))`` points ``b_j = 1/x_max + (1 - sqrt(J / (j - 1/2))) / (3
    x_q)``, ``x_q`` the first quartile, weighted by ``exp(l(b_j))``; then
    ``k = k(b)`` and ``sigma = -k / b``. ``k`` here is the *negative* of Zhang
    & Stephens' ``k`` (the convention of the PSIS papers).
    """
    x = np.sort(np.asarray(exceedances, dtype=float))
    if x.ndim != 1 or x.size < _MIN_TAIL:
        raise ImportanceError(
            f"fit_generalized_pareto: exceedances must be 1-D with >= {_MIN_TAIL} values, "
            f"got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)) or x[0] < 0:
        raise ImportanceError("fit_generalized_pareto: exceedances must be finite and >= 0")
    m = x.size
    if x[-1] <= 0:
        raise ImportanceError("fit_generalized_pareto: all exceedances are zero")
    # The GPD is scale-equivariant: fit x / x_max (weights spanning hundreds of
    # nats would otherwise overflow the grid) and scale sigma back.
    scale = x[-1]
    x = x / scale
    x_q = x[int(math.floor(m / 4 + 0.5)) - 1]
    if x_q <= 0:
        # Ties at the threshold: the first positive value keeps the grid finite.
        x_q = x[x > 0][0]
    n_grid = _ZS_MIN_GRID + int(math.floor(math.sqrt(m)))
    j = np.arange(1, n_grid + 1)
    b = 1.0 / x[-1] + (1.0 - np.sqrt(n_grid / (j - 0.5))) / (_ZS_PRIOR_SCALE * x_q)
    # b_j < 1/x_max for every j, so 1 - b x > 0 and the logarithms are finite.
    k_of_b = np.mean(np.log1p(-np.outer(b, x)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prof = m * (np.log(-b / k_of_b) - k_of_b - 1.0)
    prof = np.where(np.isfinite(prof), prof, -np.inf)
    b_hat = float(np.sum(b * np.exp(prof - logsumexp(prof))))
    k = float(np.mean(np.log1p(-b_hat * x)))
    sigma = (-k / b_hat if b_hat != 0.0 else float(np.mean(x))) * scale
    if weakly_informative_prior:
        k = (m * k + _K_PRIOR_WEIGHT * _K_PRIOR_CENTRE) / (m + _K_PRIOR_WEIGHT)
    return ParetoFit(k=k, sigma=float(sigma), n_tail=m)


def _gpd_quantile(p: np.ndarray, k: float, sigma: float) -> np.ndarray:
    if abs(k) < 1e-12:
        return -sigma * np.log1p(-p)
    return sigma / k * np.expm1(-k * np.log1p(-p))


def psis_tail_length(n: int) -> int:
    """Number of largest weights PSIS fits: ``ceil(min(0.2 n, 3 sqrt(n)))``."""
    return int(math.ceil(min(0.2 * n, 3.0 * math.sqrt(n))))


def pareto_k_threshold(n: int) -> float:
    """Largest Pareto ``k`` for which ``n`` draws give a reliable estimate.

    ``min(1 - 1 / log10(n), 0.7)`` (Vehtari et al., PSIS, JMLR 2024, Sect. 3);
    for ``n <= 10`` the sample is too small for any ``k``: ``-inf``.
    """
    if n <= 10:
        return -math.inf
    return min(1.0 - 1.0 / math.log10(n), 0.7)


def pareto_smooth(log_weights) -> tuple[np.ndarray, float, int]:
    """Pareto-smooth the largest importance weights.

    Parameters
    ----------
    log_weights : array_like, (n,)
        Log importance weights (``-inf`` allowed for zero weights).

    Returns
    -------
    smoothed : numpy.ndarray, (n,)
        Log weights, shifted so that the largest raw log weight is 0, with the
        ``M`` largest replaced by the expected order statistics of the fitted
        generalized Pareto (truncated at the largest raw weight).
    k_hat : float
        Fitted shape; ``-inf`` when the ``M`` largest weights are equal (to
        1e-8), as for an exact proposal; ``nan`` when fewer than 5 weights make
        the tail or fewer than ``M + 1`` are non-zero.
    tail_length : int
        ``M = ceil(min(0.2 n, 3 sqrt(n)))``.
    """
    lw = np.asarray(log_weights, dtype=float)
    if lw.ndim != 1 or np.any(np.isnan(lw)) or np.any(lw == np.inf):
        raise ImportanceError("log_weights must be a 1-D array without NaN or +inf")
    if not np.any(np.isfinite(lw)):
        raise ImportanceError("log_weights are all -inf: every weight is zero")
    n = lw.size
    lw = lw - np.max(lw)
    m = psis_tail_length(n)
    if m < _MIN_TAIL or np.count_nonzero(np.isfinite(lw)) <= m:
        return lw, math.nan, m
    order = np.argsort(lw)
    tail_idx = order[-m:]
    tail = lw[tail_idx]
    cutoff = lw[order[-m - 1]]
    if tail[-1] - tail[0] < _FLAT_TAIL_LOG_SPREAD:
        return lw, -math.inf, m
    exp_cut = math.exp(cutoff)
    fit = fit_generalized_pareto(np.exp(tail) - exp_cut)
    if not (math.isfinite(fit.k) and math.isfinite(fit.sigma)):
        return lw, math.inf, m     # no usable tail fit: keep raw weights, flag unreliable
    p = (np.arange(1, m + 1) - 0.5) / m
    with np.errstate(over="ignore"):
        q = _gpd_quantile(p, fit.k, fit.sigma) + exp_cut
    with np.errstate(divide="ignore"):
        smoothed_tail = np.minimum(np.log(q), 0.0)
    out = lw.copy()
    out[tail_idx] = smoothed_tail
    return out, fit.k, m
