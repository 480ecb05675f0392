"""Metropolis moves that refresh an importance-resampled posterior sample (resample-move).

Resampling ``n`` corrected draws from ``n`` weighted proposals repeats rows:
even with every weight equal about 37 % of the rows are copies, and at an
ESS fraction of a few percent most are. Copies are harmless for a median but
make quantiles lumpy, and a two-sample classifier against a chain (C2ST)
separates the two samples by the copies alone. After resampling, every row
takes a few Metropolis steps on the exact posterior ``prior x
exp(-stat / 2)``, all rows at once (Gilks & Berzuini 2001, "resample-move").
A Metropolis step leaves the posterior invariant, so the moves cannot make a
correct sample wrong; they spread the copies apart, and a sample that was
slightly off moves towards the posterior.

The moves are in the prior's unconstrained coordinates ``z = logit(u)``
(:meth:`BoxPrior.to_unconstrained`), with the density's Jacobian, so no step
leaves the prior box. Two kernels, both leaving the posterior invariant, are
used, at each step the one whose last step moved more rows: an
independence sampler whose proposal is a Student t (5 degrees
of freedom) fitted to the sample in ``z`` (on a near-Gaussian posterior most
proposals are accepted, so a few steps move almost every draw), and a random
walk of ``2.38^2 / d`` times the sample's covariance (Roberts, Gelman & Gilks
1997) for the curved or skewed posteriors where the t fits poorly, its scale
shrunk or grown between steps from the whole sample's acceptance rate
(adapting on the population, as sequential Monte Carlo samplers do). The t
goes first; the walk is tried only once the t has moved fewer than half the
rows in a step, because a walk so scaled moves at most about half (its scale
grows while it accepts more), so a t that moves more is the better kernel
without a trial step. Each step evaluates the statistic once for every draw.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

__all__ = ["MoveRecord", "metropolis_moves"]

# The acceptance a random walk scaled as below reaches at most: its scale grows by 1.4
# whenever it accepts more than half its proposals.
WALK_CEILING = 0.5


@dataclass(frozen=True)
class MoveRecord:
    """What the moves did.

    Attributes
    ----------
    steps : int
        Metropolis steps taken (each evaluates the statistic once per row).
    acceptance : tuple of float
        Fraction of rows whose proposal was accepted, per step.
    kernels : tuple of str
        The kernel of each step: ``"t"`` (independence sampler) or ``"walk"``.
    moved_fraction : float
        Fraction of rows that moved at least once.
    unique_before, unique_after : int
        Distinct rows before and after.
    seconds : float
        Wall time of the moves, s.
    """

    steps: int
    acceptance: tuple
    kernels: tuple
    moved_fraction: float
    unique_before: int
    unique_after: int
    seconds: float

    def __str__(self) -> str:
        mean = float(np.mean(self.acceptance)) if self.acceptance else 0.0
        return (f"{self.steps} Metropolis steps (mean acceptance {100 * mean:.0f}%), "
                f"{100 * self.moved_fraction:.0f}% of draws moved, distinct draws "
                f"{self.unique_before} -> {self.unique_after}, {self.seconds:.1f} s")


def _unique_rows(a: np.ndarray) -> int:
    return int(np.unique(a, axis=0).shape[0]) if len(a) else 0


def metropolis_moves(theta: np.ndarray, log_like: Callable[[np.ndarray], np.ndarray], prior, *,
                     rng: np.random.Generator, log_like_start: np.ndarray | None = None,
                     target_moved: float = 0.9, max_steps: int = 6,
                     min_steps: int = 2) -> tuple[np.ndarray, np.ndarray, MoveRecord]:
    """Metropolis steps of every row of ``theta`` on ``prior x likelihood``, until most rows have moved.

    Parameters
    ----------
    theta : ndarray (n, d)
        Posterior draws inside the prior box (resampled corrected draws), in
        parameter units.
    log_like : callable
        ``log_like(theta (m, d)) -> (m,)``: the log likelihood (``-stat / 2``)
        up to a constant; ``-inf`` where the statistic is infinite.
    prior : BoxPrior
        The prior of the target (its ``log_prob``); its box defines the
        unconstrained coordinates of the moves.
    rng : numpy.random.Generator
    log_like_start : ndarray (n,), optional
        ``log_like(theta)`` when already known (the likelihood check computed
        it for every corrected draw): not evaluated again.
    target_moved : float
        Stop once this fraction of the rows has moved at least once ...
    max_steps : int
        ... or after this many steps ...
    min_steps : int
        ... but not before this many.

    Returns
    -------
    theta : ndarray (n, d)
        The moved draws (rows on a prior bound, where ``z`` is infinite, stay).
    log_like : ndarray (n,)
        ``log_like`` of the returned rows (each evaluated when its row was proposed).
    record : MoveRecord
    """
    t0 = time.perf_counter()
    theta = np.array(theta, dtype=float)
    n, d = theta.shape
    unique_before = _unique_rows(theta)
    ll_out = (np.asarray(log_like(theta), dtype=float) if log_like_start is None
              else np.array(log_like_start, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = prior.to_unconstrained(theta)
    movable = np.all(np.isfinite(z), axis=1)
    out = theta.copy()
    if movable.sum() < max(2 * d, 10) or max_steps < 1:
        return out, ll_out, MoveRecord(0, (), (), 0.0, unique_before, unique_before,
                                       time.perf_counter() - t0)
    z, th, ll = z[movable], theta[movable], ll_out[movable]

    def log_density(t, ll_t):
        # the density of z: prior x likelihood times |d theta / d z|
        with np.errstate(invalid="ignore"):
            lp = prior.log_prob(t) + ll_t - prior.log_abs_det_jacobian(t)
        return np.where(np.isnan(lp), -np.inf, lp)

    lp = log_density(th, ll)
    cov = np.atleast_2d(np.cov(z.T)) + 1e-12 * np.eye(d)
    chol = np.linalg.cholesky(cov)
    t_dist = stats.multivariate_t(z.mean(axis=0), cov, df=5)
    log_t = np.atleast_1d(t_dist.logpdf(z))
    scale = 2.38 / np.sqrt(d)
    moved = np.zeros(len(z), bool)
    acceptance, kernels = [], []
    last = {False: WALK_CEILING}   # each kernel's latest acceptance; the walk's, untried, its ceiling
    for step in range(max_steps):
        # on a near-Gaussian posterior the t moves ~60 % of the rows a step and a walk ~25 %
        independent = step == 0 or last[True] >= last[False]
        if independent:
            proposal = np.atleast_2d(t_dist.rvs(size=len(z), random_state=rng)).reshape(z.shape)
            log_t_new = np.atleast_1d(t_dist.logpdf(proposal))
        else:
            proposal = z + scale * rng.standard_normal(z.shape) @ chol.T
        th_new = prior.from_unconstrained(proposal)
        ll_new = np.asarray(log_like(th_new), dtype=float)
        lp_new = log_density(th_new, ll_new)
        log_ratio = lp_new - lp + ((log_t - log_t_new) if independent else 0.0)
        with np.errstate(invalid="ignore"):
            accept = np.log(rng.uniform(size=len(z))) < log_ratio
        z[accept], th[accept], lp[accept] = proposal[accept], th_new[accept], lp_new[accept]
        ll[accept] = ll_new[accept]
        if independent:
            log_t[accept] = log_t_new[accept]
        else:
            # about a quarter accepted is the efficient random walk in a few dimensions
            rate_rw = float(accept.mean())
            scale *= 0.6 if rate_rw < 0.15 else (1.4 if rate_rw > 0.5 else 1.0)
        moved |= accept
        acceptance.append(float(accept.mean()))
        kernels.append("t" if independent else "walk")
        last[independent] = acceptance[-1]
        if not independent:
            log_t = np.atleast_1d(t_dist.logpdf(z))   # the walk moved rows: their t density
        if step + 1 >= min_steps and moved.mean() >= target_moved:
            break
    out[movable], ll_out[movable] = th, ll
    moved_fraction = float(moved.sum() / n)
    return out, ll_out, MoveRecord(len(acceptance), tuple(acceptance), tuple(kernels), moved_fraction, unique_before,
                           _unique_rows(out), time.perf_counter() - t0)
