"""Do spectra simulated from the posterior fit as badly as the observed one? (posterior predictive check)

:func:`ppc_pvalue` draws parameter vectors from the posterior, simulates a
spectrum at each and compares a discrepancy statistic (cstat) of the simulated
and observed spectra at the same draw. It also reports the observed statistic
against Kaastra's (2017) expectation for the posterior-median model. Works on
plain arrays and callables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from xspec_sbi.checks.inputs import TrustError, as_spectra
from xspec_sbi.forward.expectation import GoodnessOfFit, cstat_goodness

__all__ = ["StatFn", "SimulateFn", "PPCResult", "ppc_pvalue"]

#: ``stat_fn(x (n, n_bins), theta (n, k)) -> (n,)``: a statistic of each spectrum at its parameters.
StatFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``simulate(theta (n, k), rng) -> (n, n_bins)``: counts drawn from ``p(x | theta)``.
SimulateFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True, eq=False)
class PPCResult:
    """Posterior predictive check of one observation.

    Attributes
    ----------
    p_value : float
        Fraction of posterior draws with ``stat(x_sim_j, theta_j) >=
        stat(x_obs, theta_j)``; 0 means below about ``1/n``.
    p_value_se : float
        Binomial standard error ``sqrt(p (1 - p) / n)``.
    n : int
        Posterior draws used.
    stat_obs : numpy.ndarray, (n,)
        Statistic of the observation at each draw.
    stat_sim : numpy.ndarray, (n,)
        Statistic of each simulated spectrum at its draw.
    kaastra : GoodnessOfFit or None
        cstat of the observation against the posterior-median model and its
        Kaastra (2017) expectation (``kaastra.deviation`` is the z-score).
    alpha : float
        p-value below which the fit is flagged.
    warning : str or None
        Why the model does not describe the data, or None.
    """

    p_value: float
    p_value_se: float
    n: int
    stat_obs: np.ndarray
    stat_sim: np.ndarray
    kaastra: GoodnessOfFit | None
    alpha: float
    warning: str | None

    @property
    def z_score(self) -> float:
        """Kaastra deviation ``(C - E[C]) / sigma``; NaN without model counts."""
        return self.kaastra.deviation if self.kaastra is not None else math.nan

    @property
    def flagged(self) -> bool:
        """True when the p-value is below ``alpha``."""
        return self.p_value < self.alpha

    def summary(self) -> str:
        """The result table's text: the p-value to 3 decimals, then the warning in parentheses."""
        return f"{self.p_value:.3f}" + (f" ({self.warning})" if self.warning else "")

    def __str__(self) -> str:
        return self.summary()


def ppc_pvalue(
    stat_fn: StatFn,
    simulate: SimulateFn,
    posterior_samples,
    x_obs,
    rng: np.random.Generator | int,
    n: int = 200,
    *,
    model_counts=None,
    alpha: float = 0.01,
    z_limit: float = 3.0,
) -> PPCResult:
    """Posterior predictive p-value of a discrepancy statistic.

    Parameters
    ----------
    stat_fn : callable
        ``stat_fn(x (n, n_bins), theta (n, k)) -> (n,)``: the statistic of each
        spectrum at its parameter vector, e.g. cstat of ``x`` against the folded
        model of ``theta``.
    simulate : callable
        ``simulate(theta (n, k), rng) -> (n, n_bins)`` counts drawn from
        ``p(x | theta)`` (the training simulator).
    posterior_samples : array_like, (n_post, k)
        Posterior draws (corrected ones, when available).
    x_obs : array_like, (n_bins,), counts
        The observation.
    rng : numpy.random.Generator or int
        Picks the draws (without replacement when ``n_post >= n``) and seeds
        ``simulate``.
    n : int
        Posterior draws to use.
    model_counts : array_like, (n_bins,), counts, optional
        Expected counts at the posterior median (source plus background in the
        source region when a background is fitted): adds the cstat of
        ``x_obs`` against them and its Kaastra (2017) expectation and z-score.
    alpha : float
        Flag the fit when the p-value is below this.
    z_limit : float
        Also warn when ``|z|`` exceeds this.

    Returns
    -------
    PPCResult
    """
    rng = np.random.default_rng(rng)
    theta_all = np.asarray(posterior_samples, dtype=float)
    if theta_all.ndim != 2 or len(theta_all) == 0:
        raise TrustError(f"posterior_samples must have shape (n_post, k), got {theta_all.shape}")
    if not np.all(np.isfinite(theta_all)):
        raise TrustError("posterior_samples contains non-finite values")
    x = as_spectra(x_obs, "x_obs", 1)
    n = int(n)
    if n < 1:
        raise TrustError(f"n must be >= 1, got {n}")
    if not 0.0 < alpha < 1.0:
        raise TrustError(f"alpha must be in (0, 1), got {alpha!r}")
    idx = rng.choice(len(theta_all), size=n, replace=len(theta_all) < n)
    theta = theta_all[idx]
    x_sim = np.asarray(simulate(theta, rng), dtype=float)
    if x_sim.shape != (n, x.size):
        raise TrustError(f"simulate returned shape {x_sim.shape}, expected ({n}, {x.size})")
    s_sim = np.asarray(stat_fn(x_sim, theta), dtype=float)
    s_obs = np.asarray(stat_fn(np.broadcast_to(x, x_sim.shape), theta), dtype=float)
    for name, s in (("stat_fn(simulated)", s_sim), ("stat_fn(observed)", s_obs)):
        if s.shape != (n,):
            raise TrustError(f"{name} returned shape {s.shape}, expected ({n},)")
        if np.any(np.isnan(s)):
            raise TrustError(f"{name} returned NaN")
    p = float(np.mean(s_sim >= s_obs))
    se = math.sqrt(p * (1.0 - p) / n)

    kaastra = None
    if model_counts is not None:
        m = np.asarray(model_counts, dtype=float)
        if m.shape != x.shape:
            raise TrustError(f"model_counts must have shape {x.shape} like x_obs, got {m.shape}")
        kaastra = cstat_goodness(x, m)

    reasons = []
    if p < alpha:
        reasons.append(f"posterior predictive p-value {p:.3g} < {alpha:g} ({n} draws)")
    if kaastra is not None and abs(kaastra.deviation) > z_limit:
        reasons.append(f"{kaastra} (|z| > {z_limit:g})")
    warning = None
    if reasons:
        warning = ("the model does not describe these data: " + "; ".join(reasons)
                   + "; look at the residuals before trusting the parameters")
    return PPCResult(p, se, n, s_obs, s_sim, kaastra, float(alpha), warning)
