"""The exact-statistic restriction holds the posterior mass and is far smaller than a wide prior.

Analytic cases: a Gaussian likelihood (``stat = chi-square``), so the exact
posterior under a wide prior is the Gaussian itself and can be drawn directly.
"""
from __future__ import annotations

import numpy as np
import pytest

from xspec_sbi.inference.priors import BoxPrior, ParameterPrior
from xspec_sbi.inference.region import restrict_by_statistic


def _gauss_stat(mu, cov):
    inv = np.linalg.inv(cov)

    def stat(theta):
        d = np.atleast_2d(theta) - mu
        return np.einsum("ni,ij,nj->n", d, inv, d)
    return stat


@pytest.mark.parametrize("rho", [0.0, 0.95])
def test_region_holds_the_posterior_of_a_gaussian_likelihood(rho):
    mu = np.array([3.0, -2.0, 0.5])
    sd = np.array([1.0, 0.1, 0.02])
    corr = np.array([[1, rho, 0], [rho, 1, 0], [0, 0, 1.0]])
    cov = corr * np.outer(sd, sd)
    prior = BoxPrior(tuple(ParameterPrior(n, "uniform", -100.0, 100.0) for n in ("a", "b", "c")))
    res = restrict_by_statistic(_gauss_stat(mu, cov), prior, rng=1)
    exact = np.random.default_rng(2).multivariate_normal(mu, cov, size=200_000)
    inside = res.prior.contains(exact)
    assert inside.mean() >= 1 - 1e-4          # essentially all the posterior mass
    # its prior mass: a little more than that of the ellipsoid {chi2 <= t} it encloses
    # (radius 1.2x the farthest point found: 1.73x the volume), a tiny part of the prior
    t = res.prior.region.threshold
    volume = 4 / 3 * np.pi * t ** 1.5 * np.sqrt(np.linalg.det(cov))
    assert 1.0 <= res.prior.mass / (volume / 200.0 ** 3) <= 3.0
    assert res.prior.mass < 1e-5
    draws = res.prior.sample(5000, rng=3)
    assert np.all(res.prior.contains(draws)) and np.all(prior.contains(draws))
    assert res.n_simulations == 0


def test_region_with_a_log_uniform_norm():
    # a faint norm (3e-6) under a prior spanning six decades
    prior = BoxPrior((ParameterPrior("norm", "log", 1e-8, 1e-2), ParameterPrior("index", "uniform", 0.0, 4.0)))
    target = np.array([np.log10(3e-6), 1.8])
    sd = np.array([0.04, 0.1])

    def stat(theta):
        t = np.atleast_2d(theta)
        z = (np.column_stack([np.log10(t[:, 0]), t[:, 1]]) - target) / sd
        return (z ** 2).sum(axis=1)

    res = restrict_by_statistic(stat, prior, rng=4)
    rng = np.random.default_rng(5)
    z = rng.normal(size=(200_000, 2)) * sd + target
    exact = np.column_stack([10 ** z[:, 0], z[:, 1]])   # the likelihood as a density in (log10 norm, index)
    # the log-uniform prior is flat in log10 norm: the exact posterior is this Gaussian
    assert res.prior.contains(exact).mean() >= 1 - 1e-4
    # prior mass = ellipse area {z.z <= t} in (log10 norm, index) over the prior's 6 decades x 4
    t = res.prior.region.threshold
    assert 1.0 <= res.prior.mass / (np.pi * t * sd[0] * sd[1] / (6 * 4)) <= 3.0


def test_region_is_a_truncation_of_the_users_prior():
    prior = BoxPrior((ParameterPrior("a", "uniform", 0.0, 1.0),))
    # the statistic is smallest at the prior's edge: the region must stop at the bound
    res = restrict_by_statistic(lambda t: ((np.atleast_2d(t)[:, 0] + 0.2) / 0.1) ** 2, prior, rng=0)
    assert res.prior.lower[0] == 0.0
    draws = res.prior.sample(2000, rng=1)
    assert draws.min() >= 0.0 and draws.max() <= 1.0


def test_region_answers_for_millions_of_candidates_in_blocks():
    # a rejection sampler asks about up to 2,000,000 candidates at once
    from xspec_sbi.inference.region import StatisticRegion
    calls = []

    def stat(theta):
        calls.append(len(theta))
        return np.atleast_2d(theta)[:, 0] ** 2

    region = StatisticRegion(stat, 0.25)
    inside = region(np.linspace(-1, 1, 45_001)[:, None])
    assert max(calls) == StatisticRegion.block and len(calls) == 3
    assert inside.sum() == np.sum(np.abs(np.linspace(-1, 1, 45_001)) <= 0.5)


def test_a_curved_region_is_enclosed_and_drawing_folds_nothing():
    # a banana (the statistic's region is not an ellipsoid): every point under the
    # threshold lies inside, and drawing the training set evaluates no statistic
    prior = BoxPrior((ParameterPrior("a", "uniform", -50.0, 50.0), ParameterPrior("b", "uniform", -50.0, 150.0)))
    calls = []

    def stat(theta):
        t = np.atleast_2d(theta)
        calls.append(len(t))
        return (t[:, 0] / 1.0) ** 2 + ((t[:, 1] - t[:, 0] ** 2) / 0.3) ** 2

    res = restrict_by_statistic(stat, prior, rng=7)
    t = res.prior.region.threshold
    grid = prior.sample(2_000_000, rng=8)
    under = grid[stat(grid) <= t]
    assert len(under) > 1000 and res.prior.contains(under).all()
    n_calls = len(calls)
    draws = res.prior.sample(10_000, rng=9)
    assert len(calls) == n_calls and np.all(prior.contains(draws))
    assert res.prior.mass < 0.1      # far smaller than the prior (the banana's box: 0.015)


def _correlated_5d():
    rng = np.random.default_rng(21)
    a = rng.normal(size=(5, 5))
    c = a @ a.T + 0.05 * np.eye(5)                       # positive definite, correlated
    corr = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    sd = np.array([0.5, 0.02, 0.1, 1.0, 0.05])
    return np.array([1.0, 2.0, -3.0, 10.0, 0.3]), corr * np.outer(sd, sd)


def test_a_correlated_region_in_five_dimensions_is_drawn_directly():
    # 5 correlated parameters under a wide prior: the region fills a few per mille of its
    # bounding box, so the draws come from the ellipsoid itself; its mass is its volume
    mu, cov = _correlated_5d()
    prior = BoxPrior(tuple(ParameterPrior(f"p{i}", "uniform", -50.0, 50.0) for i in range(5)))
    rows = []
    stat0 = _gauss_stat(mu, cov)

    def stat(theta):
        rows.append(len(theta))
        return stat0(theta)

    res = restrict_by_statistic(stat, prior, rng=3)
    exact = np.random.default_rng(4).multivariate_normal(mu, cov, size=200_000)
    assert res.prior.contains(exact).mean() >= 0.999
    # the floor is the chi-square 1 - 1e-6 quantile from the true minimum, 0 here
    from scipy.stats import chi2
    assert res.prior.region.threshold == pytest.approx(chi2.ppf(1 - 1e-6, 5), abs=1e-3)
    assert sum(rows) < 6000          # a look at the prior, local fits, a few probes
    n_rows = sum(rows)
    draws = res.prior.sample(20_000, rng=5)
    assert sum(rows) == n_rows and res.prior.contains(draws).all()
    # the mass from the ellipsoid's volume agrees with prior draws counted in its bounding box
    box = res.prior
    probe = BoxPrior(tuple(ParameterPrior(f"p{i}", "uniform", lo, hi)
                           for i, (lo, hi) in enumerate(zip(box.lower, box.upper)))).sample(2_000_000, rng=6)
    counted = box.region(probe).mean() * prior.mass(box.lower, box.upper)
    assert box.mass == pytest.approx(counted, rel=0.1)
    # uniform in the ellipsoid, as the prior is: the share inside half its radius is 1/2^5
    e = box.region
    half = e.distance2(prior.to_unit(draws)) <= (e.radius / 2) ** 2
    assert half.mean() == pytest.approx(1 / 32, abs=4 * np.sqrt(1 / 32 / 20_000))


def test_same_seed_same_region_and_draws():
    mu, cov = _correlated_5d()
    prior = BoxPrior(tuple(ParameterPrior(f"p{i}", "uniform", -50.0, 50.0) for i in range(5)))
    a, b = (restrict_by_statistic(_gauss_stat(mu, cov), prior, rng=8) for _ in range(2))
    np.testing.assert_array_equal(a.prior.region.center, b.prior.region.center)
    assert a.prior.region.radius == b.prior.region.radius and a.prior.mass == b.prior.mass
    np.testing.assert_array_equal(a.prior.sample(100, rng=1), b.prior.sample(100, rng=1))


def test_the_best_fit_is_found_where_the_look_at_the_prior_misses_it():
    # a narrow minimum (sd 1e-3 of a 200-wide prior): no prior draw comes near it, the local
    # fits do, and the threshold is set from the true minimum (chi-square 0 there)
    mu, cov = np.array([7.0, -3.0]), np.diag([1e-3, 2e-3]) ** 2
    prior = BoxPrior(tuple(ParameterPrior(n, "uniform", -100.0, 100.0) for n in ("a", "b")))
    res = restrict_by_statistic(_gauss_stat(mu, cov), prior, rng=2)
    from scipy.stats import chi2
    assert res.prior.region.threshold == pytest.approx(chi2.ppf(1 - 1e-6, 2), abs=1e-3)
    exact = np.random.default_rng(3).multivariate_normal(mu, cov, size=100_000)
    assert res.prior.contains(exact).mean() >= 0.999
