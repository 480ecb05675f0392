"""The count window from exact expected counts (inference/count_region.py).

Checked against the Poisson distribution itself (the bounds), against plain
rejection from the prior (the norm-interval sampler's draws and mass), and
on the engine's real folding of tbabs*powerlaw (the linear norm is found; a
count-window region holds every parameter vector of non-negligible chance).
"""
import numpy as np
import pytest
from scipy import stats

from xspec_sbi.inference.count_region import (
    CountRegion,
    expected_count_bounds,
    restrict_by_expected_counts,
)
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.inference.restrict import RestrictionError
from xspec_sbi.model.expression import Model


def _prior(norm_kind="log"):
    m = Model("tbabs*powerlaw")
    return build_prior(m.parameters, {"TBabs.nH": ("uniform", 0.1, 0.3),
                                      "powerlaw.PhoIndex": ("uniform", 0.5, 2.5),
                                      "powerlaw.norm": (norm_kind, 0.01, 100.0)})


def _analytic_totals(background=0.0, power=1.0):
    # counts ~ norm^power x a smooth function of (nH, PhoIndex), plus a constant background
    def totals(theta):
        theta = np.atleast_2d(theta)
        return background + 3000.0 * theta[:, 2] ** power * np.exp(-2.0 * theta[:, 0]) / theta[:, 1] ** 1.5
    return totals


@pytest.mark.parametrize("lo, hi, eps", [(1000, 10000, 1e-6), (5, 40, 1e-3), (0, 100, 1e-6)])
def test_bounds_are_the_poisson_quantiles(lo, hi, eps):
    mu_lo, mu_hi = expected_count_bounds(lo, hi, eps)
    if lo > 0:
        assert stats.poisson.sf(lo - 1, mu_lo) == pytest.approx(eps, rel=1e-6)
    else:
        assert mu_lo == 0.0
    assert stats.poisson.cdf(hi, mu_hi) == pytest.approx(eps, rel=1e-6)
    # an exposure-conditioned network's spectra reach the window over the factor range
    f_lo, f_hi = expected_count_bounds(lo, hi, eps, exposure_factors=(0.5, 4.0))
    assert f_lo == pytest.approx(mu_lo / 4.0) and f_hi == pytest.approx(mu_hi / 0.5)


@pytest.mark.parametrize("background", [0.0, 300.0])
def test_norm_sampler_draws_the_truncated_prior(background):
    prior = _prior()
    totals = _analytic_totals(background)
    res = restrict_by_expected_counts(totals, prior, 1000, 10000, rng=0)
    tp = res.prior
    assert "drawn along powerlaw.norm" in tp.label
    draws = tp.sample(6000, rng=1)
    assert tp.region(draws).all() and prior.contains(draws).all()
    # plain rejection from the prior: the same distribution and the same mass
    cand = prior.sample(200_000, rng=2)
    keep = tp.region(cand)
    ref = cand[keep]
    assert tp.mass == pytest.approx(keep.mean(), abs=0.01)
    for j in range(3):
        assert stats.ks_2samp(draws[:, j], ref[:4000, j]).pvalue > 1e-3, prior.names[j]
    # the norm interval's sampler keeps nearly every candidate (one folding each)
    assert res.thresholds[0] < 1000 < 10000 < res.thresholds[1]


def test_a_total_not_linear_in_the_norm_is_drawn_by_rejection():
    prior = _prior()
    totals = _analytic_totals(power=1.01)
    tp = restrict_by_expected_counts(totals, prior, 1000, 10000, rng=0).prior
    assert "drawn along" not in tp.label
    draws = tp.sample(3000, rng=1)
    assert tp.region(draws).all()
    cand = prior.sample(100_000, rng=2)
    ref = cand[tp.region(cand)]
    assert stats.ks_2samp(draws[:, 2], ref[:3000, 2]).pvalue > 1e-3


def test_uniform_norm_and_same_seed_same_draws():
    prior = _prior("uniform")
    totals = _analytic_totals(50.0)
    a = restrict_by_expected_counts(totals, prior, 1000, 10000, rng=3).prior.sample(500, rng=4)
    b = restrict_by_expected_counts(totals, prior, 1000, 10000, rng=3).prior.sample(500, rng=4)
    np.testing.assert_array_equal(a, b)
    cand = prior.sample(100_000, rng=5)
    region = CountRegion(totals, *expected_count_bounds(1000, 10000))
    ref = cand[region(cand)]
    assert stats.ks_2samp(a[:, 2], ref[:2000, 2]).pvalue > 1e-3


def test_window_outside_the_prior_is_refused_and_a_tiny_one_goes_to_the_classifier():
    prior = _prior()
    totals = _analytic_totals()
    with pytest.raises(RestrictionError, match="counts:1e\\+09-1e\\+10"):
        restrict_by_expected_counts(totals, prior, 1e9, 1e10, rng=0)
    # a window reached by few draws, the total not linear in a norm: too costly by rejection
    assert restrict_by_expected_counts(_analytic_totals(power=1.01), prior, 20000, 21000, rng=0) is None


def test_engine_folding_region_holds_every_vector_with_a_chance():
    from xspec_sbi.demo import reference_session
    from xspec_sbi.model import library
    session, _ = reference_session(2000.0, seed=1)
    library.configure(session.settings)
    prior = build_prior(session.model.parameters, {"TBabs.nH": ("uniform", 0.1, 0.3),
                                                   "powerlaw.PhoIndex": ("uniform", 0.5, 2.5),
                                                   "powerlaw.norm": ("log", 0.01, 100.0)})
    sim = session.simulator()

    def totals(theta):
        return sum(p.expected(theta).sum(axis=1) for p in sim.parts)

    res = restrict_by_expected_counts(totals, prior, 1000, 10000, rng=0, epsilon=1e-6)
    assert "drawn along powerlaw.norm" in res.prior.label     # the engine's total is linear in it
    cand = prior.sample(4000, rng=7)
    mu = totals(cand)
    chance = stats.poisson.cdf(10000, mu) - stats.poisson.cdf(999, mu)
    inside = res.prior.contains(cand)
    assert inside[chance >= 1e-6].all()                       # nothing with a chance is left out
    assert not inside[chance < 1e-9].any()                    # and it is a real restriction
    # fake spectra drawn from the restricted prior land in the window nearly always
    theta = res.prior.sample(2000, rng=8)
    x = sim(theta, np.random.default_rng(9))
    n = x.sum(axis=1)
    assert np.mean((n >= 1000) & (n <= 10000)) > 0.9
    # the observation's posterior region is inside: its own parameters are in the window
    assert res.prior.contains(session.model.free_values()[None, :])[0]


def test_restriction_keywords():
    from xspec_sbi.options import OptionError, parse_restriction
    assert parse_restriction("counts:1000-10000") == ("counts", (1000.0, 10000.0))
    assert parse_restriction("classifier:100-1e4") == ("classifier", (100.0, 10000.0))
    assert parse_restriction(("classifier", 5, 50)) == ("classifier", (5.0, 50.0))
    with pytest.raises(OptionError, match="classifier:LO-HI with 0 <= LO < HI"):
        parse_restriction("classifier:50-5")
