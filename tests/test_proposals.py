"""Densities for the exact-likelihood check: normalised, and their draws follow them."""
from __future__ import annotations

import numpy as np

from xspec_sbi.inference.priors import BoxPrior, ParameterPrior
from xspec_sbi.inference.proposals import LatentStudentT, Mixture

PRIOR = BoxPrior((ParameterPrior("nH", "log", 0.01, 10.0), ParameterPrior("PhoIndex", "uniform", -2.0, 9.0)))


def test_latent_student_t_is_a_normalised_density_inside_the_box():
    t = LatentStudentT(PRIOR, np.array([0.5, -0.3]), np.array([[0.3, 0.1], [0.1, 0.2]]))
    # integral of t over the box = E_prior[t / prior], by draws from the prior (independent of t's sampler)
    theta = PRIOR.sample(400_000, rng=1)
    ratio = np.exp(t.log_prob(theta) - PRIOR.log_prob(theta))
    assert abs(ratio.mean() - 1) < 0.02
    draws = t.sample(20_000, rng=2)
    assert np.all(PRIOR.contains(draws))
    # its own draws: a region's share under the draws matches the density's integral over it
    inside = draws[:, 1] < 2.0
    assert abs(inside.mean() - np.mean(ratio * (theta[:, 1] < 2.0))) < 0.02


def test_mixture_density_and_draws_agree():
    a = LatentStudentT(PRIOR, np.array([1.0, 1.0]), 0.05 * np.eye(2))
    m = Mixture((a, PRIOR), (0.25, 0.75))
    theta = PRIOR.sample(400_000, rng=3)
    ratio = np.exp(m.log_prob(theta) - PRIOR.log_prob(theta))
    assert abs(ratio.mean() - 1) < 0.02
    draws = m.sample(10_000, rng=4)
    far = lambda x: PRIOR.to_unit(x)[:, 1] < 0.5   # noqa: E731  a half of the box a barely reaches
    assert abs(far(draws).mean() - np.mean(ratio * far(theta))) < 0.02


def test_student_t_draws_never_land_on_a_bound():
    """A t centred in the far latent tail (a posterior piled at a bound) puts some draws
    beyond what the probit map resolves: they are redrawn, so every draw has a density
    (the defensive check refused a draw on the bound before)."""
    box = BoxPrior((ParameterPrior("a", "uniform", 0.0, 1.0), ParameterPrior("b", "log", 1e-3, 10.0)))
    t = LatentStudentT(box, np.array([7.5, 0.0]), np.eye(2), 4.0)
    draws = t.sample(20_000, rng=1)
    assert np.isfinite(t.log_prob(draws)).all()
    assert box.contains(draws).all() and (draws[:, 0] < 1.0).all()
    np.testing.assert_array_equal(draws, t.sample(20_000, rng=1))
