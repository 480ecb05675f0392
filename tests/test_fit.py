"""Tests of xspec_sbi.baseline.fit against analytic C-stat optima."""
import numpy as np
import pytest
from scipy.optimize import brentq, root

from xspec_sbi.forward import stats
from xspec_sbi.baseline.fit import FitError, FitResult, fit

COUNTS = np.array([3.0, 5.0, 2.0, 7.0, 4.0, 0.0, 6.0, 9.0, 1.0, 5.0])
X = np.linspace(0.0, 1.0, COUNTS.size)


def constant_stat(theta):
    return stats.cstat(COUNTS, np.repeat(theta[:, :1], COUNTS.size, axis=1))


def linear_stat(theta):
    return stats.cstat(COUNTS, theta[:, :1] + theta[:, 1:2] * X[None, :])


class Recorder:
    """Wraps a statistic and records every evaluated parameter vector."""

    def __init__(self, stat):
        self.stat = stat
        self.points = []

    def __call__(self, theta):
        self.points.append(np.array(theta))
        return self.stat(theta)

    def all_points(self):
        return np.concatenate(self.points)


def test_constant_model_optimum_is_mean_of_counts():
    r = fit(constant_stat, [1.0], [0.0], [100.0])
    assert isinstance(r, FitResult)
    assert r.success
    assert r.theta[0] == pytest.approx(COUNTS.mean(), rel=1e-7)
    assert r.stat == pytest.approx(float(constant_stat(np.array([[COUNTS.mean()]]))[0]), abs=1e-9)
    assert r.n_evaluations > 0
    assert r.start_stats.shape == (1,)


def test_linear_model_solves_score_equations():
    r = fit(linear_stat, [1.0, 1.0], [1e-3, -50.0], [100.0, 50.0])
    a, b = r.theta
    m = a + b * X
    # Poisson MLE: sum(S/m - 1) = 0 and sum(x (S/m - 1)) = 0.
    score = [np.sum(COUNTS / m - 1), np.sum(X * (COUNTS / m - 1))]
    np.testing.assert_allclose(score, 0.0, atol=1e-5)
    # Same root from scipy.optimize.root on the score equations directly.
    sol = root(lambda p: [np.sum(COUNTS / (p[0] + p[1] * X) - 1),
                          np.sum(X * (COUNTS / (p[0] + p[1] * X) - 1))], [4.0, 0.0])
    np.testing.assert_allclose(r.theta, sol.x, rtol=1e-5)


def test_bounds_respected_and_active_bound_reached():
    rec = Recorder(constant_stat)
    upper = 2.5  # below the mean (4.2): the constrained optimum is the bound
    r = fit(rec, [1.0], [0.5], [upper])
    pts = rec.all_points()
    assert np.all(pts >= 0.5) and np.all(pts <= upper)
    assert r.theta[0] == pytest.approx(upper, rel=1e-9)


def test_frozen_parameter_keeps_its_value():
    rec = Recorder(linear_stat)
    b0 = 3.0
    r = fit(rec, [1.0, b0], [1e-3, -50.0], [100.0, 50.0], free=[True, False])
    assert r.theta[1] == b0
    assert np.all(rec.all_points()[:, 1] == b0)
    # Analytic: with b fixed, sum(S / (a + b0 x)) = n defines a.
    a = brentq(lambda a: np.sum(COUNTS / (a + b0 * X)) - COUNTS.size, 1e-3, 100.0)
    assert r.theta[0] == pytest.approx(a, rel=1e-6)


def double_well(theta):
    x = theta[:, 0]
    # Minima near x = -1.04 (global) and x = +0.96 (local, higher by ~6).
    return 10.0 * ((x**2 - 1.0) ** 2 + 0.3 * x)


def test_multistart_escapes_local_minimum():
    single = fit(double_well, [1.0], [-3.0], [3.0])
    assert single.theta[0] > 0  # trapped in the local minimum: the test can fail
    multi = fit(double_well, [1.0], [-3.0], [3.0], n_starts=8, seed=4)
    assert multi.theta[0] < 0
    assert multi.stat < single.stat - 1.0
    assert multi.start_stats.shape == (8,) and multi.starts.shape == (8, 1)
    assert multi.starts[0, 0] == 1.0
    assert multi.stat == multi.start_stats.min()


def test_multistart_is_seeded_and_accepts_a_sampler():
    a = fit(double_well, [1.0], [-3.0], [3.0], n_starts=4, seed=11)
    b = fit(double_well, [1.0], [-3.0], [3.0], n_starts=4, seed=11)
    np.testing.assert_array_equal(a.starts, b.starts)
    np.testing.assert_array_equal(a.theta, b.theta)

    def sampler(n, rng):
        return rng.uniform(-2.0, -0.5, size=(n, 1))

    c = fit(double_well, [1.0], [-3.0], [3.0], n_starts=3, sampler=sampler, seed=0)
    assert np.all(c.starts[1:] < -0.5) and c.theta[0] < 0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(FitError, match="outside the hard limits"):
        fit(constant_stat, [200.0], [0.0], [100.0])
    with pytest.raises(FitError, match="lower limit"):
        fit(constant_stat, [1.0], [5.0], [1.0])
    with pytest.raises(FitError, match="sampler"):
        fit(constant_stat, [1.0], [0.0], [np.inf], n_starts=2)
    with pytest.raises(FitError, match="shape"):
        fit(lambda t: np.zeros(3), [1.0], [0.0], [10.0])
    with pytest.raises(FitError, match="not finite"):
        fit(lambda t: np.full(len(t), np.nan), [1.0], [0.0], [10.0])
