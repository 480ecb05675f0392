"""Tests of xspec_sbi.checks.ood and .ppc on a toy power-law spectrum with an exact grid posterior."""
import numpy as np
import pytest

from xspec_sbi.forward import stats
from xspec_sbi.checks.inputs import TrustError
from xspec_sbi.checks.ood import OODReference, ood_check
from xspec_sbi.checks.ppc import ppc_pvalue

E_EDGES = np.geomspace(0.5, 8.0, 41)  # keV
E_MID = np.sqrt(E_EDGES[:-1] * E_EDGES[1:])
DE = np.diff(E_EDGES)
EXPOSURE = 1000.0  # s x cm^2 in one factor
LO, HI = np.array([0.5, 1.2]), np.array([2.0, 2.5])  # uniform prior box: norm, gamma
LINE_BINS = np.searchsorted(E_EDGES, 6.4) - 1


def expected(theta):
    """(n, 40) expected counts of norm * E^-gamma."""
    theta = np.atleast_2d(theta)
    return theta[:, :1] * E_MID ** (-theta[:, 1:2]) * DE * EXPOSURE


def simulate(theta, rng):
    return rng.poisson(expected(theta)).astype(float)


def cstat_fn(x, theta):
    return stats.cstat(x, expected(theta))


def prior_draws(n, rng):
    return LO + (HI - LO) * rng.random((n, 2))


# Exact posterior by brute force: the uniform-prior posterior on a fine grid over the box.
_A = np.linspace(LO[0], HI[0], 161)
_G = np.linspace(LO[1], HI[1], 161)
_GRID = np.column_stack([m.ravel() for m in np.meshgrid(_A, _G, indexing="ij")])
_GRID_MU = expected(_GRID)


def grid_posterior(x, n, rng):
    logp = -0.5 * stats.cstat(x, _GRID_MU)
    p = np.exp(logp - logp.max())
    idx = rng.choice(len(_GRID), size=n, p=p / p.sum())
    step = np.array([_A[1] - _A[0], _G[1] - _G[0]])
    return np.clip(_GRID[idx] + (rng.random((n, 2)) - 0.5) * step, LO, HI)


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(100)
    x_train = simulate(prior_draws(4000, rng), rng)
    return OODReference.fit(x_train), x_train


def with_line(x, counts=300.0):
    out = x.copy()
    out[LINE_BINS] += counts  # a narrow iron line at 6.4 keV, one bin
    out[LINE_BINS + 1] += counts / 3
    return out


# --- out of distribution ---------------------------------------------------------------

def test_in_distribution_observation_is_not_flagged(reference):
    ref, x_train = reference
    rng = np.random.default_rng(101)
    x = simulate(np.array([[1.1, 1.8]]), rng)[0]
    res = ref.check(x)
    assert not res.flagged and res.warning is None
    assert 0.05 < res.total_quantile < 0.95
    assert res.n_components == 10
    # ood_check is the same computation in one call
    res2 = ood_check(x, x_train)
    assert res2 == res


def test_false_alarm_rate_on_fresh_training_like_spectra(reference):
    ref, _ = reference
    rng = np.random.default_rng(102)
    x_new = simulate(prior_draws(500, rng), rng)
    flags = [ref.check(x).flagged for x in x_new]
    # three checks at the 0.999 / [0.001, 0.999] levels: about 0.4% expected
    assert np.mean(flags) < 0.02


def test_narrow_line_is_flagged_by_the_shape_score(reference):
    ref, _ = reference
    rng = np.random.default_rng(103)
    x = with_line(simulate(np.array([[1.1, 1.8]]), rng)[0])
    res = ref.check(x)
    assert res.flagged_shape and not res.flagged_total
    assert res.residual_peak_bin == LINE_BINS
    assert res.residual_peak > 1.5 * np.quantile(ref.residual_peaks, 0.999)
    assert res.residual_distance > np.quantile(ref.residual_distances, 0.999)
    assert "spectral shape" in res.warning and f"bin {LINE_BINS}" in res.warning
    assert "total counts" not in res.warning
    # the same spectrum without the line passes
    assert not ref.check(simulate(np.array([[1.1, 1.8]]), np.random.default_rng(103))[0]).flagged


def test_total_counts_far_outside_are_flagged_with_the_reason(reference):
    ref, _ = reference
    rng = np.random.default_rng(104)
    x = 100.0 * simulate(np.array([[1.1, 1.8]]), rng)[0]
    res = ref.check(x)
    assert res.flagged_total and res.total_quantile == 1.0
    assert res.total_counts > res.total_range[1]
    assert "total counts" in res.warning and "outside the training range" in res.warning


def test_ood_bad_input_names_the_argument(reference):
    ref, x_train = reference
    with pytest.raises(TrustError, match="x_obs has 39 bins"):
        ref.check(x_train[0, :-1])
    with pytest.raises(TrustError, match="x_train must have shape"):
        OODReference.fit(x_train[0])
    with pytest.raises(TrustError, match="x_obs must hold finite"):
        ref.check(np.full(40, -1.0))
    with pytest.raises(TrustError, match="total_bounds"):
        OODReference.fit(x_train, total_bounds=(0.9, 0.1))


# --- posterior predictive check ------------------------------------------------------------

def test_ppc_of_data_from_the_model_is_not_rejected():
    rng = np.random.default_rng(110)
    x = simulate(np.array([[1.0, 1.7]]), rng)[0]
    post = grid_posterior(x, 4000, rng)
    median_mu = expected(np.median(post, axis=0))[0]
    res = ppc_pvalue(cstat_fn, simulate, post, x, rng=111, model_counts=median_mu)
    assert res.p_value > 0.05 and not res.flagged
    assert abs(res.z_score) < 3 and res.warning is None
    assert res.stat_obs.shape == res.stat_sim.shape == (200,)
    # the simulated statistics scatter around Kaastra's expectation for the model
    assert abs(np.mean(res.stat_sim) - res.kaastra.expected) < 4 * res.kaastra.sigma / np.sqrt(200) + 2


def test_ppc_pvalues_over_seeds_are_not_concentrated_at_zero():
    ps = []
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        x = simulate(prior_draws(1, rng), rng)[0]
        post = grid_posterior(x, 1000, rng)
        ps.append(ppc_pvalue(cstat_fn, simulate, post, x, rng=rng).p_value)
    assert 0.3 <= np.mean(ps) <= 0.7
    assert np.sum(np.array(ps) < 0.01) <= 2  # one in five runs of 20 has one by chance


def test_ppc_flags_a_line_the_model_lacks():
    rng = np.random.default_rng(120)
    x = with_line(simulate(np.array([[1.0, 1.7]]), rng)[0], counts=150.0)
    post = grid_posterior(x, 4000, rng)
    median_mu = expected(np.median(post, axis=0))[0]
    res = ppc_pvalue(cstat_fn, simulate, post, x, rng=121, model_counts=median_mu)
    assert res.p_value < 0.01 and res.flagged
    assert res.z_score > 5
    assert "p-value" in res.warning and "deviation" in res.warning


def test_ppc_is_reproducible_and_checks_callables():
    rng = np.random.default_rng(130)
    x = simulate(np.array([[1.0, 1.7]]), rng)[0]
    post = grid_posterior(x, 500, rng)
    a = ppc_pvalue(cstat_fn, simulate, post, x, rng=5, n=100)
    b = ppc_pvalue(cstat_fn, simulate, post, x, rng=np.random.default_rng(5), n=100)
    np.testing.assert_array_equal(a.stat_sim, b.stat_sim)
    assert a.p_value == b.p_value
    # more draws than posterior samples: drawn with replacement
    assert ppc_pvalue(cstat_fn, simulate, post[:50], x, rng=5, n=100).n == 100
    with pytest.raises(TrustError, match="simulate returned shape"):
        ppc_pvalue(cstat_fn, lambda t, r: simulate(t, r)[:, :-1], post, x, rng=5, n=10)
    with pytest.raises(TrustError, match="stat_fn"):
        ppc_pvalue(lambda xx, t: np.zeros(3), simulate, post, x, rng=5, n=10)
    with pytest.raises(TrustError, match="posterior_samples"):
        ppc_pvalue(cstat_fn, simulate, post[:, 0], x, rng=5)
    with pytest.raises(TrustError, match="model_counts"):
        ppc_pvalue(cstat_fn, simulate, post, x, rng=5, n=10, model_counts=np.ones(3))


# --- the results render the result table's text -------------------------------------------

def test_check_results_render_the_table_text(reference):
    ref, _ = reference
    rng = np.random.default_rng(140)
    clean = ref.check(simulate(np.array([[1.1, 1.8]]), rng)[0])
    assert clean.summary() == "" and str(clean).startswith("inside the training distribution")
    lined = ref.check(with_line(simulate(np.array([[1.1, 1.8]]), rng)[0]))
    assert lined.summary() == str(lined) == lined.warning
    assert lined.summary().startswith("observation outside the training distribution")

    x = with_line(simulate(np.array([[1.0, 1.7]]), rng)[0], counts=150.0)
    post = grid_posterior(x, 2000, rng)
    bad = ppc_pvalue(cstat_fn, simulate, post, x, rng=141, n=100,
                     model_counts=expected(np.median(post, axis=0))[0])
    assert bad.warning and str(bad) == bad.summary() == f"{bad.p_value:.3f} ({bad.warning})"
    rng = np.random.default_rng(110)
    x = simulate(np.array([[1.0, 1.7]]), rng)[0]
    good = ppc_pvalue(cstat_fn, simulate, grid_posterior(x, 2000, rng), x, rng=111)
    assert good.warning is None and good.summary() == f"{good.p_value:.3f}"
    with pytest.raises(AttributeError):
        good.p_value = 0.5  # frozen: the result can keep it as is


# --- calibration: p-values of spectra simulated from the fitted model are uniform ---------------

def _wstat_setup(b_obs, ratio):
    def sim(theta, rng):
        mu = expected(theta)
        src = rng.poisson(mu + ratio * b_obs)
        bkg = rng.poisson(np.broadcast_to(b_obs, mu.shape))
        return np.concatenate([src, bkg], axis=1).astype(float)

    def stat(x, theta):
        x = np.atleast_2d(x)
        n = E_MID.size
        return stats.wstat(x[:, :n], x[:, n:], expected(theta), 1.0, 1.0 / ratio)
    return sim, stat


# every other grid point: W-stat profiles the background in each of the grid's bins
_A2, _G2 = _A[::2], _G[::2]
_GRID2 = np.column_stack([m.ravel() for m in np.meshgrid(_A2, _G2, indexing="ij")])
_GRID2_MU = expected(_GRID2)


def _grid_posterior_wstat(x, n, rng, ratio):
    k = E_MID.size
    logp = -0.5 * stats.wstat(x[:k], x[k:], _GRID2_MU, 1.0, 1.0 / ratio)
    p = np.exp(logp - logp.max())
    idx = rng.choice(len(_GRID2), size=n, p=p / p.sum())
    step = np.array([_A2[1] - _A2[0], _G2[1] - _G2[0]])
    return np.clip(_GRID2[idx] + (rng.random((n, 2)) - 0.5) * step, LO, HI)


@pytest.mark.parametrize("statistic", ["cstat", "wstat"])
def test_ppc_pvalues_are_uniform_for_spectra_from_the_fitted_model(statistic):
    # 200 spectra drawn from one parameter vector, each with its exact posterior: if the
    # check is calibrated its p-values are uniform (a KS test cannot tell them apart)
    from scipy.stats import kstest
    rng = np.random.default_rng(140 if statistic == "cstat" else 141)
    theta = np.array([[1.0, 1.7]])
    ratio, bkg_rate = 0.2, np.full(E_MID.size, 3.0)   # background region 5x the source's
    ps = []
    for _ in range(200):
        if statistic == "cstat":
            x = simulate(theta, rng)[0]
            post = grid_posterior(x, 1000, rng)
            ps.append(ppc_pvalue(cstat_fn, simulate, post, x, rng=rng).p_value)
        else:
            b = rng.poisson(bkg_rate).astype(float)
            x = np.concatenate([rng.poisson(expected(theta)[0] + ratio * bkg_rate).astype(float), b])
            sim, stat = _wstat_setup(b, ratio)
            post = _grid_posterior_wstat(x, 1000, rng, ratio)
            ps.append(ppc_pvalue(stat, sim, post, x, rng=rng).p_value)
    assert kstest(ps, "uniform").pvalue > 0.01
    assert 0.4 < np.mean(ps) < 0.6
