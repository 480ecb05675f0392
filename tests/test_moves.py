"""Metropolis moves of resampled corrected draws: they keep the posterior and remove the copies.

The target is analytic: a Gaussian likelihood in ``x`` under a uniform prior
and in ``ln y`` under a log-uniform prior, so the posterior is a product of
(truncated) normals in ``x`` and ``ln y``, sampled exactly by scipy.
"""
import numpy as np
from scipy import stats

from xspec_sbi.checks.moves import metropolis_moves
from xspec_sbi.inference.parameter_prior import ParameterPrior
from xspec_sbi.inference.priors import BoxPrior

BOX = BoxPrior((ParameterPrior("x", "uniform", -1.0, 3.0), ParameterPrior("y", "log", 1e-3, 10.0)))
MX, SX = 0.2, 0.3                 # x: N(0.2, 0.3) truncated at -1 (4 sd: almost untouched)
MY, SY = np.log(0.05), 0.4        # ln y: N(ln 0.05, 0.4)
EXACT = [stats.truncnorm((-1.0 - MX) / SX, (3.0 - MX) / SX, MX, SX),
         stats.truncnorm((np.log(1e-3) - MY) / SY, (np.log(10.0) - MY) / SY, MY, SY)]


def log_like(t):
    return -0.5 * ((t[:, 0] - MX) / SX) ** 2 - 0.5 * ((np.log(t[:, 1]) - MY) / SY) ** 2


def exact(n, seed):
    rng = np.random.default_rng(seed)
    return np.column_stack([EXACT[0].rvs(n, random_state=rng), np.exp(EXACT[1].rvs(n, random_state=rng))])


def ks_pvalues(theta):
    return [stats.kstest(theta[:, 0], EXACT[0].cdf).pvalue, stats.kstest(np.log(theta[:, 1]), EXACT[1].cdf).pvalue]


def test_moves_keep_the_posterior_and_spread_the_copies():
    pool = exact(4000, 1)
    resampled = pool[np.random.default_rng(2).choice(4000, 4000, replace=True)]   # SIR's copies
    moved, _, rec = metropolis_moves(resampled, log_like, BOX, rng=np.random.default_rng(3))
    assert rec.unique_before < 0.7 * 4000           # ~63 % distinct before
    assert rec.unique_after > 0.95 * 4000 and rec.moved_fraction >= 0.95
    assert 2 <= rec.steps <= 12 and all(0.05 < a < 0.9 for a in rec.acceptance)
    assert min(ks_pvalues(moved)) > 0.01
    assert BOX.contains(moved).all()


def test_moves_pull_a_displaced_sample_towards_the_posterior():
    """A Metropolis step cannot make a right sample wrong, and it does move a wrong one:
    draws started 1 sd too high end up closer to the exact mean."""
    start = exact(3000, 4) + np.array([SX, 0.0])
    moved, _, _ = metropolis_moves(start, log_like, BOX, rng=np.random.default_rng(5), target_moved=1.01,
                                max_steps=30)
    before, after = abs(start[:, 0].mean() - EXACT[0].mean()), abs(moved[:, 0].mean() - EXACT[0].mean())
    assert before > 0.9 * SX and after < 0.3 * before


def test_same_seed_same_moves_and_bound_rows_stay():
    theta = exact(500, 6)
    theta[0] = [3.0, 0.05]     # on the x bound: z infinite, the row is left where it is
    a, _, ra = metropolis_moves(theta, log_like, BOX, rng=np.random.default_rng(7))
    b, _, rb = metropolis_moves(theta, log_like, BOX, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert ra.acceptance == rb.acceptance
    np.testing.assert_array_equal(a[0], [3.0, 0.05])
    assert not np.array_equal(a[1:], theta[1:])


def test_no_steps_no_change():
    theta = exact(100, 8)
    out, _, rec = metropolis_moves(theta, log_like, BOX, rng=np.random.default_rng(9), max_steps=0)
    np.testing.assert_array_equal(out, theta)
    assert rec.steps == 0


def test_the_t_is_kept_without_a_walk_step_while_it_moves_more_than_a_walk_can():
    """On this near-Gaussian posterior the fitted t moves far more than half the rows a step,
    more than a walk scaled at 2.38 / sqrt(d) ever does, so no step is spent on the walk."""
    pool = exact(4000, 10)
    resampled = pool[np.random.default_rng(11).choice(4000, 4000, replace=True)]
    _, _, rec = metropolis_moves(resampled, log_like, BOX, rng=np.random.default_rng(12),
                              target_moved=1.01, max_steps=5)
    assert rec.kernels == ("t",) * 5, rec
    assert min(rec.acceptance) > 0.6, rec.acceptance


# A curved posterior (a banana) where the t fitted to the sample proposes poorly.
BANANA = BoxPrior((ParameterPrior("x", "uniform", -5.0, 5.0), ParameterPrior("y", "uniform", -3.0, 20.0)))


def log_banana(t):
    return -0.5 * t[:, 0] ** 2 - 0.5 * ((t[:, 1] - t[:, 0] ** 2) / 0.1) ** 2


def test_on_a_curved_posterior_the_walk_is_tried_and_the_kernel_that_moved_more_is_kept():
    rng = np.random.default_rng(13)
    x = rng.standard_normal(3000)
    banana = np.column_stack([x, x ** 2 + 0.1 * rng.standard_normal(3000)])
    moved, _, rec = metropolis_moves(banana, log_banana, BANANA, rng=np.random.default_rng(14),
                                  target_moved=1.01, max_steps=8)
    assert rec.kernels[:2] == ("t", "walk"), rec        # the t moved fewer than half the rows
    assert rec.acceptance[0] < 0.5
    last = {}
    for kernel, a in zip(rec.kernels, rec.acceptance):
        if len(last) == 2:   # both tried: each step is the one whose last step accepted more
            assert kernel == max(last, key=last.get), rec
        last[kernel] = a
    # and the moves kept the banana: x's moments and y - x^2 as before
    assert abs(moved[:, 0].mean()) < 0.1 and abs(moved[:, 0].std() - 1.0) < 0.08
    r = moved[:, 1] - moved[:, 0] ** 2
    assert abs(r.mean()) < 0.02 and abs(r.std() - 0.1) < 0.02


def test_the_returned_log_likelihoods_are_those_of_the_returned_rows_and_start_values_are_not_redone():
    theta = exact(2000, 15)
    theta[0] = [3.0, 0.05]     # a bound row: kept, with its start value
    calls = []

    def counted(t):
        calls.append(len(t))
        return log_like(t)

    start = log_like(theta)
    moved, ll, rec = metropolis_moves(theta, counted, BOX, rng=np.random.default_rng(16),
                                      log_like_start=start)
    assert calls and all(c == len(theta) - 1 for c in calls)   # proposals only, never the start
    assert len(calls) == rec.steps
    np.testing.assert_array_equal(ll, log_like(moved))
    assert ll[0] == start[0]
    # without the start values they are evaluated once more, and the moves are the same
    again, ll2, _ = metropolis_moves(theta, log_like, BOX, rng=np.random.default_rng(16))
    np.testing.assert_array_equal(again, moved)
    np.testing.assert_array_equal(ll2, ll)
