"""The amortized correction's defensive mixture finds the posterior a too-narrow network leaves out.

The "network" here is a Gaussian in the prior's latent space, fitted to the
exact posterior and made too narrow (68 % widths 0.6 of the exact ones). The
reference is independent of the code under test: importance sampling from the
prior, then from a t fitted to that, 100,000 draws each (ESS ~17,000).
"""
import sys
from pathlib import Path

import numpy as np
import pytest

import xspec_sbi.amortized as amortized
from xspec_sbi.checks.importance import importance_correct
from xspec_sbi.forward.objective import PoissonStatistic
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.inference.proposals import LatentStudentT

sys.path.insert(0, str(Path(__file__).parent))
from test_amortized_statistics import _simulator  # noqa: E402


class _Face:
    """A density with the network's face: ``sample(x, n, rng) -> (m, n, k)``, ``log_prob(theta, x)``."""

    def __init__(self, t):
        self.t = t

    def sample(self, x, n, rng):
        return self.t.sample(len(x) * n, rng=np.random.default_rng(rng)).reshape(len(x), n, -1)

    def log_prob(self, theta, x):
        return self.t.log_prob(theta)


@pytest.fixture(scope="module")
def setup():
    sim = _simulator(exposure=30.0)
    box = build_prior(sim.model.parameters, {
        "powerlaw.PhoIndex": ("uniform", 1.0, 3.0), "powerlaw.norm": ("log", 0.01, 1.0),
        "bbodyrad.kT": ("uniform", 0.2, 3.0), "bbodyrad.norm": ("log", 1.0, 1e3)})
    x = sim(np.array([[1.8, 0.1, 1.0, 30.0]]), np.random.default_rng(1))
    stat = PoissonStatistic(sim, x[0])
    th = box.sample(100_000, rng=2)
    first = importance_correct(th, box.log_prob(th), box.log_prob(th), -0.5 * stat(th),
                               np.random.default_rng(3), n_resample=20_000)
    t = LatentStudentT.fit(box, first.theta, inflate=1.5)
    th = t.sample(100_000, rng=4)
    ref = importance_correct(th, t.log_prob(th), box.log_prob(th), -0.5 * stat(th),
                             np.random.default_rng(5), n_resample=20_000)
    assert ref.reliable and ref.ess_fraction > 0.05
    return sim, box, x, ref.theta


def _widths(box, s):
    g = np.where(box.is_log, np.log10(s), s)
    return np.subtract(*np.percentile(g, [84, 16], axis=0))


def test_a_too_narrow_network_is_widened_to_the_posterior(setup, monkeypatch):
    sim, box, x, ref = setup
    face = _Face(LatentStudentT.fit(box, ref, inflate=0.3, df=1000))
    out = amortized.amortized_posteriors(face, sim, box, x, n_samples=4000, seed=1)
    raw_ratio = _widths(box, out.raw[0]) / _widths(box, ref)
    assert np.all(raw_ratio < 0.7), raw_ratio                       # the network is too narrow
    ratio = _widths(box, out.samples[0]) / _widths(box, ref)
    assert out.reliable[0] and np.all((ratio > 0.85) & (ratio < 1.15)), (out.summary(), ratio)
    # without the t the same network's weights cannot reach the posterior: flagged, not answered
    monkeypatch.setattr(amortized, "DEFENSIVE_SHARE", 0.0)
    alone = amortized.amortized_posteriors(face, sim, box, x, n_samples=4000, seed=1)
    assert not alone.reliable[0] and alone.pareto_k[0] > out.pareto_k[0]


def test_the_mixture_keeps_the_cost_and_the_seed(setup, monkeypatch):
    sim, box, x, ref = setup
    face = _Face(LatentStudentT.fit(box, ref, inflate=1.0, df=1000))
    a = amortized.amortized_posteriors(face, sim, box, np.repeat(x, 2, axis=0), n_samples=600, seed=7)
    b = amortized.amortized_posteriors(face, sim, box, np.repeat(x, 2, axis=0), n_samples=600, seed=7)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.samples.shape == a.raw.shape == (2, 600, 4)
    # a network near the posterior loses at most about the t's share of its effective draws
    monkeypatch.setattr(amortized, "DEFENSIVE_SHARE", 0.0)
    alone = amortized.amortized_posteriors(face, sim, box, np.repeat(x, 2, axis=0), n_samples=600, seed=7)
    assert np.all(a.reliable) and np.all(a.ess_fraction > 0.6 * alone.ess_fraction), \
        (a.ess_fraction, alone.ess_fraction)
