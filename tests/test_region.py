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
    # its prior mass is that of the ellipsoid {chi2 <= t}, a tiny part of the prior
    t = res.prior.region.threshold
    volume = 4 / 3 * np.pi * t ** 1.5 * np.sqrt(np.linalg.det(cov))
    assert res.prior.mass == pytest.approx(volume / 200.0 ** 3, rel=0.1)
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
    assert res.prior.mass == pytest.approx(np.pi * t * sd[0] * sd[1] / (6 * 4), rel=0.1)


def test_region_is_a_truncation_of_the_users_prior():
    prior = BoxPrior((ParameterPrior("a", "uniform", 0.0, 1.0),))
    # the statistic is smallest at the prior's edge: the region must stop at the bound
    res = restrict_by_statistic(lambda t: ((np.atleast_2d(t)[:, 0] + 0.2) / 0.1) ** 2, prior, rng=0)
    assert res.prior.lower[0] == 0.0
    draws = res.prior.sample(2000, rng=1)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
