"""Diagnostics: coverage, SBC and C2ST on posteriors known exactly (conjugate Gaussian),
so a calibrated sampler must pass and a miscalibrated one must fail."""
import numpy as np
import pytest

from xspec_sbi.checks.calibration import c2st, empirical_coverage, interval_coverage, run_sbc
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior


class ExactPosterior:
    """Posterior of theta ~ N(0, 1), x ~ N(theta, 1): N(x/2, 1/2), scaled by `width`.

    Exposes the two attributes the diagnostics use (``prior.names``, ``sample``).
    """

    def __init__(self, width=1.0, shift=0.0):
        self.width, self.shift = width, shift
        self.prior = BoxPrior((ParameterPrior("t0", "uniform", -10, 10), ParameterPrior("t1", "uniform", -10, 10)))

    def sample(self, x, n, *, rng):
        x = np.atleast_2d(x)
        z = np.random.default_rng(rng).standard_normal((len(x), n, x.shape[1]))
        return x[:, None, :] / 2 + self.shift + self.width * np.sqrt(0.5) * z


class NormalReference:
    def sample(self, n, *, rng):
        return np.random.default_rng(rng).standard_normal((n, 2))


def pairs(m, seed):
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((m, 2))
    return theta, theta + rng.standard_normal((m, 2))


def test_coverage_nominal_for_exact_and_low_for_overconfident():
    theta, x = pairs(2000, 0)
    good = empirical_coverage(ExactPosterior(), theta, x, rng=1, n_samples=400)
    assert good.fractions.shape == (3, 2) and good.n_test == 2000
    se = np.sqrt(0.68 * 0.32 / 2000)
    np.testing.assert_allclose(good.fractions, np.array([[0.68], [0.90], [0.95]]) * np.ones((1, 2)),
                               atol=4 * se + 0.01)
    narrow = empirical_coverage(ExactPosterior(width=0.5), theta, x, rng=1, n_samples=400)
    assert np.all(narrow.fractions[0] < 0.45)        # sd halved: 68% interval covers ~39%
    assert "t0" in good.table()
    with pytest.raises(ValueError, match="samples must be"):
        interval_coverage(np.zeros((3, 10)), np.zeros((3, 2)))


def test_sbc_uniform_for_exact_and_rejects_biased():
    theta, x = pairs(300, 2)
    ok = run_sbc(ExactPosterior(), theta, x, NormalReference(), rng=3, n_samples=200)
    assert ok.ranks.shape == (300, 2) and ok.ranks.min() >= 0 and ok.ranks.max() <= 200
    assert np.all(ok.ks_pvalues > 1e-3)
    bad = run_sbc(ExactPosterior(shift=0.8), theta, x, NormalReference(), rng=3, n_samples=200)
    assert np.all(bad.ks_pvalues < 1e-6)


def test_c2st_same_and_different():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((800, 2)), rng.standard_normal((800, 2))
    same = c2st(a, b, seed=0)
    assert 0.4 < same < 0.6
    assert c2st(a, b, seed=0) == same                  # seeded
    assert c2st(a, b + 3.0, seed=0) > 0.95
    with pytest.raises(ValueError, match="columns"):
        c2st(a, b[:, :1])
