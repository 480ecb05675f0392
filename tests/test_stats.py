"""Tests of xspec_sbi.forward.stats and .expectation against formulas written independently here."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from xspec_sbi.forward import expectation, stats
from xspec_sbi.forward.stats import StatisticInputError


# --- independent references -------------------------------------------------

def ref_cstat_bin(S, m, floor=1e-5):
    """XSPEC manual's per-bin cstat term, scalar, with XSPEC's floor in data bins."""
    if S == 0:
        return 2.0 * m
    m = max(m, floor)
    return 2.0 * (m - S + S * (math.log(S) - math.log(m)))


def ref_wstat_bin_profile(S, B, mu, ts, tb):
    """2 x (profiled negative log-likelihood ratio), by numerical minimisation.

    Minimises over the background rate f >= 0 the full two-Poisson negative
    log-likelihood plus the saturated terms, without using the closed form.
    """
    y = mu / ts

    def nll(f):
        a = ts * (y + f)
        b = tb * f
        out = a + b
        if S > 0:
            out -= S * math.log(a) - S * math.log(S) + S
        if B > 0:
            out -= B * math.log(b) - B * math.log(B) + B
        return out

    fmax = 10.0 * (S + B + 1.0) / (ts + tb) + 10.0
    res = minimize_scalar(nll, bounds=(0.0, fmax), method="bounded",
                          options={"xatol": 1e-13})
    # Compare with the f = 0 boundary, where the bounded search may stop short.
    val = min(res.fun, nll(0.0)) if (B == 0 and y > 0) else res.fun
    return 2.0 * val


def ref_wstat_bin_manual(S, B, mu, ts, tb):
    """The XSPEC manual's W formula with its special cases, scalar."""
    y = mu / ts
    t = ts + tb
    if S == 0:
        return 2.0 * (ts * y - B * math.log(tb / t))
    if B == 0:
        if y < S / t:
            return 2.0 * (-tb * y - S * math.log(ts / t))
        return 2.0 * (ts * y + S * (math.log(S) - math.log(ts * y) - 1.0))
    d = math.sqrt((t * y - S - B) ** 2 + 4.0 * t * B * y)
    f = (S + B - t * y + d) / (2.0 * t)
    return 2.0 * (ts * y + t * f - S * math.log(ts * y + ts * f) - B * math.log(tb * f)
                  - S * (1 - math.log(S)) - B * (1 - math.log(B)))


# --- cstat -------------------------------------------------------------------

def test_cstat_matches_direct_formula_with_zero_bins():
    rng = np.random.default_rng(1)
    S = rng.poisson(3.0, size=40).astype(float)
    S[:5] = 0.0
    model = rng.uniform(0.1, 8.0, size=(3, 40))
    model[0, 0] = 0.0   # S = 0, m = 0: contributes exactly 0
    model[1, 7] = 0.0   # S > 0 (maybe), m = 0: XSPEC floor
    S[7] = 4.0
    got = stats.cstat(S, model)
    want = [sum(ref_cstat_bin(s, m) for s, m in zip(S, row)) for row in model]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cstat_zero_model_cases_are_explicit():
    # m = 0, S = 0 -> 0 exactly
    assert stats.cstat([0.0, 0.0], [[0.0, 0.0]])[0] == 0.0
    # m = 0, S > 0 -> XSPEC's floor of 1e-5 counts
    c = stats.cstat([3.0], [[0.0]])[0]
    assert c == pytest.approx(2 * (1e-5 - 3 + 3 * math.log(3 / 1e-5)), rel=1e-12)
    # without the floor the likelihood is zero: C = +inf
    assert stats.cstat([3.0], [[0.0]], model_floor=0.0)[0] == np.inf
    # negative expected counts are not a Poisson mean
    assert stats.cstat([1.0, 2.0], [[1.0, -0.1]])[0] == np.inf


def test_cstat_batch_broadcasting_and_perfect_model():
    S = np.array([1.0, 4.0, 0.0, 9.0])
    model = np.stack([S, S + 1.0])
    out = stats.cstat(S, model)
    assert out[0] == pytest.approx(0.0, abs=1e-12)  # m = S: saturated, C = 0
    # (n_batch, n_bins) counts against (n_bins,) model also works
    out2 = stats.cstat(np.stack([S, S]), S + 1.0)
    np.testing.assert_allclose(out2, out[1])


def test_cstat_rejects_bad_counts():
    with pytest.raises(StatisticInputError, match="negative"):
        stats.cstat([-1.0, 2.0], [[1.0, 1.0]])
    with pytest.raises(StatisticInputError, match="bins"):
        stats.cstat([1.0, 2.0, 3.0], [[1.0, 1.0]])
    with pytest.raises(StatisticInputError, match="non-finite"):
        stats.cstat([np.nan, 2.0], [[1.0, 1.0]])


# --- wstat -------------------------------------------------------------------

@pytest.mark.parametrize("ts,tb", [(1000.0, 1000.0), (500.0, 4000.0), (2000.0, 300.0)])
def test_wstat_matches_profile_likelihood_and_manual(ts, tb):
    cases = []
    for S in (0.0, 1.0, 5.0, 30.0):
        for B in (0.0, 2.0, 17.0):
            for mu in (0.0, 0.3, 4.0, 25.0):
                cases.append((S, B, mu))
    S, B, mu = (np.array(v) for v in zip(*cases))
    got = stats.wstat_bins(S, B, mu, ts, tb)
    manual = [ref_wstat_bin_manual(s, b, m, ts, tb) for s, b, m in cases]
    np.testing.assert_allclose(got, manual, rtol=1e-10, atol=1e-10)
    profile = [ref_wstat_bin_profile(s, b, m, ts, tb) for s, b, m in cases]
    np.testing.assert_allclose(got, profile, rtol=1e-6, atol=1e-6)


def test_wstat_sum_batch_per_bin_scales_and_ratio_invariance():
    rng = np.random.default_rng(3)
    S = rng.poisson(2.0, 30).astype(float)
    B = rng.poisson(1.0, 30).astype(float)
    mu = rng.uniform(0, 4, size=(4, 30))
    ts = rng.uniform(800, 1200, 30)   # per-bin areascal-like factors
    tb = rng.uniform(2000, 5000, 30)
    w = stats.wstat(S, B, mu, ts, tb)
    want = [sum(ref_wstat_bin_manual(*args) for args in zip(S, B, row, ts, tb)) for row in mu]
    np.testing.assert_allclose(w, want, rtol=1e-10)
    # Only t_s / t_b matters once the model is given in source-region counts.
    np.testing.assert_allclose(stats.wstat(S, B, mu, 7 * ts, 7 * tb), w, rtol=1e-10)


def test_wstat_background_is_the_profiled_maximum():
    S, B, mu, ts, tb = 6.0, 4.0, 2.5, 1000.0, 3000.0
    bkg = stats.wstat_background([S], [B], np.array([mu]), ts, tb)[0]
    f = bkg / ts

    def nll(rate):
        return (ts * (mu / ts + rate) + tb * rate
                - S * math.log(ts * (mu / ts + rate)) - B * math.log(tb * rate))

    assert nll(f) <= min(nll(f * 1.001), nll(f * 0.999))
    # B = 0 with a source above the data: the background is profiled to 0
    assert stats.wstat_background([1.0], [0.0], [5.0], 1.0, 1.0)[0] == 0.0


def test_wstat_rejects_bad_scales():
    with pytest.raises(StatisticInputError, match="t_bkg"):
        stats.wstat([1.0], [1.0], [[1.0]], 1.0, 0.0)


# --- Kaastra expectation -------------------------------------------------------

def test_expectation_limits():
    # Large counts: mean -> 1 + 1/(6 mu), variance -> 2 per bin (chi-square limit).
    mean, var = expectation.cstat_expectation(np.array([1e4, 1e4]))
    assert mean == pytest.approx(2 * (1 + 1 / 6e4), rel=1e-6)
    assert var == pytest.approx(4.0, rel=1e-3)
    # Empty model: C is always 0.
    mean0, var0 = expectation.cstat_expectation(np.zeros(3))
    assert mean0 == 0.0 and var0 == 0.0


def test_expectation_exact_vs_brute_force_single_bin():
    mu = 2.7
    k = np.arange(0, 80)
    p = np.array([math.exp(-mu + kk * math.log(mu) - math.lgamma(kk + 1)) for kk in k])
    c = np.array([ref_cstat_bin(kk, mu) for kk in k])
    mean, var = expectation.cstat_expectation(np.array([mu]))
    assert mean == pytest.approx(np.sum(p * c), rel=1e-12)
    assert var == pytest.approx(np.sum(p * c * c) - np.sum(p * c) ** 2, rel=1e-10)


def test_kaastra_approximation_vs_exact():
    mu = np.concatenate([np.geomspace(1e-3, 0.1, 30), np.linspace(0.1, 20, 400),
                         np.geomspace(20, 1e4, 50)])
    exact = np.array(expectation.cstat_expectation(mu[:, None]))
    approx = np.array(expectation.kaastra_expectation(mu[:, None]))
    # Kaastra's fits hold to ~5e-4 per bin in mean and variance.
    np.testing.assert_allclose(approx, exact, atol=1e-3)


def test_expectation_vs_monte_carlo():
    rng = np.random.default_rng(2017)
    model = np.concatenate([[0.0], np.geomspace(0.05, 30.0, 49)])
    draws = rng.poisson(model, size=(20000, model.size)).astype(float)
    c = stats.cstat(draws, model)
    mean, var = expectation.cstat_expectation(model)
    assert abs(c.mean() - mean) < 3 * math.sqrt(var / c.size)
    assert c.var() == pytest.approx(var, rel=0.05)


def test_goodness_string_and_deviation():
    model = np.full(100, 5.0)
    counts = np.random.default_rng(0).poisson(model).astype(float)
    g = expectation.cstat_goodness(counts, model)
    mean, var = expectation.cstat_expectation(model)
    assert g.expected == pytest.approx(mean)
    assert g.deviation == pytest.approx((g.cstat - mean) / math.sqrt(var))
    text = str(g)
    assert text.startswith(f"C-stat = {g.cstat:.2f}, expected {mean:.2f} +/- {math.sqrt(var):.2f}")
    assert "sigma" in text
    with pytest.raises(StatisticInputError, match="one spectrum"):
        expectation.cstat_goodness(counts, np.stack([model, model]))
