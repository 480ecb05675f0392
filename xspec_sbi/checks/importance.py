"""Exact-likelihood correction of a neural posterior by importance sampling.

In X-ray spectral fitting the likelihood is known: the network ``q(theta | x)``
proposes, the Poisson likelihood corrects. For draws ``theta_i ~ q`` the
importance weights are

    w_i = prior(theta_i) L(theta_i) / q(theta_i | x),

with ``log L = -stat / 2`` (cstat, or wstat with a background) up to a constant.
Everything here works on plain arrays; :func:`importance_from_posterior` wires
in any object with ``sample(x, n, rng=...)`` and ``log_prob(theta, x)`` (such
as :class:`xspec_sbi.inference.npe.NeuralPosterior`).

Diagnostics follow Pareto-smoothed importance sampling (PSIS; Vehtari, Simpson,
Gelman, Yao & Gabry 2015, JMLR 2024): a generalized Pareto distribution is
fitted to the largest weights with the estimator of Zhang & Stephens (2009,
Technometrics 51, 316) and the weakly informative prior of the PSIS paper; its
shape ``k`` tells how many moments the weights have (``1/k``). ``k < 0.5``:
good; ``0.5 <= k < 0.7``: ok; ``k >= 0.7`` (or above the sample-size dependent
``min(1 - 1/log10 n, 0.7)``): the corrected posterior and the evidence cannot be
trusted.

The evidence and its normalisation
----------------------------------
:func:`importance_correct` estimates ``Z = int prior(theta) exp(log_like(theta)
+ c) dtheta`` with the constant ``c = log_like_constant`` (default 0). With
``log_like = -C/2`` for cstat, the Poisson likelihood is
``prod_i m_i^S_i e^-m_i / S_i! = exp(-C/2) prod_i S_i^S_i e^-S_i / S_i!``, so
``c = sum_i (S_i ln S_i - S_i - ln S_i!)`` (:func:`cstat_log_like_constant`)
gives the evidence of the true Poisson likelihood of the data. For wstat the
same holds for the background-profiled likelihood of the source and background
spectra with both sets of counts in the constant
(:func:`wstat_log_like_constant`). In bins with data where the model is below
XSPEC's floor of 1e-5 counts, cstat is not the exact Poisson term (see
:mod:`xspec_sbi.forward.stats`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from scipy.special import gammaln, logsumexp, xlogy

__all__ = [
    "ImportanceError",
    "ImportanceResult",
    "LOW_ESS_FRACTION",
    "ParetoFit",
    "importance_correct",
    "importance_from_posterior",
    "fit_generalized_pareto",
    "pareto_smooth",
    "pareto_k_threshold",
    "psis_tail_length",
    "cstat_log_like_constant",
    "wstat_log_like_constant",
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


# Below this ESS fraction the network alone is called far from the exact posterior
# (a well-trained network measured 15-50 % on the reference spectra).
LOW_ESS_FRACTION = 0.10


class ImportanceError(ValueError):
    """Inputs that importance sampling cannot use (names the argument at fault)."""


class PosteriorLike(Protocol):
    """What :func:`importance_from_posterior` needs of a posterior estimator."""

    def sample(self, x: np.ndarray, n_samples: int, *, rng) -> np.ndarray: ...

    def log_prob(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray: ...


# -- generalized Pareto fit ---------------------------------------------------------
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


# -- the correction ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ImportanceResult:
    """Importance-corrected posterior, its diagnostics and the evidence.

    Attributes
    ----------
    theta : numpy.ndarray, (n_resample, k)
        Corrected posterior draws: the proposals resampled with replacement
        by the Pareto-smoothed weights.
    indices : numpy.ndarray, (n_resample,) int
        Rows of the proposals that were resampled.
    proposals : numpy.ndarray, (n, k)
        The draws from ``q`` that the weights belong to.
    log_weights : numpy.ndarray, (n,)
        Raw log weights ``log prior + log_like - log q`` (``-inf``: zero weight).
    weights : numpy.ndarray, (n,)
        Pareto-smoothed weights, normalised to sum to 1.
    ess : float
        ``(sum w)^2 / sum w^2`` of the raw weights.
    ess_fraction : float
        ``ess / n``.
    ess_smoothed : float
        The same for the smoothed weights (PSIS's effective sample size).
    pareto_k : float
        PSIS shape estimate ``k-hat`` (see :func:`pareto_smooth`).
    k_threshold : float
        ``min(1 - 1/log10 n, 0.7)``.
    tail_length : int
        Number of weights in the Pareto fit.
    log_evidence : float
        ``log Z = logsumexp(log w) - log n + log_like_constant`` (nats).
    log_evidence_se : float
        Delta-method standard error of ``log Z``: ``sd(w) / (sqrt(n) mean(w))``;
        it underestimates the error when ``pareto_k > 0.5`` (infinite variance).
    log_like_constant : float
        The constant added to ``log_like`` for the evidence.
    n : int
        Number of proposals.
    reliable : bool
        ``pareto_k < k_threshold`` and ``ess_smoothed >= min_ess``.
    advice : str or None
        Plain-English diagnosis when not reliable.
    """

    theta: np.ndarray
    indices: np.ndarray
    proposals: np.ndarray
    log_weights: np.ndarray
    weights: np.ndarray
    ess: float
    ess_fraction: float
    ess_smoothed: float
    pareto_k: float
    k_threshold: float
    tail_length: int
    log_evidence: float
    log_evidence_se: float
    log_like_constant: float
    n: int
    reliable: bool
    advice: str | None

    @property
    def pareto_k_category(self) -> str:
        """``"good"`` (k < 0.5), ``"ok"`` (0.5-0.7), ``"unreliable"`` or ``"undetermined"``."""
        k = self.pareto_k
        if math.isnan(k):
            return "undetermined"
        if k < 0.5:
            return "good"
        return "ok" if k < 0.7 else "unreliable"

    @property
    def warning(self) -> str | None:
        """What a user should hear: the advice when unreliable, else a note when the network is poor.

        A reliable correction with an ESS fraction below :data:`LOW_ESS_FRACTION`
        still gives the right posterior for this observation, but says the
        network alone is far from it, which matters wherever it is used
        without the correction (other observations, amortized batches).
        """
        if not self.reliable:
            return self.advice
        if self.ess_fraction < LOW_ESS_FRACTION:
            return (f"ESS fraction {100 * self.ess_fraction:.3g}%: the corrected samples are "
                    "reliable, but the network alone is far from the exact posterior; train with "
                    "more simulations before using it without the correction")
        return None

    def mean(self) -> np.ndarray:
        """(k,) corrected posterior mean from the smoothed weights (no resampling noise)."""
        return self.weights @ self.proposals

    def std(self) -> np.ndarray:
        """(k,) corrected posterior standard deviation from the smoothed weights."""
        d = self.proposals - self.mean()
        return np.sqrt(self.weights @ (d * d))

    def summary(self) -> str:
        """One line: ESS, Pareto k and evidence."""
        return (
            f"ESS {self.ess:.0f}/{self.n} ({100 * self.ess_fraction:.3g}%), Pareto k "
            f"{self.pareto_k:.2f} ({self.pareto_k_category}), log Z = "
            f"{self.log_evidence:.3f} +/- {self.log_evidence_se:.3f}"
        )


def _check_inputs(theta, log_q, log_prior, log_like):
    theta = np.asarray(theta, dtype=float)
    if theta.ndim != 2:
        raise ImportanceError(f"theta must have shape (n, k), got {theta.shape}")
    n = theta.shape[0]
    if n < 2:
        raise ImportanceError(f"theta must hold at least 2 draws, got {n}")
    if not np.all(np.isfinite(theta)):
        raise ImportanceError("theta contains non-finite values")
    arrays = []
    for name, arr in (("log_q", log_q), ("log_prior", log_prior), ("log_like", log_like)):
        a = np.asarray(arr, dtype=float)
        if a.shape != (n,):
            raise ImportanceError(f"{name} must have shape ({n},) to match theta, got {a.shape}")
        if np.any(np.isnan(a)):
            raise ImportanceError(f"{name} contains NaN (row {int(np.flatnonzero(np.isnan(a))[0])})")
        if np.any(a == np.inf):
            raise ImportanceError(f"{name} contains +inf (row {int(np.flatnonzero(a == np.inf)[0])})")
        arrays.append(a)
    lq, lp, ll = arrays
    numer = lp + ll
    bad = np.isneginf(lq) & np.isfinite(numer)
    if np.any(bad):
        raise ImportanceError(
            f"log_q is -inf at row {int(np.flatnonzero(bad)[0])} where prior x likelihood is not "
            "zero: those draws cannot come from q"
        )
    return theta, lq, lp, ll


def _ess(log_w: np.ndarray) -> float:
    w = np.exp(log_w - np.max(log_w))
    return float(np.sum(w) ** 2 / np.sum(w * w))


def _advice(ess_fraction: float, k: float, threshold: float, ess_smoothed: float,
            n: int, min_ess: float) -> str | None:
    head = f"ESS fraction {100 * ess_fraction:.3g}% and Pareto k {k:.2f}"
    if math.isnan(k):
        return (f"{head}: too few usable draws ({n}) for the Pareto diagnostic; draw at least a "
                "few hundred samples from the network")
    if k >= threshold:
        return (f"{head} (limit {threshold:.2f}): the network is far from the exact posterior "
                "here; run multi-round inference on this observation or train with more "
                "simulations")
    if ess_smoothed < min_ess:
        return (f"{head}: the weights are well behaved but only {ess_smoothed:.0f} draws are "
                f"effective (at least {min_ess:.0f} wanted); draw more samples from the network")
    return None


def importance_correct(
    theta,
    log_q,
    log_prior,
    log_like,
    rng: np.random.Generator | int,
    n_resample: int | None = None,
    *,
    log_like_constant: float = 0.0,
    min_ess: float = 100.0,
) -> ImportanceResult:
    """Correct draws of an approximate posterior with the exact likelihood (PSIS).

    Parameters
    ----------
    theta : array_like, (n, k)
        Draws from the approximate posterior ``q(theta | x)``, in parameter units.
    log_q : array_like, (n,)
        ``log q(theta_i | x)`` (per unit of each parameter, like ``log_prior``).
    log_prior : array_like, (n,)
        Log prior density; ``-inf`` outside the prior support (zero weight).
    log_like : array_like, (n,)
        Log likelihood up to a constant, ``-stat / 2`` for cstat or wstat;
        ``-inf`` (``stat = inf``) gives a zero weight.
    rng : numpy.random.Generator or int
        For the resampling.
    n_resample : int, optional
        Corrected draws to return (default ``n``).
    log_like_constant : float
        Added to ``log_like`` for the evidence only (it cancels in the weights):
        :func:`cstat_log_like_constant` of the counts gives the evidence of the
        Poisson likelihood.
    min_ess : float
        Smallest PSIS effective sample size called reliable.

    Returns
    -------
    ImportanceResult

    Raises
    ------
    ImportanceError
        Bad shapes, NaN, ``+inf``, ``log_q = -inf`` under a non-zero
        numerator, or every weight zero.
    """
    theta, lq, lp, ll = _check_inputs(theta, log_q, log_prior, log_like)
    n = theta.shape[0]
    if not math.isfinite(log_like_constant):
        raise ImportanceError(f"log_like_constant must be finite, got {log_like_constant!r}")
    n_out = n if n_resample is None else int(n_resample)
    if n_out < 1:
        raise ImportanceError(f"n_resample must be >= 1, got {n_resample!r}")
    rng = np.random.default_rng(rng)

    with np.errstate(invalid="ignore"):
        log_w = np.where(np.isneginf(lp) | np.isneginf(ll), -np.inf, lp + ll - lq)
    if not np.any(np.isfinite(log_w)):
        raise ImportanceError(
            "every importance weight is zero: no draw of q has non-zero prior x likelihood"
        )
    ess = _ess(log_w)
    smoothed, k_hat, m = pareto_smooth(log_w)
    weights = np.exp(smoothed - logsumexp(smoothed))
    weights /= weights.sum()
    ess_smoothed = float(1.0 / np.sum(weights * weights))

    log_mean_w = float(logsumexp(log_w) - math.log(n))
    w = np.exp(log_w - np.max(log_w))
    se = float(np.std(w, ddof=1) / (math.sqrt(n) * np.mean(w)))
    threshold = pareto_k_threshold(n)
    reliable = (not math.isnan(k_hat)) and k_hat < threshold and ess_smoothed >= min_ess
    advice = None if reliable else _advice(ess / n, k_hat, threshold, ess_smoothed, n, min_ess)

    idx = rng.choice(n, size=n_out, replace=True, p=weights)
    return ImportanceResult(
        theta=theta[idx],
        indices=idx,
        proposals=theta,
        log_weights=log_w,
        weights=weights,
        ess=ess,
        ess_fraction=ess / n,
        ess_smoothed=ess_smoothed,
        pareto_k=float(k_hat),
        k_threshold=threshold,
        tail_length=m,
        log_evidence=log_mean_w + float(log_like_constant),
        log_evidence_se=se,
        log_like_constant=float(log_like_constant),
        n=n,
        reliable=bool(reliable),
        advice=advice,
    )


def importance_from_posterior(
    posterior: PosteriorLike,
    x,
    log_prior: Callable[[np.ndarray], np.ndarray],
    log_like: Callable[[np.ndarray], np.ndarray],
    n: int,
    rng: np.random.Generator | int,
    n_resample: int | None = None,
    *,
    log_like_constant: float = 0.0,
    min_ess: float = 100.0,
) -> ImportanceResult:
    """Draw from a posterior estimator and correct with the exact likelihood.

    Parameters
    ----------
    posterior : object
        Anything with ``sample(x, n, rng=...) -> (n, k)`` and
        ``log_prob(theta, x) -> (n,)`` (e.g. :class:`xspec_sbi.inference.npe.NeuralPosterior`).
    x : array_like, (n_bins,), counts
        The observation.
    log_prior : callable
        ``log_prior(theta (n, k)) -> (n,)``, e.g. ``BoxPrior.log_prob``.
    log_like : callable
        ``log_like(theta (n, k)) -> (n,)``, ``-stat / 2``.
    n : int
        Draws from the posterior estimator.
    rng : numpy.random.Generator or int
        Seeds the draws and the resampling.
    n_resample, log_like_constant, min_ess
        As in :func:`importance_correct`.

    Returns
    -------
    ImportanceResult
    """
    rng = np.random.default_rng(rng)
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ImportanceError(f"x must be one observation of shape (n_bins,), got {x.shape}")
    theta = np.asarray(posterior.sample(x, int(n), rng=rng), dtype=float)
    lq = np.asarray(posterior.log_prob(theta, x), dtype=float)
    return importance_correct(
        theta, lq, np.asarray(log_prior(theta), dtype=float), np.asarray(log_like(theta), dtype=float),
        rng, n_resample, log_like_constant=log_like_constant, min_ess=min_ess,
    )


# -- likelihood constants ---------------------------------------------------------
def _counts(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ImportanceError(f"{what} must be an array of finite, non-negative counts")
    return arr


def cstat_log_like_constant(counts) -> float:
    """``log L_Poisson - (-C/2)``: the constant that turns ``exp(-C/2)`` into the Poisson likelihood.

    Parameters
    ----------
    counts : array_like, (n_bins,), counts
        Observed counts ``S`` (the noticed bins the statistic sums over).

    Returns
    -------
    float
        ``sum_i (S_i ln S_i - S_i - ln S_i!)`` (``0 ln 0 = 0``), nats.

    Notes
    -----
    ``prod_i m_i^S_i e^-m_i / S_i! = exp(-C/2) prod_i S_i^S_i e^-S_i / S_i!``
    with ``C = 2 sum_i (m_i - S_i + S_i ln(S_i / m_i))``. Non-integer counts use
    ``ln Gamma(S + 1)``.
    """
    S = _counts(counts, "counts")
    return float(np.sum(xlogy(S, S) - S - gammaln(S + 1.0)))


def wstat_log_like_constant(counts, bkg_counts) -> float:
    """The constant turning ``exp(-W/2)`` into the background-profiled Poisson likelihood.

    Parameters
    ----------
    counts, bkg_counts : array_like, (n_bins,), counts
        Source- and background-region counts.

    Returns
    -------
    float
        ``cstat_log_like_constant(counts) + cstat_log_like_constant(bkg_counts)``.

    Notes
    -----
    With the background rate profiled per bin, ``-W/2`` differs from the joint
    Poisson log likelihood of both spectra by the saturated terms of ``S`` and
    ``B``. The evidence it gives is that of a profile likelihood, not a
    marginal one.
    """
    return cstat_log_like_constant(counts) + cstat_log_like_constant(bkg_counts)
