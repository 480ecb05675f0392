"""Restricted prior from the exact fit statistic: no simulation, no classifier.

``restrict="cstat[:F]"`` asks for the prior truncated to the parameters whose
C-stat (or W-stat) against the observation is among the best. That condition
is a function of the parameters alone, so it can be evaluated exactly instead
of being learned by a classifier from simulations (the paper's general
method, kept in :mod:`xspec_sbi.inference.restrict` for conditions on the
simulated spectra, such as a count window). A wide prior then costs seconds,
not minutes: each round folds a few thousand parameter vectors, and the final
region is sampled by rejection inside a sub-box, not from the whole prior.

Rounds, in the prior's warped coordinates (log for log-uniform parameters):

1. draw ``n_per_round`` points from the prior on the current sub-box (the prior
   box at first; uniform in the warped coordinates but for a Gaussian prior),
   keeping those inside the previous round's region;
2. threshold ``t = max(min(t_prev, q_F), best + floor)``: ``q_F`` the ``F``
   quantile of the statistics drawn, ``floor`` the chi-square quantile
   ``1 - epsilon`` for the number of free parameters;
3. sub-box = range of the points under ``t``, widened by ``margin`` of that range
   on each side, within the previous sub-box.

It stops when the threshold reaches ``best + floor`` and the sub-box stops
shrinking. The region ``{stat(theta) <= t}`` inside the sub-box holds all the
posterior mass but a fraction of order ``epsilon`` in the Gaussian limit
(``stat - stat_min`` is then chi-square with ``n_free`` degrees of freedom);
``best`` is the smallest statistic seen, never below the true minimum, which
only widens the region.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import chi2

from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.truncation import TruncatedPrior, truncate

__all__ = ["StatisticRegion", "restrict_by_statistic"]


class StatisticRegion:
    """``region(theta) -> bool``: the statistic at ``theta`` is at most ``threshold``.

    Parameters
    ----------
    statistic : callable
        ``statistic(theta (n, k)) -> (n,)``, e.g. the observation's C-stat.
    threshold : float
    """

    def __init__(self, statistic: Callable[[np.ndarray], np.ndarray], threshold: float):
        self.statistic = statistic
        self.threshold = float(threshold)

    #: Rows folded at once: a rejection sampler may ask about millions of candidates, and
    #: folding them in one call would need (rows x energies) floats.
    block = 20_000

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        out = np.empty(len(theta), dtype=bool)
        for a in range(0, len(theta), self.block):
            s = np.asarray(self.statistic(theta[a:a + self.block]), dtype=float)
            out[a:a + self.block] = np.isfinite(s) & (s <= self.threshold)
        return out


def _sub_prior(prior: BoxPrior, u_lo: np.ndarray, u_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return prior.from_unit(u_lo), prior.from_unit(u_hi)


def restrict_by_statistic(statistic: Callable[[np.ndarray], np.ndarray], prior: BoxPrior, *,
                          rng: np.random.Generator | int, fraction: float = 0.25,
                          epsilon: float = 1e-6, n_per_round: int = 4000, max_rounds: int = 30,
                          margin: float = 0.25):
    """The user's prior truncated to the best fraction of the exact statistic.

    Parameters
    ----------
    statistic : callable
        ``statistic(theta (n, k)) -> (n,)``: the fit statistic of the observation.
    prior : BoxPrior
        The user's prior.
    rng : numpy.random.Generator or int
    fraction : float
        Fraction of each round's draws kept (the paper's 0.25).
    epsilon : float
        Posterior mass the region may leave out in the Gaussian limit.
    n_per_round : int
        Parameter vectors folded per round.
    max_rounds : int
    margin : float
        Widening of each sub-box, as a fraction of the kept points' range.

    Returns
    -------
    RestrictionResult
        ``n_simulations`` is 0: nothing is simulated.
    """
    from xspec_sbi.inference.restrict import RestrictionError, RestrictionResult
    if not 0.0 < fraction < 1.0:
        raise RestrictionError(f"restrict=cstat:{fraction}: the fraction must be in (0, 1)")
    rng = np.random.default_rng(rng)
    k = prior.n_dim
    floor = float(chi2.ppf(1.0 - epsilon, k))
    u_lo, u_hi = np.zeros(k), np.ones(k)
    threshold, best = np.inf, np.inf
    kept_fractions, thresholds = [], []
    converged = False
    for _ in range(max_rounds):
        theta = prior.ppf(rng.uniform(size=(n_per_round, k)), u_lo, u_hi)
        s = np.asarray(statistic(theta), dtype=float)
        s = np.where(np.isfinite(s), s, np.inf)
        inside = s <= threshold
        if not inside.any():
            break
        best = min(best, float(s.min()))
        t = max(min(threshold, float(np.quantile(s[inside], fraction))), best + floor)
        keep = s <= t
        kept_fractions.append(float(keep.mean()))
        thresholds.append(t)
        u = prior.to_unit(theta[keep])
        width = u.max(axis=0) - u.min(axis=0)
        new_lo = np.maximum(u_lo, u.min(axis=0) - margin * width)
        new_hi = np.minimum(u_hi, u.max(axis=0) + margin * width)
        at_floor = t <= best + floor * (1 + 1e-9)
        shrink = np.max((u_hi - u_lo) - (new_hi - new_lo))
        threshold, u_lo, u_hi = t, new_lo, new_hi
        if at_floor and shrink < 0.02 * np.max(u_hi - u_lo):
            converged = True
            break
    if not np.isfinite(threshold):
        raise RestrictionError("restrict=cstat: no parameter vector of the prior gives a finite statistic")
    # One more pass at the final threshold with the points' full spread: the
    # region must not touch a face of the sub-box that is not a prior bound.
    for _ in range(10):
        theta = prior.ppf(rng.uniform(size=(n_per_round, k)), u_lo, u_hi)
        s = np.asarray(statistic(theta), dtype=float)
        keep = np.isfinite(s) & (s <= threshold)
        if not keep.any():
            break
        u = prior.to_unit(theta[keep])
        span = u_hi - u_lo
        touch_lo = (u.min(axis=0) - u_lo < 0.02 * span) & (u_lo > 0)
        touch_hi = (u_hi - u.max(axis=0) < 0.02 * span) & (u_hi < 1)
        if not (touch_lo.any() or touch_hi.any()):
            break
        u_lo = np.where(touch_lo, np.maximum(0.0, u_lo - 0.5 * span), u_lo)
        u_hi = np.where(touch_hi, np.minimum(1.0, u_hi + 0.5 * span), u_hi)
    lower, upper = _sub_prior(prior, u_lo, u_hi)
    region = StatisticRegion(statistic, threshold)
    truncated: TruncatedPrior = truncate(
        prior, region, rng=rng, lower=lower, upper=upper,
        label=f"statistic <= {threshold:.2f} (best {100 * fraction:g}% per round, "
              f"floor best + {floor:.1f})")
    return RestrictionResult(prior=truncated, valid_fractions=tuple(kept_fractions),
                             converged=converged, n_simulations=0, thresholds=tuple(thresholds))
