"""A posterior piled against a prior bound is named, with the bound; one inside the box is not."""
import numpy as np

from xspec_sbi.checks.bounds import bound_warnings
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior

BOX = BoxPrior((ParameterPrior("TBabs.nH", "uniform", 0.0, 1.0),
                ParameterPrior("powerlaw.norm", "log", 1e-6, 1e-2)))


def test_posterior_at_a_bound_is_named_with_the_bound():
    rng = np.random.default_rng(0)
    # nH: a half-normal against 0 (the data want nH <= 0); norm well inside (log-uniform box)
    samples = np.column_stack([np.abs(rng.normal(0, 0.02, 5000)), 10 ** rng.normal(-4, 0.1, 5000)])
    out = bound_warnings(samples, BOX)
    assert len(out) == 1
    assert out[0].startswith("TBabs.nH:") and "lower bound 0" in out[0]


def test_upper_bound_in_the_warped_coordinate():
    rng = np.random.default_rng(1)
    # within 1 % of the log range below 1e-2: the top 0.04 decade
    samples = np.column_stack([rng.uniform(0.3, 0.7, 4000), 10 ** rng.uniform(-2.03, -2.0, 4000)])
    out = bound_warnings(samples, BOX)
    assert len(out) == 1 and "powerlaw.norm" in out[0] and "upper bound 0.01" in out[0]


def test_a_posterior_inside_the_box_gives_no_warning():
    rng = np.random.default_rng(2)
    samples = np.column_stack([rng.normal(0.5, 0.05, 4000), 10 ** rng.normal(-4, 0.2, 4000)])
    assert bound_warnings(samples, BOX) == ()
