"""A count window as a restricted prior, from the exact expected counts: no classifier.

``restrict="counts:LO-HI"`` (paper Sec. 3) asks for the parameters whose
simulated spectra hold LO to HI counts. A fake spectrum's total is Poisson
with mean ``mu(theta)``, the folded model plus the scaled background summed
over the noticed bins (fakeit draws each bin, and a sum of Poisson counts is
Poisson), so the chance of a count inside the window is known exactly and the
region need not be learned from simulations:

    region = {theta : mu_lo <= mu(theta) <= mu_hi},

``mu_lo`` the mean at which a count of at least LO has probability
``epsilon``, ``mu_hi`` the mean at which a count of at most HI has it. Every
parameter vector whose simulations land in the window with probability
``epsilon`` or more is inside; testing a point is one folding.

Drawing the training set from the prior truncated to it:

* where the total is ``C + B(rest) * norm`` for one free ``norm`` (XSPEC's
  additive normalisation; ``C`` the background's constant contribution;
  checked numerically on probe draws), the window is an interval of that
  norm for each draw of the other parameters: those are kept with the
  probability of the interval under the norm's prior (over its largest
  possible value), and the norm is drawn inside the interval. One folding per
  candidate, and a wide norm prior costs nothing: the paper's set-ups accept
  nearly every candidate;
* otherwise by rejection from the prior, one folding per candidate.

Both are exact draws of the truncated prior. When even that accepts under
:data:`MIN_ACCEPTANCE` of the candidates, :func:`restrict_by_expected_counts`
returns None and the caller learns the region with the classifier instead.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import gammainccinv, gammaincinv

from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.truncation import truncate

__all__ = ["MIN_ACCEPTANCE", "expected_count_bounds", "CountRegion", "restrict_by_expected_counts"]

#: Below this fraction of candidates accepted, rejection costs more foldings than the
#: classifier's simulations: the caller falls back to it.
MIN_ACCEPTANCE = 0.02

#: Rows folded per call: blocks this size ran fastest (cache), about 1.5x blocks of 4,096.
BLOCK = 256


def expected_count_bounds(lower: float, upper: float, epsilon: float = 1e-6,
                          exposure_factors: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float]:
    """Range of expected counts whose Poisson draws reach ``[lower, upper]`` with probability >= epsilon.

    Parameters
    ----------
    lower, upper : float
        The count window (counts), ``0 <= lower < upper``.
    epsilon : float
        Probability of a count inside the window below which a mean is left out.
    exposure_factors : (float, float)
        Range of the factor multiplying the exposure of each training spectrum
        (an exposure-conditioned network); (1, 1) otherwise.

    Returns
    -------
    (mu_lo, mu_hi) : float
        Expected counts at the training spectrum's own exposure.
    """
    f_lo, f_hi = exposure_factors
    # P(N >= L | mu) is the regularised lower incomplete gamma P(L, mu); P(N <= U | mu) = Q(U + 1, mu)
    mu_lo = 0.0 if lower <= 0 else float(gammaincinv(lower, epsilon))
    mu_hi = float(gammainccinv(upper + 1.0, epsilon))
    return mu_lo / f_hi, mu_hi / f_lo


class CountRegion:
    """``region(theta) -> bool``: the expected counts ``totals(theta)`` lie in ``[mu_lo, mu_hi]``.

    Parameters
    ----------
    totals : callable
        ``totals(theta (n, k)) -> (n,)`` expected counts of a fake spectrum
        (folded model plus scaled background, summed over the noticed bins).
    mu_lo, mu_hi : float
        Bounds on the expected counts (:func:`expected_count_bounds`).
    """

    def __init__(self, totals: Callable[[np.ndarray], np.ndarray], mu_lo: float, mu_hi: float):
        self.totals = totals
        self.mu_lo, self.mu_hi = float(mu_lo), float(mu_hi)

    def expected(self, theta: np.ndarray) -> np.ndarray:
        """(n,) expected counts, folded in blocks of :data:`BLOCK` rows."""
        theta = np.atleast_2d(theta)
        if len(theta) == 0:
            return np.empty(0)
        return np.concatenate([np.asarray(self.totals(theta[a:a + BLOCK]), dtype=float)
                               for a in range(0, len(theta), BLOCK)])

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        mu = self.expected(theta)
        return np.isfinite(mu) & (mu >= self.mu_lo) & (mu <= self.mu_hi)


class _NormSampler:
    """Exact draws of the prior truncated to a :class:`CountRegion` whose total is linear in one norm.

    ``mu(theta) = intercept + slope(rest) * theta[j]``: for each prior draw of
    the other parameters the window is the interval ``[(mu_lo - C) / B,
    (mu_hi - C) / B]`` of the norm, of prior probability ``w``. A draw is kept
    with probability ``w / w_max`` (``w_max``: the largest ``w`` possible for
    this prior and window) and its norm drawn from the prior inside the
    interval; the kept draws are the truncated prior's.
    """

    def __init__(self, prior: BoxPrior, region: CountRegion, j: int, intercept: float):
        self.prior, self.region, self.j, self.c = prior, region, j, float(intercept)
        p = prior.parameters[j]
        self.log = p.kind == "log"
        a, b = prior.lower[j], prior.upper[j]
        lo, hi = region.mu_lo - self.c, region.mu_hi - self.c
        if self.log and lo > 0:
            self.w_max = min(1.0, np.log(hi / lo) / np.log(b / a))
        else:   # a uniform norm's interval, or one reaching zero, can hold the whole prior
            self.w_max = 1.0
        self.w_sum, self.n_seen = 0.0, 0

    def _cdf(self, v: np.ndarray) -> np.ndarray:
        a, b = self.prior.lower[self.j], self.prior.upper[self.j]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.log(v / a) / np.log(b / a) if self.log else (v - a) / (b - a)
        return np.clip(np.nan_to_num(u, nan=0.0, neginf=0.0), 0.0, 1.0)

    def _icdf(self, u: np.ndarray) -> np.ndarray:
        a, b = self.prior.lower[self.j], self.prior.upper[self.j]
        v = a * (b / a) ** u if self.log else a + u * (b - a)
        return np.clip(v, a, b)

    def weights(self, rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w, u_lo) for prior draws ``rest`` (the norm's column ignored): interval mass and start."""
        at_one = rest.copy()
        at_one[:, self.j] = 1.0
        slope = self.region.expected(at_one) - self.c
        with np.errstate(divide="ignore", invalid="ignore"):
            v_lo = (self.region.mu_lo - self.c) / slope
            v_hi = (self.region.mu_hi - self.c) / slope
        ok = np.isfinite(slope) & (slope > 0)
        u_lo, u_hi = self._cdf(np.where(ok, v_lo, 1.0)), self._cdf(np.where(ok, v_hi, 0.0))
        w = np.where(ok, np.maximum(u_hi - u_lo, 0.0), 0.0)
        # a draw whose counts do not depend on the norm: all of it or none inside the window
        flat = (np.isfinite(slope) & (slope == 0)
                & (self.c >= self.region.mu_lo) & (self.c <= self.region.mu_hi))
        return np.where(flat, 1.0, w), np.where(flat, 0.0, u_lo)

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """About ``n`` draws (fewer or more; the caller asks again): candidates ``n / acceptance``."""
        acc = max(self.acceptance, MIN_ACCEPTANCE)
        rest = self.prior.sample(int(min(max(1.1 * n / acc, BLOCK), 500_000)), rng=rng)
        w, u_lo = self.weights(rest)
        self.w_sum += float(w.sum())
        self.n_seen += len(w)
        keep = rng.uniform(size=len(w)) * self.w_max < w
        out = rest[keep]
        out[:, self.j] = self._icdf(u_lo[keep] + rng.uniform(size=int(keep.sum())) * w[keep])
        return out

    @property
    def acceptance(self) -> float:
        return 1.0 if self.n_seen == 0 else self.w_sum / self.n_seen / self.w_max

    @property
    def mass(self) -> float:
        """Prior mass of the region: the mean interval mass over the candidates seen."""
        return self.w_sum / max(self.n_seen, 1)


def _linear_norm(prior: BoxPrior, region: CountRegion, probe: np.ndarray, rtol: float = 1e-9):
    """(index, intercept) of a free ``norm`` the total is linear in, checked on ``probe``; else None.

    The widest log-uniform (then uniform) norm is tried first: its range is what a
    rejection from the prior would pay for.
    """
    order = sorted((j for j, (name, p) in enumerate(zip(prior.names, prior.parameters))
                    if name.rsplit(".", 1)[-1].lower() == "norm" and p.kind in ("log", "uniform")
                    and prior.lower[j] >= 0),
                   key=lambda j: (prior.parameters[j].kind != "log",
                                  -np.log(prior.upper[j] / max(prior.lower[j], 1e-300))))
    for j in order:
        at = {}
        for v in (0.5, 1.0, 2.0):
            t = probe.copy()
            t[:, j] = v
            at[v] = region.expected(t)
        c = 2.0 * at[1.0] - at[2.0]          # intercept from two points ...
        scale = np.abs(at[2.0]) + 1e-300
        mid_ok = np.abs(c + 0.5 * (at[1.0] - c) - at[0.5]) <= rtol * scale   # ... a third on the line
        same_c = np.abs(c - np.median(c)) <= rtol * scale                     # one intercept for all
        if np.all(np.isfinite(c)) and mid_ok.all() and same_c.all():
            return j, float(np.median(c))
    return None


def restrict_by_expected_counts(totals: Callable[[np.ndarray], np.ndarray], prior: BoxPrior,
                                lower: float, upper: float, *, rng: np.random.Generator | int,
                                epsilon: float = 1e-6, exposure_factors=(1.0, 1.0),
                                n_probe: int = 4096):
    """The user's prior truncated to the parameters whose spectra can hold ``lower``-``upper`` counts.

    Parameters
    ----------
    totals : callable
        ``totals(theta (n, k)) -> (n,)``: expected counts of a fake spectrum,
        summed over the noticed bins (and the spectra of a joint fit).
    prior : BoxPrior
        The user's prior.
    lower, upper : float
        The count window (counts).
    rng : numpy.random.Generator or int
    epsilon : float
        A parameter vector is left out when its spectra land in the window
        with probability under ``epsilon``.
    exposure_factors : (float, float)
        Exposure-factor range of an exposure-conditioned network's training spectra.
    n_probe : int
        Candidates folded to measure the region's prior mass.

    Returns
    -------
    RestrictionResult or None
        None when fewer than :data:`MIN_ACCEPTANCE` of the probe's candidates
        are accepted (the classifier is cheaper there). Otherwise
        ``n_simulations`` is 0 (nothing is simulated) and ``thresholds`` holds
        the expected-count bounds (counts).

    Raises
    ------
    RestrictionError
        When the norm's intervals show that no probe draw can reach the window.
    """
    from xspec_sbi.inference.restrict import RestrictionError, RestrictionResult
    rng = np.random.default_rng(rng)
    mu_lo, mu_hi = expected_count_bounds(lower, upper, epsilon, exposure_factors)
    region = CountRegion(totals, mu_lo, mu_hi)
    probe = prior.sample(n_probe, rng=rng)
    linear = _linear_norm(prior, region, probe[:128])
    label = f"expected counts {mu_lo:.1f}-{mu_hi:.1f} (window {lower:g}-{upper:g} counts)"
    if linear is not None:
        sampler = _NormSampler(prior, region, *linear)
        sampler(n_probe, rng)            # measures the mass and the acceptance
        mass, acceptance = sampler.mass, sampler.acceptance
        label += f", drawn along {prior.names[linear[0]]}"
    else:
        sampler = None
        acceptance = mass = float(np.mean(region(probe)))
    if mass == 0.0 and sampler is not None:   # exact: no value of the norm reaches the window
        raise RestrictionError(
            f"restrict=counts:{lower:g}-{upper:g}: no parameter vector of {n_probe} prior draws has "
            f"{mu_lo:.1f}-{mu_hi:.1f} expected counts; widen the prior or the window")
    if acceptance < MIN_ACCEPTANCE:
        return None
    truncated = truncate(prior, region, rng=rng, label=label, propose=sampler, mass=mass,
                         proposals_exact=sampler is not None)
    return RestrictionResult(prior=truncated, converged=True, n_simulations=0,
                             thresholds=(mu_lo, mu_hi))
