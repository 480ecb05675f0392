"""sbi_fit() on a PyXspec session, against the test double of PyXspec (tests/pyxspec_double.py).

What is checked: sbi_fit reads the live session itself (no data arguments),
refuses chi-square and a session the engine does not reproduce, runs XSPEC's
own fit and chain and its statistic at the SBI median, hands the SBI samples
to AllChains when asked, leaves the session as it was, and takes the XSPEC
path for a model the engine refuses (a local Python model). The double
computes with our engine, so agreement *with XSPEC* is not shown here: the
live counterpart is ``test_sbi_fit_end_to_end`` in tests/test_pyxspec_live.py.
Budgets are tiny: these tests check plumbing and bookkeeping, not posteriors.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from pyxspec_double import PyXspecTestDouble
from xspec_sbi import pyxspec as px
from xspec_sbi import sbi_fit
from xspec_sbi.baseline.chainfile import read_chain_file
from xspec_sbi.baseline.mcmc import ChainConfigError
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.session import Session

PN = "xmm_pn_ngc7793_ulx4/PN.pha"
BAND = "**-0.3 10.-**"
PRIOR = {"TBabs.nH": ("uniform", 0.0, 1.0), "powerlaw.PhoIndex": ("uniform", 1.0, 3.0),
         "powerlaw.norm": ("log", 1e-4, 2e-3)}
# refine=False: tiny budgets fail the likelihood check by design, and these tests are about
# the adapter, not the refinement (tests/test_adaptive.py)
TINY = dict(n_simulations=500, n_samples=300, chain_length=800, chain_burn=200, restrict=None,
            config=NPEConfig(max_epochs=20), workers=1, progress=False, seed=3, refine=False)



def _pn_double(shared_data):
    d = PyXspecTestDouble()
    d.Spectrum(str(shared_data / PN)).ignore(BAND)
    return d


def mypow(engs, params, flux):
    """A local model in PyXspec's form: XSPEC's powerlaw (norm 1), written out analytically."""
    e = np.asarray(engs, dtype=np.float64)
    g = params[0]
    flux[:] = (e[1:] ** (1.0 - g) - e[:-1] ** (1.0 - g)) / (1.0 - g)


@pytest.fixture(scope="module")
def engine_run(shared_data):
    """One sbi_fit on a tbabs*powerlaw PyXspec session, with load_chain=True."""
    d = _pn_double(shared_data)
    d.Model("tbabs*po").setPars(0.2, 1.8, 2e-5)
    before = px.snapshot(d)
    result = sbi_fit(xspec=d, prior=PRIOR, load_chain=True, **TINY)
    return d, before, result


def test_sbi_fit_reads_the_session_and_reports_xspec_numbers(engine_run):
    d, _, result = engine_run
    names = ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
    assert result.session.origin == "pyxspec" and result.names == names
    xs = result.xspec
    assert isinstance(xs, px.XspecComparison) and xs.names == names
    assert xs.statistic == "wstat" == result.statistic        # PN has a background
    # XSPEC's statistic at the SBI median is the one sbi_fit computed there
    # (same data, parameters passed in the right order).
    assert xs.stat_at_sbi_median == pytest.approx(result.stat_median, rel=1e-9)
    assert xs.fit.stat == pytest.approx(px.xspec_statistic(xs.fit.theta, d), rel=1e-12)
    assert xs.fit.stat <= xs.stat_at_sbi_median
    assert xs.fit.stat == pytest.approx(result.chain_fit.stat, abs=0.05)
    table = result.table()
    assert str(xs) in table and "XSPEC statistic" in table and "at the SBI median" in table


def test_xspec_chain_is_read_back_column_by_column(engine_run):
    _, _, result = engine_run
    chain = result.xspec.chain
    assert chain.samples.shape == (800, 3) and chain.walkers == 8
    assert result.xspec.chain_samples is chain.samples
    # Columns in the posterior's order: each XSPEC chain median lies near XSPEC's
    # best fit and near the engine chain's median, in units of the posterior sd
    # (the three parameters differ by orders of magnitude, so a swap would show).
    sd = result.chain.samples.std(axis=0)
    medians = np.median(chain.samples, axis=0)
    assert np.all(np.abs(medians - result.xspec.fit.theta) < 3 * sd)
    assert np.all(np.abs(medians - np.median(result.chain.samples, axis=0)) < 3 * sd)


def test_session_left_as_it_was_and_sbi_samples_loaded(engine_run):
    d, before, result = engine_run
    assert px.snapshot(d) == before           # parameters, notice states, chatter, query...
    path = result.xspec.sbi_chain_file
    # Only the SBI chain is loaded: XSPEC's own chain was unloaded again.
    assert result.xspec.chain_loaded and d.AllChains.test_loaded_files() == [path]
    chain = read_chain_file(path)
    np.testing.assert_array_equal(chain.samples, result.samples)
    assert chain.column_names == ("nH__1", "PhoIndex__2", "norm__3")
    np.testing.assert_allclose(chain.stat, result.session.statistic_function()(result.samples),
                               rtol=1e-10)
    assert "SBI samples loaded into AllChains" in str(result.xspec)


def test_chi_square_statistic_is_refused(shared_data):
    d = _pn_double(shared_data)
    d.Model("tbabs*po")
    d.Fit.statMethod = "chi"
    with pytest.raises(px.PyXspecError, match=r"statMethod is 'chi'.*cstat"):
        sbi_fit(xspec=d, prior=PRIOR, **TINY)


def test_a_session_the_engine_does_not_reproduce_fails_before_simulating(shared_data):
    d = _pn_double(shared_data)
    d.Model("tbabs*po").setPars(0.2, 1.8, 2e-5)
    d.test_hooks["exposure"] = {1: 1000.0}    # XSPEC (here, the double) misreports it
    with pytest.raises(px.AgreementError, match=r"spectrum 1 \(.*PN\.pha\).*engine .*XSPEC"):
        sbi_fit(xspec=d, prior=PRIOR, **TINY)


def test_compare_with_xspec_refuses_a_changed_session_and_bad_chains(shared_data):
    d = _pn_double(shared_data)
    d.Model("tbabs*po").setPars(0.2, 1.8, 2e-5)
    before = px.snapshot(d)
    theta = np.array([[0.2, 1.8, 2e-5]])
    with pytest.raises(px.PyXspecError, match="session changed"):
        px.compare_with_xspec(names=("TBabs.nH", "powerlaw.PhoIndex"), samples=theta[:, :2],
                              median=theta[0, :2], xspec=d)
    with pytest.raises(ChainConfigError, match="walkers=7"):
        px.compare_with_xspec(names=("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"),
                              samples=theta, median=theta[0], walkers=7, xspec=d)
    assert px.snapshot(d) == before


@pytest.fixture(scope="module")
def local_model_run(shared_data):
    """sbi_fit on tbabs*mypow, mypow a local Python model the engine does not know."""
    d = _pn_double(shared_data)
    d.AllModels.addPyMod(mypow, ('PhoIndex "" 1.7 -3 -2 9 10 0.01',), "add")
    d.Model("tbabs*mypow").setPars(0.2, 1.8, 2e-5)
    before = px.snapshot(d)
    prior = {"TBabs.nH": PRIOR["TBabs.nH"], "mypow.PhoIndex": PRIOR["powerlaw.PhoIndex"],
             "mypow.norm": PRIOR["powerlaw.norm"]}
    result = sbi_fit(xspec=d, prior=prior, **dict(TINY, mcmc=False))
    return d, before, result


def test_model_the_engine_refuses_goes_through_xspec(local_model_run, shared_data):
    d, before, result = local_model_run
    session = result.session
    assert isinstance(session.model, px.XspecModel) and "mypow" in session.model.reason
    assert isinstance(session.simulator(), px.XspecPathSimulator)
    assert px.check_agreement(session, d).path == "xspec"
    # Independent check: mypow is XSPEC's powerlaw, so the statistic the XSPEC
    # path gave at the SBI median is the engine's for tbabs*powerlaw there.
    engine = Session.from_files(str(shared_data / PN), "tbabs*powerlaw", ignore=BAND)
    median = np.median(result.samples, axis=0)
    ours = float(engine.statistic_function()(median[None, :])[0])
    assert result.stat_median == pytest.approx(ours, rel=1e-9)
    assert result.xspec.stat_at_sbi_median == pytest.approx(ours, rel=1e-9)
    assert result.xspec.chain is None                 # mcmc=False: no XSPEC chain either
    assert px.snapshot(d) == before and d.AllChains.test_loaded_files() == []


def test_xspec_path_in_a_worker_without_the_local_model_says_use_one_worker(local_model_run):
    _, _, result = local_model_run
    sim = result.session.simulator()
    worker_copy = pickle.loads(pickle.dumps(sim))
    # What a spawned worker does: rebuild the session from Xset.save's text in
    # a fresh PyXspec, which has never seen the Python local model.
    worker_copy.origin_pid = -1
    with pytest.raises(px.PyXspecError, match=r"addPyMod.*workers=1"):
        worker_copy.expected(np.array([[0.2, 1.8, 2e-5]]))


def test_agreement_on_the_xspec_path_still_checks_notice_states(local_model_run):
    d, before, result = local_model_run
    with px.preserved_state(d):
        d.AllData(1).ignore("**-1.0")
        with pytest.raises(px.AgreementError, match="notice states"):
            px.check_agreement(result.session, d)
    assert px.snapshot(d) == before
