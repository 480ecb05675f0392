"""Restricted prior from the exact fit statistic: no simulation, no classifier.

``restrict="cstat[:F]"`` asks for the prior truncated to the parameters whose
C-stat (or W-stat) against the observation is among the best. That condition
is a function of the parameters alone, so it can be evaluated exactly instead
of being learned by a classifier from simulations (the paper's general
method, kept in :mod:`xspec_sbi.inference.restrict` for conditions on the
simulated spectra, such as a count window).

The region is ``{stat(theta) <= best + floor}``, ``floor`` the chi-square
quantile ``1 - epsilon`` for the number of free parameters: in the Gaussian
limit ``stat - stat_min`` is chi-square with ``n_free`` degrees of freedom, so
the region holds all the posterior mass but a fraction ``epsilon``. Finding it
takes a few thousand foldings, in a handful of batched calls:

1. a look at the whole prior (``n_per_round`` draws);
2. local fits (L-BFGS-B in the warped coordinates, log for log-uniform
   parameters; each gradient one batch of ``2 k + 1`` rows) from its best
   ``n_starts`` distinct draws, and from up to ``4 k`` when those fits end in
   different minima (:func:`~xspec_sbi.inference.local_fit.multistart_minima`): ``best`` is
   the true minimum, not the smallest of random draws (the rounds below stopped
   68 above it on a real NICER spectrum) nor a secondary minimum;
3. the curvature at the best fit (one batch) gives the Gaussian-limit
   ellipsoid, probed uniformly at 1.6 times its radius; the ellipsoid is then
   refitted to every point found under the threshold until no probe under it
   lies beyond the known extent (:func:`_enclosing_ellipsoid`), its radius
   ``enlarge`` times the farthest point's.

The truncation trained on is that ellipsoid (:class:`EllipsoidRegion`), a
superset of the statistic's region: it holds at least the same posterior mass,
and testing a point is a quadratic form, not a folding. Under uniform and
log-uniform priors (uniform in the warped coordinates) training parameters are
drawn in the ellipsoid itself, not by rejection from its bounding box (0.1 %
accepted on a correlated 5-parameter region), and its prior mass is its volume.

When no ellipsoid settles, the earlier method runs (:func:`_by_rounds`):
rounds of ``n_per_round`` draws in a shrinking sub-box, each keeping the best
``fraction`` (threshold ``max(min(t_prev, q_F), best + floor)``), the sub-box
the kept points' range widened by ``margin``, until the threshold reaches
``best + floor`` and the sub-box stops shrinking.

Why this module is just over 400 lines: the fit-started ellipsoid and the
rounds it falls back to are one search for one region, read together; the
minimiser and the curvature are apart in :mod:`~xspec_sbi.inference.local_fit`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import gamma
from scipy.stats import chi2

from xspec_sbi.inference.local_fit import curvature_in_cube, multistart_minima
from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.truncation import TruncatedPrior, truncate

__all__ = ["StatisticRegion", "EllipsoidRegion", "restrict_by_statistic"]


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


class EllipsoidRegion:
    """``region(theta) -> bool``: inside an ellipsoid in the prior's warped coordinates.

    The warped coordinate ``u = prior.to_unit(theta)`` is uniform under the
    prior (log for log-uniform parameters), so the prior times this indicator
    is uniform on the ellipsoid's part of the unit cube.

    Parameters
    ----------
    prior : BoxPrior
    center : (n_dim,) ndarray
        Centre in ``u``.
    covariance : (n_dim, n_dim) ndarray
        Shape in ``u``; the ellipsoid is ``(u - c)^T C^-1 (u - c) <= radius^2``.
    radius : float
    threshold : float
        The statistic threshold whose region it encloses (for reports).
    """

    def __init__(self, prior: BoxPrior, center, covariance, radius: float, threshold: float):
        self.prior = prior
        self.center = np.asarray(center, dtype=float)
        self.covariance = np.asarray(covariance, dtype=float)
        self.radius = float(radius)
        self.threshold = float(threshold)
        self._inv = np.linalg.inv(self.covariance)

    def distance2(self, u: np.ndarray) -> np.ndarray:
        """(n,) squared Mahalanobis distance of warped points ``u`` (n, n_dim) from the centre."""
        d = np.atleast_2d(u) - self.center
        return np.einsum("ni,ij,nj->n", d, self._inv, d)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return self.distance2(self.prior.to_unit(np.atleast_2d(theta))) <= self.radius ** 2

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The ellipsoid's bounding box in ``u``, clipped to the unit cube."""
        half = self.radius * np.sqrt(np.diag(self.covariance))
        return np.clip(self.center - half, 0, 1), np.clip(self.center + half, 0, 1)

    @property
    def uniform_prior(self) -> bool:
        """The prior is uniform in ``u`` (no Gaussian parameter): :meth:`draw` gives its draws."""
        return all(p.kind in ("uniform", "log") for p in self.prior.parameters)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(m <= n, n_dim) draws of the prior restricted to the ellipsoid (when :attr:`uniform_prior`).

        Uniform in the ellipsoid in ``u``, the part outside the unit cube
        dropped: the prior is uniform in ``u``, so these are its draws. A
        correlated region fills a few per mille of its bounding box in five
        dimensions; drawing it directly needs no rejection from the box.
        """
        return self.prior.from_unit(_uniform_in_ellipsoid(self.center, self.covariance, self.radius, n, rng))

    def prior_mass(self, rng: np.random.Generator, n: int = 200_000) -> float:
        """Prior mass of the ellipsoid (when :attr:`uniform_prior`): its volume in ``u`` times
        the fraction of it inside the unit cube (from ``n`` uniform draws)."""
        k = len(self.center)
        inside = len(_uniform_in_ellipsoid(self.center, self.covariance, self.radius, n, rng)) / n
        ball = np.pi ** (k / 2) / gamma(k / 2 + 1)
        return float(ball * self.radius ** k * np.sqrt(np.linalg.det(self.covariance)) * inside)


def _uniform_in_ellipsoid(center, covariance, radius, n, rng) -> np.ndarray:
    """``n`` points uniform in the ellipsoid, in the unit cube (outside points dropped)."""
    k = len(center)
    chol = np.linalg.cholesky(covariance)
    z = rng.normal(size=(n, k))
    z *= (radius * rng.uniform(size=(n, 1)) ** (1.0 / k)) / np.linalg.norm(z, axis=1, keepdims=True)
    u = center + z @ chol.T
    return u[np.all((u > 0) & (u < 1), axis=1)]


def _fit_ellipsoid(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = u.mean(axis=0)
    cov = np.atleast_2d(np.cov(u.T))
    # a floor on each axis: a handful of points must not give a flat (singular) ellipsoid
    floor = (1e-6 + 1e-3 * (u.max(axis=0) - u.min(axis=0))) ** 2
    return center, cov + np.diag(floor)


def _enclosing_ellipsoid(statistic, prior: BoxPrior, u_found: np.ndarray, threshold: float, *,
                         rng: np.random.Generator, n_probe: int, enlarge: float, probe: float = 1.6,
                         max_passes: int = 12, guess=None, hit_fractions: list | None = None
                         ) -> EllipsoidRegion | None:
    """An ellipsoid enclosing ``{stat <= threshold}``, from the points found under it.

    Each pass fits the points, probes uniformly an ellipsoid ``probe`` times
    the farthest point's distance, and stops when no probe under the threshold
    lies beyond that distance (2 % slack); the radius is then ``enlarge`` times
    it. ``guess = (center, cov, reach)`` (the curvature at the best fit)
    replaces the fit while too few points are known, its reach halved while
    its probes find too few. None when no ellipsoid can be fitted or it does
    not settle within ``max_passes``. ``hit_fractions`` collects each pass's
    fraction of probes under the threshold.
    """
    k = prior.n_dim
    need = 4 * (k + 1)
    if len(u_found) < need and guess is None:
        return None
    for _ in range(max_passes):
        fitted = len(u_found) >= need
        if fitted:
            center, cov = _fit_ellipsoid(u_found)
        else:
            center, cov, reach = guess
        inv = np.linalg.inv(cov)
        d2 = lambda v: np.einsum("ni,ij,nj->n", v - center, inv, v - center)  # noqa: E731
        if fitted:
            reach = float(np.sqrt(d2(u_found).max()))
        cand = _uniform_in_ellipsoid(center, cov, probe * reach, n_probe, rng)
        if len(cand) < n_probe // 4:
            # mostly outside the prior box: probe the box part instead
            lo = np.clip(center - probe * reach * np.sqrt(np.diag(cov)), 0, 1)
            hi = np.clip(center + probe * reach * np.sqrt(np.diag(cov)), 0, 1)
            box = lo + (hi - lo) * rng.uniform(size=(n_probe, k))
            cand = box[d2(box) <= (probe * reach) ** 2]
        s = np.asarray(statistic(prior.from_unit(cand)), dtype=float) if len(cand) else np.empty(0)
        under = np.isfinite(s) & (s <= threshold)
        if hit_fractions is not None:
            hit_fractions.append(float(under.mean()) if len(under) else 0.0)
        new = cand[under]
        u_found = np.concatenate([u_found, new])
        if not fitted:
            if len(u_found) < need:
                guess = (center, cov, reach / 2)
            continue
        beyond = len(new) and float(np.sqrt(d2(new).max())) > 1.02 * reach
        if not beyond:
            return EllipsoidRegion(prior, center, cov, enlarge * reach, threshold)
    return None


def _sub_prior(prior: BoxPrior, u_lo: np.ndarray, u_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return prior.from_unit(u_lo), prior.from_unit(u_hi)


def restrict_by_statistic(statistic: Callable[[np.ndarray], np.ndarray], prior: BoxPrior, *,
                          rng: np.random.Generator | int, fraction: float = 0.25,
                          epsilon: float = 1e-6, n_per_round: int = 1000, max_rounds: int = 30,
                          margin: float = 0.25, enlarge: float = 1.2, n_starts: int = 3,
                          n_probe: int | None = None):
    """The user's prior truncated to the parameters whose exact statistic is near the best fit.

    The region is ``{stat(theta) <= best + floor}``, ``floor`` the chi-square
    quantile ``1 - epsilon`` for the number of free parameters, enclosed in an
    ellipsoid (:class:`EllipsoidRegion`) in the prior's warped coordinates.
    ``best`` comes from a look at the whole prior (``n_per_round`` draws) and
    local fits from its best ``n_starts`` distinct draws; the fit's curvature
    gives the first ellipsoid to probe. Where that fails (no ellipsoid
    settles), the region is found by rounds of best fractions (module notes).

    Parameters
    ----------
    statistic : callable
        ``statistic(theta (n, k)) -> (n,)``: the fit statistic of the observation.
    prior : BoxPrior
        The user's prior.
    rng : numpy.random.Generator or int
    fraction : float
        Fraction of each round's draws kept by the rounds (the paper's 0.25).
    epsilon : float
        Posterior mass the region may leave out in the Gaussian limit.
    n_per_round : int
        Parameter vectors folded in the look at the prior, and per round.
    max_rounds : int
    margin : float
        Widening of each round's sub-box, as a fraction of the kept points' range.
    enlarge : float
        Radius of the enclosing ellipsoid over the farthest point found under
        the threshold (in its own Mahalanobis distance).
    n_starts : int
        Local fits started from the best distinct draws of the look at the prior.
    n_probe : int, optional
        Points folded per probe of the ellipsoid (default ``n_per_round // 2``).

    Returns
    -------
    RestrictionResult
        ``n_simulations`` is 0: nothing is simulated. ``valid_fractions``: each
        probe's fraction under the threshold; ``thresholds``: the threshold.
    """
    from xspec_sbi.inference.restrict import RestrictionError, RestrictionResult
    if not 0.0 < fraction < 1.0:
        raise RestrictionError(f"restrict=cstat:{fraction}: the fraction must be in (0, 1)")
    rng = np.random.default_rng(rng)
    k = prior.n_dim
    n_probe = max(n_per_round // 2, 8 * (k + 1)) if n_probe is None else int(n_probe)
    floor = float(chi2.ppf(1.0 - epsilon, k))
    theta = prior.ppf(rng.uniform(size=(n_per_round, k)))
    s = np.asarray(statistic(theta), dtype=float)
    s = np.where(np.isfinite(s), s, np.inf)
    if not np.isfinite(s).any():
        raise RestrictionError("restrict=cstat: no parameter vector of the prior gives a finite statistic")
    u_look = prior.to_unit(theta)
    f = lambda u: statistic(prior.from_unit(u))  # noqa: E731
    optima = multistart_minima(f, u_look, s, n_starts, tolerance=0.05 * floor,
                               max_starts=max(n_starts, 4 * k))
    u_best, best = min(optima, key=lambda o: o[1])
    best = min(best, float(s.min()))
    threshold = best + floor
    seeds = np.vstack([np.array([u for u, v in optima if v <= threshold]).reshape(-1, k),
                       u_look[s <= threshold]])
    hits: list = []
    ellipsoid = _enclosing_ellipsoid(statistic, prior, seeds, threshold, rng=rng, n_probe=n_probe,
                                     enlarge=enlarge, guess=_curvature_guess(f, u_best, floor),
                                     hit_fractions=hits)
    if ellipsoid is None:
        return _by_rounds(statistic, prior, rng, fraction=fraction, epsilon=epsilon,
                          n_per_round=n_per_round, max_rounds=max_rounds, margin=margin, enlarge=enlarge)
    label = f"ellipsoid enclosing statistic <= {threshold:.2f} (best fit {best:.2f} + {floor:.1f})"
    lower, upper = _sub_prior(prior, *ellipsoid.bounds())
    direct = ellipsoid.uniform_prior
    truncated = truncate(prior, ellipsoid, rng=rng, lower=lower, upper=upper, label=label,
                         propose=ellipsoid.draw if direct else None,
                         mass=ellipsoid.prior_mass(rng) if direct else None)
    return RestrictionResult(prior=truncated, valid_fractions=tuple(hits), converged=True,
                             n_simulations=0, thresholds=(threshold,) * len(hits))


def _curvature_guess(f, u_best: np.ndarray, floor: float):
    """(center, cov, reach): the Gaussian-limit region ``{stat <= best + floor}`` at the best fit.

    ``stat - best = d^T (H / 2) d`` near the minimum (``H`` the Hessian in
    ``u``), so the region is the ellipsoid of covariance ``(H / 2)^-1`` and
    radius ``sqrt(floor)``. Semi-axes are held within 1e-6 and 1 (a flat or
    concave direction, e.g. at a prior bound); no finite Hessian gives a
    sphere of radius 0.05.
    """
    k = len(u_best)
    hess = curvature_in_cube(f, u_best)
    if hess is None:
        return u_best, np.eye(k) * 0.05 ** 2 / floor, float(np.sqrt(floor))
    lam, vec = np.linalg.eigh(0.25 * (hess + hess.T))   # H / 2, symmetrised
    lam = np.clip(lam, floor / 1.0, floor / 1e-12)
    return u_best, (vec / lam) @ vec.T, float(np.sqrt(floor))


def _by_rounds(statistic, prior: BoxPrior, rng: np.random.Generator, *, fraction: float, epsilon: float,
               n_per_round: int, max_rounds: int, margin: float, enlarge: float):
    """The region by rounds of best fractions in shrinking sub-boxes (module notes)."""
    from xspec_sbi.inference.restrict import RestrictionError, RestrictionResult
    k = prior.n_dim
    floor = float(chi2.ppf(1.0 - epsilon, k))
    u_lo, u_hi = np.zeros(k), np.ones(k)
    threshold, best = np.inf, np.inf
    kept_fractions, thresholds = [], []
    found_u, found_s = [], []   # every point folded: those under the final threshold fit the ellipsoid
    converged = False
    for _ in range(max_rounds):
        theta = prior.ppf(rng.uniform(size=(n_per_round, k)), u_lo, u_hi)
        s = np.asarray(statistic(theta), dtype=float)
        s = np.where(np.isfinite(s), s, np.inf)
        found_u.append(prior.to_unit(theta))
        found_s.append(s)
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
    u_all, s_all = np.concatenate(found_u), np.concatenate(found_s)
    label = (f"statistic <= {threshold:.2f} (best {100 * fraction:g}% per round, "
             f"floor best + {floor:.1f})")
    ellipsoid = _enclosing_ellipsoid(statistic, prior, u_all[s_all <= threshold], threshold, rng=rng,
                                     n_probe=n_per_round, enlarge=enlarge)
    if ellipsoid is not None:
        lower, upper = _sub_prior(prior, *ellipsoid.bounds())
        truncated = truncate(prior, ellipsoid, rng=rng, lower=lower, upper=upper,
                             label=f"ellipsoid enclosing {label}")
        return RestrictionResult(prior=truncated, valid_fractions=tuple(kept_fractions),
                                 converged=converged, n_simulations=0, thresholds=tuple(thresholds))
    # Too few points for an ellipsoid: the statistic's region itself, in a sub-box.
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
    truncated: TruncatedPrior = truncate(prior, region, rng=rng, lower=lower, upper=upper, label=label)
    return RestrictionResult(prior=truncated, valid_fractions=tuple(kept_fractions),
                             converged=converged, n_simulations=0, thresholds=tuple(thresholds))
