"""Gaussian and truncated Gaussian priors: draws, density, sub-boxes, parsing, correction and chain.

Every number is checked against something independent: scipy's ``truncnorm``,
quadrature, the conjugate Gaussian posterior.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from xspec_sbi.baseline.mcmc import ChainConfigError, run_chain
from xspec_sbi.checks.bounds import bound_warnings
from xspec_sbi.checks.importance import importance_correct
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior, PriorError, build_prior
from xspec_sbi.inference.region import restrict_by_statistic
from xspec_sbi.inference.truncation import truncate
from xspec_sbi.model.parameters import ParameterSpec


def spec(name, index, value, mn, bot, top, mx, unit=""):
    return ParameterSpec(name, index, unit, value, 0.01, mn, bot, top, mx, False)


# XSPEC's model.dat limits of tbabs*powerlaw.
TBPL = [spec("TBabs.nH", 1, 1.0, 0.0, 0.0, 1e5, 1e6, unit="10^22"),
        spec("powerlaw.PhoIndex", 2, 1.0, -3.0, -2.0, 9.0, 10.0),
        spec("powerlaw.norm", 3, 1.0, 0.0, 0.0, 1e20, 1e24)]

#: nH 0.05 +- 0.01, truncated at XSPEC's hard limits; a truncation that cuts the Gaussian
#: hard on both sides; a log-uniform norm beside them.
NH = ParameterPrior("TBabs.nH", "gauss", 0.0, 1e6, "10^22", mu=0.05, sigma=0.01)
CUT = ParameterPrior("powerlaw.PhoIndex", "gauss", 1.5, 2.2, mu=1.7, sigma=0.4)
BOX = BoxPrior((NH, CUT, ParameterPrior("powerlaw.norm", "log", 1e-5, 1e-2)))


def _truncnorm(p, lo=None, hi=None):
    lo = p.lower if lo is None else lo
    hi = p.upper if hi is None else hi
    return stats.truncnorm((lo - p.mu) / p.sigma, (hi - p.mu) / p.sigma, loc=p.mu, scale=p.sigma)


# -- draws and density -------------------------------------------------------------
def test_draws_match_scipys_truncated_normal():
    theta = BOX.sample(200_000, rng=3)
    assert BOX.contains(theta).all()
    for j, p in enumerate((NH, CUT)):
        ref = _truncnorm(p)
        se = ref.std() / np.sqrt(len(theta))
        assert abs(theta[:, j].mean() - ref.mean()) < 5 * se
        assert theta[:, j].std() == pytest.approx(ref.std(), rel=0.01)
        assert stats.kstest(theta[:, j], ref.cdf).pvalue > 1e-3
    # the log-uniform column is the same draws as before Gaussian priors existed
    u = np.random.default_rng(3).random((200_000, 3))
    np.testing.assert_array_equal(theta[:, 2], BOX.from_unit(u)[:, 2])
    np.testing.assert_array_equal(BOX.sample(10, rng=5), BOX.sample(10, rng=5))


def test_density_is_normalised_over_the_truncation():
    for p in (NH, CUT):
        one = BoxPrior((p,))
        f = lambda t: float(np.exp(one.log_prob(np.array([[t]]))[0]))   # noqa: E731
        lo, hi = max(p.lower, p.mu - 12 * p.sigma), min(p.upper, p.mu + 12 * p.sigma)
        total, _ = integrate.quad(f, lo, hi, points=[p.mu] if lo < p.mu < hi else None, limit=200)
        assert total == pytest.approx(1.0, abs=1e-8)
    theta = BOX.sample(50, rng=1)
    expected = (_truncnorm(NH).logpdf(theta[:, 0]) + _truncnorm(CUT).logpdf(theta[:, 1])
                - np.log(theta[:, 2]) - np.log(np.log(1e3)))
    np.testing.assert_allclose(BOX.log_prob(theta), expected, rtol=1e-12)
    assert np.isneginf(BOX.log_prob(np.array([[0.05, 2.3, 1e-3]]))).all()


def test_the_unconstrained_map_is_the_boxs_and_stays_a_bijection():
    theta = BOX.sample(1000, rng=2)
    z = BOX.to_unconstrained(theta)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(BOX.from_unconstrained(z), theta, rtol=1e-9, atol=1e-14)
    assert BOX.contains(BOX.from_unconstrained(np.random.default_rng(0).normal(0, 30, (500, 3)))).all()


def test_sub_box_mass_and_truncated_draws():
    lo, hi = np.array([0.04, 1.6, 1e-4]), np.array([0.07, 2.2, 1e-2])
    t = truncate(BOX, lambda th: np.ones(len(th), bool), rng=0, lower=lo, upper=hi)
    expected = ((_truncnorm(NH).cdf(0.07) - _truncnorm(NH).cdf(0.04))
                * (1.0 - _truncnorm(CUT).cdf(1.6)) * (np.log(1e-2 / 1e-4) / np.log(1e3)))
    assert t.mass == pytest.approx(expected, rel=1e-10)
    draws = t.sample(100_000, rng=4)
    ref = _truncnorm(NH, 0.04, 0.07)
    assert draws[:, 0].mean() == pytest.approx(ref.mean(), abs=5 * ref.std() / np.sqrt(1e5))
    # the truncated density is the user's prior over its mass
    np.testing.assert_allclose(t.log_prob(draws[:5]), BOX.log_prob(draws[:5]) - np.log(t.mass))


def test_cstat_region_is_a_truncation_of_the_gaussian_prior():
    # A likelihood 100 sigma wide: the region keeps the prior whole, even inside 0 to 1e6.
    box = BoxPrior((NH,))
    res = restrict_by_statistic(lambda th: ((th[:, 0] - 0.06) / 1.0) ** 2, box, rng=1,
                                n_per_round=2000)
    assert res.prior.mass > 0.999
    draws = res.prior.sample(50_000, rng=2)
    assert draws.mean() == pytest.approx(0.05, abs=3e-4)
    assert draws.std() == pytest.approx(_truncnorm(NH).std(), rel=0.03)


# -- what the likelihood does with it --------------------------------------------------
def _conjugate(mu0, s0, x, s1):
    w = 1 / s0**2 + 1 / s1**2
    return (mu0 / s0**2 + x / s1**2) / w, w ** -0.5


@pytest.mark.parametrize("s1, x", [(10.0, 0.3), (0.01, 0.06)])
def test_correction_gives_the_prior_times_gaussian_likelihood(s1, x):
    """Weak likelihood: the posterior is the prior. Comparable: the conjugate posterior."""
    box = BoxPrior((NH,))
    rng = np.random.default_rng(7)
    q = stats.norm(0.05, 0.03)                 # a broad approximate posterior inside [0, 1e6]
    theta = np.abs(q.rvs(40_000, random_state=rng))[:, None]
    log_q = np.log(q.pdf(theta[:, 0]) + q.pdf(-theta[:, 0]))   # the folded normal's density
    stat = ((theta[:, 0] - x) / s1) ** 2
    res = importance_correct(theta, log_q, box.log_prob(theta), -0.5 * stat, rng)
    mean, sd = _conjugate(0.05, 0.01, x, s1)
    w = res.weights
    m = float(np.sum(w * theta[:, 0]))
    s = float(np.sqrt(np.sum(w * (theta[:, 0] - m) ** 2)))
    assert res.reliable
    assert m == pytest.approx(mean, abs=4e-4)
    assert s == pytest.approx(sd, rel=0.03)


@pytest.mark.parametrize("s1, x", [(10.0, 0.3), (0.01, 0.06)])
def test_chain_samples_the_prior_times_gaussian_likelihood(s1, x):
    box = BoxPrior((NH,))
    chain = run_chain(lambda th: ((th[:, 0] - x) / s1) ** 2, [0.05], box.lower, box.upper,
                      walkers=8, burn=1200, length=12_000, deltas=[0.01], prior=box, seed=3)
    mean, sd = _conjugate(0.05, 0.01, x, s1)
    # 1,500 steps of 8 walkers: a few hundred independent draws, so a tenth of a sd on the mean
    assert abs(chain.samples.mean() - mean) < 0.15 * sd
    assert chain.samples.std() == pytest.approx(sd, rel=0.06)
    assert chain.log_uniform == (False,)


def test_chain_prior_must_span_the_limits():
    box = BoxPrior((NH,))
    with pytest.raises(ChainConfigError, match="hard limits"):
        run_chain(lambda th: th[:, 0] ** 2, [0.05], [0.0], [1.0], length=80, prior=box)
    with pytest.raises(ChainConfigError, match="not both"):
        run_chain(lambda th: th[:, 0] ** 2, [0.05], box.lower, box.upper, length=80, prior=box,
                  log_uniform=[False])


def test_bound_warning_only_where_the_posterior_meets_a_bound():
    box = BoxPrior((NH,))
    centred = np.random.default_rng(0).normal(0.05, 0.01, (2000, 1))   # within 1% of 0-1e6
    assert bound_warnings(centred, box) == ()
    at_zero = BoxPrior((ParameterPrior("TBabs.nH", "gauss", 0.0, 1e6, mu=0.0, sigma=0.5),))
    piled = np.abs(np.random.default_rng(1).normal(0.0, 0.01, (2000, 1)))
    (line,) = bound_warnings(piled, at_zero)
    assert "TBabs.nH" in line and "lower bound 0" in line


# -- construction, persistence, words ----------------------------------------------------
def test_build_prior_truncates_at_hard_limits_and_says_so(caplog):
    with caplog.at_level("INFO", logger="xspec_sbi"):
        box = build_prior(TBPL, {"TBabs.nH": ("gauss", 0.05, 0.01),
                                 "powerlaw.PhoIndex": ("gauss", 1.7, 0.3, 1.0, 3.0),
                                 "powerlaw.norm": ("log", 1e-5, 1e-2)})
    nh, index, _ = box.parameters
    assert (nh.kind, nh.lower, nh.upper, nh.mu, nh.sigma, nh.unit) == ("gauss", 0.0, 1e6, 0.05, 0.01, "10^22")
    assert (index.lower, index.upper, index.mu, index.sigma) == (1.0, 3.0, 1.7, 0.3)
    assert "TBabs.nH" in caplog.text and "hard limits" in caplog.text
    assert "PhoIndex" not in caplog.text                # its bounds were given
    assert nh.describe() == "Gaussian 0.05 +- 0.01 in [0, 1e+06]"
    assert box.parameters[2].describe() == "log-uniform [1e-05, 0.01]"
    assert ParameterPrior("a", "uniform", 0.0, 2.0).describe() == "uniform [0, 2]"


@pytest.mark.parametrize("entry, fragment", [
    (("gauss", 0.05, 0.0), "sigma > 0"),
    (("gauss", 0.05, -0.01), "sigma > 0"),
    (("gauss", "a", 0.01), "'a'"),
    (("gauss", 0.05), "('gauss', 0.05)"),
    (("gauss", 0.05, 0.01, 1.0), "('gauss', 0.05, 0.01, 1.0)"),
    (("gauss", 0.05, 0.01, -1.0, 1.0), "hard limits"),
    (("gauss", 0.05, 0.01, 1.0, 0.5), "below upper"),
    (("gauss", 0.05, 0.01, 50.0, 60.0), "no probability"),
    ("gauss", "mean and sigma"),
    (("log", 0.01, 1.0, 2.0, 3.0), "(kind, lower, upper)"),
])
def test_bad_gaussian_entries_name_the_parameter_and_the_text(entry, fragment):
    with pytest.raises(PriorError) as exc:
        build_prior(TBPL, {"TBabs.nH": entry})
    assert "TBabs.nH" in str(exc.value) and fragment in str(exc.value), str(exc.value)


def test_mu_sigma_belong_to_gauss_only():
    with pytest.raises(PriorError, match="'a'.*gauss"):
        ParameterPrior("a", "uniform", 0.0, 1.0, mu=0.5, sigma=0.1)


def test_to_dict_round_trip_and_old_priors_unchanged():
    assert BoxPrior.from_dict(BOX.to_dict()) == BOX
    d = BOX.to_dict()["parameters"]
    assert d[0]["mu"] == 0.05 and d[0]["sigma"] == 0.01
    # a uniform / log-uniform prior describes itself as before (saved networks, fingerprints)
    old = {"parameters": [{"name": "a", "kind": "uniform", "lower": 0.0, "upper": 1.0, "unit": ""},
                          {"name": "b", "kind": "log", "lower": 0.1, "upper": 10.0, "unit": "keV"}]}
    assert BoxPrior.from_dict(old).to_dict() == old


def test_chain_with_a_uniform_log_prior_box_is_the_chain_it_was():
    # fit_and_chain now hands the chain the prior itself: same numbers for the old kinds
    box = BoxPrior((ParameterPrior("a", "uniform", -1.0, 3.0), ParameterPrior("b", "log", 0.01, 100.0)))
    stat = lambda th: ((th[:, 0] - 1.0) / 0.3) ** 2 + ((np.log(th[:, 1]) - 0.5) / 0.4) ** 2  # noqa: E731
    kw = dict(walkers=8, burn=80, length=400, deltas=[0.1, 0.1], seed=2)
    old = run_chain(stat, [1.0, 1.5], box.lower, box.upper, log_uniform=box.is_log, **kw)
    new = run_chain(stat, [1.0, 1.5], box.lower, box.upper, prior=box, **kw)
    np.testing.assert_array_equal(old.samples, new.samples)
    assert old.log_uniform == new.log_uniform == (False, True)
