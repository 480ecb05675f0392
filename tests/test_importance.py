"""Tests of xspec_sbi.checks.importance and .psis against analytic posteriors, exact Pareto draws,
scipy's maximum-likelihood Pareto fit and a direct grid integration of the evidence."""
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.integrate import trapezoid
from scipy.optimize import minimize

from xspec_sbi.forward import stats
from xspec_sbi.checks.importance import (
    ImportanceError,
    cstat_log_like_constant,
    importance_correct,
    importance_from_posterior,
    wstat_log_like_constant,
)
from xspec_sbi.checks.psis import fit_generalized_pareto, pareto_k_threshold, pareto_smooth, psis_tail_length
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior

# --- a conjugate Gaussian problem: prior N(0, tau^2), data y ~ N(theta, s^2), 2-D ---
TAU, SIG = 2.0, 0.5
Y = np.array([1.3, -0.7])
POST_VAR = TAU**2 * SIG**2 / (TAU**2 + SIG**2)
POST_MEAN = Y * TAU**2 / (TAU**2 + SIG**2)
POST_SD = math.sqrt(POST_VAR)
LOG_Z = float(np.sum(sps.norm.logpdf(Y, 0.0, math.sqrt(TAU**2 + SIG**2))))


def gauss_terms(theta):
    log_prior = sps.norm.logpdf(theta, 0.0, TAU).sum(axis=1)
    log_like = sps.norm.logpdf(Y, theta, SIG).sum(axis=1)  # normalised: Z is the analytic one
    return log_prior, log_like


def gauss_proposal(n, scale, shift, seed):
    rng = np.random.default_rng(seed)
    mu = POST_MEAN + shift * POST_SD
    theta = rng.normal(mu, scale * POST_SD, size=(n, 2))
    log_q = sps.norm.logpdf(theta, mu, scale * POST_SD).sum(axis=1)
    return theta, log_q


# --- (a) exact proposal ------------------------------------------------------------

def test_exact_posterior_proposal_gives_equal_weights_and_analytic_evidence():
    n = 3000
    theta, log_q = gauss_proposal(n, 1.0, 0.0, seed=3)
    lp, ll = gauss_terms(theta)
    res = importance_correct(theta, log_q, lp, ll, rng=5)
    assert np.ptp(res.log_weights) < 1e-10
    assert res.ess == pytest.approx(n, rel=1e-9)
    assert res.ess_fraction == pytest.approx(1.0, rel=1e-9)
    assert res.pareto_k < 0.5 and res.pareto_k_category == "good"
    assert res.reliable and res.advice is None
    assert res.log_evidence == pytest.approx(LOG_Z, abs=1e-9)
    assert res.log_evidence_se < 1e-9
    np.testing.assert_allclose(res.weights, 1.0 / n, rtol=1e-8)
    assert res.theta.shape == (n, 2)
    np.testing.assert_allclose(res.theta.mean(axis=0), POST_MEAN, atol=5 * POST_SD / math.sqrt(n))


# --- (b) too narrow / wider proposals ----------------------------------------------

@pytest.mark.parametrize("seed", [11, 12, 13])
def test_underdispersed_proposal_is_flagged_with_advice(seed):
    # q with 0.2 of the posterior width in 2-D: the weights exp(c |theta - mean|^2) are
    # exactly Pareto distributed with k = 1 - 0.2^2 = 0.96 (the estimate's sd is ~0.09).
    theta, log_q = gauss_proposal(20000, 0.2, 0.0, seed=seed)
    lp, ll = gauss_terms(theta)
    res = importance_correct(theta, log_q, lp, ll, rng=seed)
    assert res.pareto_k > 0.7
    assert res.pareto_k_category == "unreliable"
    assert res.ess_fraction < 0.05
    assert not res.reliable
    assert "Pareto k" in res.advice and "ESS fraction" in res.advice
    assert "multi-round" in res.advice


def test_overdispersed_shifted_proposal_is_corrected_to_the_analytic_posterior():
    n = 20000
    theta, log_q = gauss_proposal(n, 1.5, 0.5, seed=21)
    lp, ll = gauss_terms(theta)
    res = importance_correct(theta, log_q, lp, ll, rng=22)
    assert res.pareto_k < 0.5 and res.reliable and res.advice is None
    raw_err = np.abs(theta.mean(axis=0) - POST_MEAN) / POST_SD
    assert np.all(raw_err > 0.4)  # the proposal is off by half a posterior sd
    np.testing.assert_allclose(res.mean(), POST_MEAN, atol=0.04 * POST_SD)
    np.testing.assert_allclose(theta.std(axis=0), 1.5 * POST_SD, rtol=0.03)
    np.testing.assert_allclose(res.std(), POST_SD, rtol=0.04)
    # the resampled draws carry the correction too
    np.testing.assert_allclose(res.theta.mean(axis=0), POST_MEAN, atol=0.06 * POST_SD)
    np.testing.assert_allclose(res.theta.std(axis=0), POST_SD, rtol=0.05)
    assert abs(res.log_evidence - LOG_Z) < 4 * res.log_evidence_se + 1e-12
    assert 0.0 < res.log_evidence_se < 0.02


def test_large_sample_runs_vectorised():
    n = 100_000
    theta, log_q = gauss_proposal(n, 1.3, 0.2, seed=31)
    lp, ll = gauss_terms(theta)
    res = importance_correct(theta, log_q, lp, ll, rng=32, n_resample=5000)
    assert res.theta.shape == (5000, 2)
    assert res.tail_length == psis_tail_length(n) == 949
    assert res.reliable
    assert abs(res.log_evidence - LOG_Z) < 4 * res.log_evidence_se


# --- (c) the Pareto shape ------------------------------------------------------------

@pytest.mark.parametrize("xi", [0.3, 0.8])
def test_zhang_stephens_fit_recovers_the_shape_and_agrees_with_scipy_mle(xi):
    x = sps.genpareto.rvs(xi, scale=2.0, size=3000, random_state=np.random.default_rng(40))
    fit = fit_generalized_pareto(x, weakly_informative_prior=False)
    assert fit.k == pytest.approx(xi, abs=0.1)
    assert fit.sigma == pytest.approx(2.0, rel=0.15)
    k_mle, _, sigma_mle = sps.genpareto.fit(x, floc=0.0)
    assert fit.k == pytest.approx(k_mle, abs=0.04)
    assert fit.sigma == pytest.approx(sigma_mle, rel=0.08)
    # the weakly informative prior is 10 pseudo-observations at k = 0.5
    shrunk = fit_generalized_pareto(x)
    assert shrunk.k == pytest.approx((3000 * fit.k + 5.0) / 3010, rel=1e-12)


@pytest.mark.parametrize("xi", [0.3, 0.8])
def test_psis_k_hat_of_pareto_distributed_weights(xi):
    # Above any threshold a generalized Pareto sample is again generalized Pareto
    # with the same shape, so the tail fit must recover xi.
    n = 20000
    w = 1.0 + sps.genpareto.rvs(xi, size=n, random_state=np.random.default_rng(41))
    smoothed, k_hat, m = pareto_smooth(np.log(w))
    assert m == 425
    assert k_hat == pytest.approx(xi, abs=0.2)
    lw = np.log(w) - np.log(w).max()
    body = np.argsort(lw)[:-m]
    np.testing.assert_array_equal(smoothed[body], lw[body])  # only the tail is smoothed
    assert smoothed.max() <= 0.0  # truncated at the largest raw weight


def test_k_threshold_and_too_few_draws():
    assert pareto_k_threshold(100) == pytest.approx(0.5)
    assert pareto_k_threshold(10_000) == pytest.approx(0.7)
    rng = np.random.default_rng(50)
    theta = rng.normal(size=(15, 1))
    res = importance_correct(theta, np.zeros(15), np.zeros(15), rng.normal(size=15), rng=1)
    assert math.isnan(res.pareto_k) and not res.reliable
    assert "too few" in res.advice


def test_few_effective_draws_get_their_own_advice():
    theta, log_q = gauss_proposal(400, 1.0, 0.0, seed=51)
    lp, ll = gauss_terms(theta)
    res = importance_correct(theta, log_q, lp, ll, rng=1, min_ess=1000)
    assert not res.reliable and "draw more samples" in res.advice


# --- (d) evidence of a Poisson power-law spectrum ------------------------------------

E_EDGES = np.geomspace(0.5, 8.0, 31)  # keV
E_MID = np.sqrt(E_EDGES[:-1] * E_EDGES[1:])
DE = np.diff(E_EDGES)
EXPOSURE = 1000.0  # s x cm^2 folded into one factor


def powerlaw_counts(theta):
    """(n, 30) expected counts of norm * E^-gamma (photons keV^-1 cm^-2 s^-1 at 1 keV)."""
    theta = np.atleast_2d(theta)
    return theta[:, :1] * E_MID[None, :] ** (-theta[:, 1:2]) * DE * EXPOSURE


class StudentTProposal:
    """A stand-in posterior estimator: multivariate t with sample/log_prob like NeuralPosterior."""

    def __init__(self, loc, cov, df=5):
        self.dist = sps.multivariate_t(loc=loc, shape=cov, df=df)

    def sample(self, x, n_samples, *, rng):
        return self.dist.rvs(size=n_samples, random_state=np.random.default_rng(rng))

    def log_prob(self, theta, x):
        return self.dist.logpdf(theta)


def test_evidence_of_poisson_powerlaw_matches_grid_integration():
    rng = np.random.default_rng(60)
    counts = rng.poisson(powerlaw_counts([1.0, 1.7])[0]).astype(float)
    prior = BoxPrior((ParameterPrior("norm", "uniform", 0.5, 2.0),
                      ParameterPrior("gamma", "uniform", 1.0, 3.0)))

    def log_like(theta):
        return -0.5 * stats.cstat(counts, powerlaw_counts(theta))

    best = minimize(lambda t: -log_like(t[None, :])[0], x0=[1.2, 2.0], method="Nelder-Mead",
                    options={"xatol": 1e-8, "fatol": 1e-10})
    mu = powerlaw_counts(best.x)[0]
    grad = np.stack([np.full_like(E_MID, 1.0 / best.x[0]), -np.log(E_MID)])  # d log mu
    fisher = (grad * mu) @ grad.T
    cov = np.linalg.inv(fisher)
    proposal = StudentTProposal(best.x, 1.5**2 * cov)

    res = importance_from_posterior(
        proposal, counts, prior.log_prob, log_like, 20000, rng=61,
        log_like_constant=cstat_log_like_constant(counts),
    )
    assert res.reliable and res.pareto_k < 0.5

    # Reference: the Poisson likelihood from scipy, integrated on a fine grid over
    # +-8 sd around the maximum (the rest holds < e^-30 of the mass), uniform prior density.
    sd = np.sqrt(np.diag(cov))
    a = np.linspace(best.x[0] - 8 * sd[0], best.x[0] + 8 * sd[0], 401)
    g = np.linspace(best.x[1] - 8 * sd[1], best.x[1] + 8 * sd[1], 401)
    assert a[0] > 0.5 and a[-1] < 2.0 and g[0] > 1.0 and g[-1] < 3.0
    A, G = np.meshgrid(a, g, indexing="ij")
    grid = np.column_stack([A.ravel(), G.ravel()])
    loglik = sps.poisson.logpmf(counts, powerlaw_counts(grid)).sum(axis=1).reshape(A.shape)
    peak = loglik.max()
    integral = trapezoid(trapezoid(np.exp(loglik - peak), g, axis=1), a)
    log_z_grid = peak + math.log(integral) - math.log(1.5 * 2.0)

    assert 0.0 < res.log_evidence_se < 0.02
    assert abs(res.log_evidence - log_z_grid) < 4 * res.log_evidence_se
    # the corrected posterior mean matches the grid's
    p = np.exp(loglik - peak)
    p /= p.sum()
    np.testing.assert_allclose(res.mean(), [np.sum(p * A), np.sum(p * G)], atol=0.05 * sd.max())


def test_likelihood_constants_match_scipy_poisson():
    rng = np.random.default_rng(70)
    S = rng.poisson(4.0, size=25).astype(float)
    S[:3] = 0.0
    m = rng.uniform(0.5, 9.0, size=25)
    direct = sps.poisson.logpmf(S, m).sum()
    assert -0.5 * stats.cstat(S, m[None, :])[0] + cstat_log_like_constant(S) == pytest.approx(
        direct, rel=1e-12)

    B = rng.poisson(6.0, size=25).astype(float)
    B[3:5] = 0.0
    ts, tb = 1000.0, 4000.0
    src = rng.uniform(0.0, 6.0, size=25)
    bkg_src = stats.wstat_background(S, B, src[None, :], ts, tb)[0]  # profiled, source region
    joint = (sps.poisson.logpmf(S, src + bkg_src).sum()
             + sps.poisson.logpmf(B, bkg_src * tb / ts).sum())
    got = -0.5 * stats.wstat(S, B, src[None, :], ts, tb)[0] + wstat_log_like_constant(S, B)
    assert got == pytest.approx(joint, rel=1e-10)


# --- (e) reproducibility and bad input ----------------------------------------------

def test_same_seed_same_result():
    theta, log_q = gauss_proposal(2000, 1.4, 0.3, seed=80)
    lp, ll = gauss_terms(theta)
    r1 = importance_correct(theta, log_q, lp, ll, rng=7)
    r2 = importance_correct(theta, log_q, lp, ll, rng=np.random.default_rng(7))
    r3 = importance_correct(theta, log_q, lp, ll, rng=8)
    np.testing.assert_array_equal(r1.indices, r2.indices)
    np.testing.assert_array_equal(r1.theta, r2.theta)
    assert r1.pareto_k == r2.pareto_k and r1.log_evidence == r2.log_evidence
    assert not np.array_equal(r1.indices, r3.indices)
    p = StudentTProposal(POST_MEAN, 2.0 * POST_VAR * np.eye(2))
    f = lambda t: gauss_terms(t)[1]  # noqa: E731
    g = lambda t: gauss_terms(t)[0]  # noqa: E731
    a = importance_from_posterior(p, Y, g, f, 500, rng=9)
    b = importance_from_posterior(p, Y, g, f, 500, rng=9)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_zero_weights_and_bad_inputs():
    theta, log_q = gauss_proposal(500, 1.2, 0.0, seed=90)
    lp, ll = gauss_terms(theta)
    lp_cut = lp.copy()
    lp_cut[:100] = -np.inf  # outside the prior: weight zero, not an error
    res = importance_correct(theta, log_q, lp_cut, ll, rng=1)
    assert np.all(res.weights[:100] == 0.0)
    assert not np.isin(res.indices, np.arange(100)).any()

    with pytest.raises(ImportanceError, match="log_q must have shape"):
        importance_correct(theta, log_q[:-1], lp, ll, rng=1)
    with pytest.raises(ImportanceError, match="theta must have shape"):
        importance_correct(theta[:, 0], log_q, lp, ll, rng=1)
    bad = ll.copy()
    bad[4] = np.nan
    with pytest.raises(ImportanceError, match="log_like contains NaN"):
        importance_correct(theta, log_q, lp, bad, rng=1)
    lq_bad = log_q.copy()
    lq_bad[2] = -np.inf
    with pytest.raises(ImportanceError, match="log_q is -inf at row 2"):
        importance_correct(theta, lq_bad, lp, ll, rng=1)
    with pytest.raises(ImportanceError, match="every importance weight is zero"):
        importance_correct(theta, log_q, np.full(500, -np.inf), ll, rng=1)
    with pytest.raises(ImportanceError, match="n_resample"):
        importance_correct(theta, log_q, lp, ll, rng=1, n_resample=0)
    with pytest.raises(ImportanceError, match="counts"):
        cstat_log_like_constant([1.0, -2.0])
    with pytest.raises(ImportanceError, match="log_weights"):
        pareto_smooth(np.array([0.0, np.nan, 1.0]))


def test_tail_weights_spanning_hundreds_of_nats_do_not_break_psis():
    # A badly trained network gives log weights spread over ~1000 nats.
    from xspec_sbi.checks.importance import importance_correct
    rng = np.random.default_rng(0)
    n = 2000
    theta = rng.normal(size=(n, 1))
    log_q = np.zeros(n)
    log_like = -np.abs(rng.standard_cauchy(n)) * 300.0
    r = importance_correct(theta, log_q, np.zeros(n), log_like, rng=1)
    assert np.all(np.isfinite(r.weights)) and abs(r.weights.sum() - 1) < 1e-9
    assert not r.reliable and r.advice
    # scale equivariance of the GPD fit, which the rescaling relies on
    from xspec_sbi.checks.psis import fit_generalized_pareto
    x = np.random.default_rng(2).pareto(2.0, 500)
    a, b = fit_generalized_pareto(x), fit_generalized_pareto(x * 1e-200)
    assert a.k == pytest.approx(b.k, rel=1e-9) and a.sigma * 1e-200 == pytest.approx(b.sigma, rel=1e-9)
