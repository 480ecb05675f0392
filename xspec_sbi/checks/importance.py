"""Exact-likelihood correction of a neural posterior by importance sampling.

In X-ray spectral fitting the likelihood is known: the network ``q(theta | x)``
proposes, the Poisson likelihood corrects. For draws ``theta_i ~ q`` the
importance weights are

    w_i = prior(theta_i) L(theta_i) / q(theta_i | x),

with ``log L = -stat / 2`` (cstat, or wstat with a background) up to a constant.
Everything here works on plain arrays; :func:`importance_from_posterior` wires
in any object with ``sample(x, n, rng=...)`` and ``log_prob(theta, x)`` (such
as :class:`xspec_sbi.inference.posterior.NeuralPosterior`).

Diagnostics follow Pareto-smoothed importance sampling (PSIS,
:mod:`xspec_sbi.checks.psis`): the shape ``k`` of a generalized Pareto fit to
the largest weights; ``k >= 0.7`` (or above the sample-size dependent
``min(1 - 1/log10 n, 0.7)``) means the corrected posterior and the evidence
cannot be trusted.

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

Why this module is a little over 400 lines: the correction, the record it
returns and the two evidence constants are one computation read together;
the Pareto tail fit is apart in :mod:`~xspec_sbi.checks.psis`, and about half
of what is left is numpydoc.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from scipy.special import gammaln, logsumexp, xlogy

from xspec_sbi.checks.psis import ImportanceError, pareto_k_threshold, pareto_smooth

__all__ = ["log_like_constant", 
    "ImportanceError",
    "ImportanceResult",
    "LOW_ESS_FRACTION",
    "PosteriorLike",
    "importance_correct",
    "importance_from_posterior",
    "cstat_log_like_constant",
    "wstat_log_like_constant",
]

# Below this ESS fraction the network alone is called far from the exact posterior
# (a well-trained network measured 15-50 % on the reference spectra).
LOW_ESS_FRACTION = 0.10


class PosteriorLike(Protocol):
    """What :func:`importance_from_posterior` needs of a posterior estimator."""

    def sample(self, x: np.ndarray, n_samples: int, *, rng) -> np.ndarray: ...

    def log_prob(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray: ...


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
    log_like : numpy.ndarray, (n,)
        The proposals' log likelihoods as given (``-stat / 2``): the statistic
        of every corrected draw is ``-2 * log_like[indices]``, not evaluated again.
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
    log_like: np.ndarray | None = None

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
        log_like=ll,
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
        ``log_prob(theta, x) -> (n,)`` (e.g. :class:`xspec_sbi.inference.posterior.NeuralPosterior`).
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


def log_like_constant(simulator, x) -> float:
    """The constant of :func:`cstat_log_like_constant` / :func:`wstat_log_like_constant` summed over a
    simulator's spectra, for data ``x`` (n_outputs,) in its layout."""
    const = 0.0
    for p, b in zip(simulator.parts, simulator.split(x)):
        if p.has_background:
            const += wstat_log_like_constant(b[:p.n_bins], b[p.n_bins:])
        else:
            const += cstat_log_like_constant(b)
    return const
