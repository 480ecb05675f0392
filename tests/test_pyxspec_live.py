"""The PyXspec adapter against the real PyXspec (``import xspec``).

``make test`` runs this suite (``tests/test_pyxspec_live*.py``) in its own
process against XSPEC 12.9.1 / PyXspec 2.0.0 from ``../shared/pyxspec``
(``tests/run_pyxspec_live.sh``); a skip there fails the run. Elsewhere it
skips with the reason. These are the only tests that can show compatibility
with PyXspec and agreement with XSPEC; the double's tests
(test_pyxspec_adapter.py) cannot.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from xspec_sbi import pyxspec as px
from xspec_sbi import sbi_fit
from xspec_sbi.baseline.chainfile import read_chain_file
from xspec_sbi.baseline.fit import fit
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.forward.simulate import Simulator

from pyxspec_live_support import SKIP_REASON
from pyxspec_live_support import XSPEC as xspec

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]


@pytest.fixture
def pn_session(shared_data, monkeypatch):
    """XMM PN with background, 0.3-10 keV, tbabs*powerlaw, cstat (W-stat)."""
    monkeypatch.chdir(shared_data / "xmm_pn_ngc7793_ulx4")
    xspec.AllData.clear()
    xspec.AllModels.clear()
    xspec.Xset.chatter = 0
    s = xspec.Spectrum("PN.pha")
    s.ignore("**-0.3 10.-**")
    xspec.Fit.statMethod = "cstat"
    m = xspec.Model("tbabs*powerlaw")
    m.setPars(0.2, 1.8, 2e-5)
    yield xspec
    xspec.AllData.clear()
    xspec.AllModels.clear()


def test_read_session(pn_session):
    session = px.read_session()
    (s,) = session.spectra
    assert s.n_bins == len(xspec.AllData(1).noticed)
    assert s.background is not None
    assert session.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
    assert session.settings.abund == xspec.Xset.abund
    # Observed counts agree: XSPEC's rates (counts/s per noticed bin) x exposure.
    np.testing.assert_allclose(np.asarray(xspec.AllData(1).values) * xspec.AllData(1).exposure,
                               s.binned_counts(), rtol=1e-6)


def test_engine_folds_as_xspec(pn_session):
    session = px.read_session()
    agreement = px.check_agreement(session, rtol=1e-5)
    assert agreement.n_bins == (session.spectra[0].n_bins,)


def test_statistic_agrees_with_ours(pn_session):
    session = px.read_session()
    ours = session.statistic_function()
    for theta in ([0.2, 1.8, 2e-5], [0.05, 2.4, 1e-5]):
        assert px.xspec_statistic(theta) == pytest.approx(float(ours(np.array([theta]))[0]),
                                                          rel=1e-6)


def test_session_left_unchanged(pn_session, tmp_path):
    before = px.snapshot()
    session = px.read_session()
    px.check_agreement(session, rtol=1e-5)
    px.xspec_statistic([0.3, 2.0, 3e-5])
    px.xspec_fit()
    px.choose_simulator(session, prefer="xspec").expected(np.array([[0.2, 1.8, 2e-5]]))
    px.xspec_chain(str(tmp_path / "c.fits"), burn=80, length=160, walkers=8)
    assert px.snapshot() == before


def test_xspec_path_matches_engine(pn_session):
    session = px.read_session()
    path = px.choose_simulator(session, prefer="xspec")
    engine = px.choose_simulator(session)
    assert isinstance(engine, Simulator)
    theta = np.array([[0.2, 1.8, 2e-5], [0.5, 2.2, 3e-5]])
    np.testing.assert_allclose(path.expected(theta), engine.expected(theta), rtol=1e-5)


def test_fit_agrees_with_ours(pn_session):
    session = px.read_session()
    free = session.model.free_parameters
    ours = fit(session.statistic_function(), [p.value for p in free], [p.min for p in free],
               [p.max for p in free])
    theirs = px.xspec_fit()
    assert theirs.stat == pytest.approx(ours.stat, abs=0.05)


def test_exported_samples_load_into_xspec(pn_session, tmp_path):
    session = px.read_session()
    rng = np.random.default_rng(0)
    samples = session.model.free_values() * (1 + 0.01 * rng.standard_normal((40, 3)))
    out = str(tmp_path / "sbi.fits")
    px.export_samples(out, samples, session.model.free_parameters,
                      session.statistic_function()(samples))
    try:
        px.load_chain(out)
        xspec.Fit.error("1-3")   # XSPEC's error on the loaded chain runs
    finally:
        xspec.AllChains -= out
    assert read_chain_file(out).samples.shape == (40, 3)
    assert os.path.exists(out)


def test_sbi_fit_end_to_end(pn_session):
    """sbi_fit() with no data arguments on the live session (tiny budgets: plumbing only)."""
    prior = {"TBabs.nH": ("uniform", 0.0, 1.0), "powerlaw.PhoIndex": ("uniform", 1.0, 3.0),
             "powerlaw.norm": ("log", 1e-4, 2e-3)}
    before = px.snapshot()
    loaded_before = int(xspec.AllChains.nChains) if hasattr(xspec.AllChains, "nChains") else None
    result = sbi_fit(prior=prior, n_simulations=500, n_samples=300, chain_length=800,
                     chain_burn=200, restrict=None, config=NPEConfig(max_epochs=20), workers=1,
                     load_chain=True, progress=False, seed=3)
    xs = result.xspec
    try:
        assert px.snapshot() == before
        assert xs.names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
        # XSPEC's own statistic at the SBI median against the engine's (independent here).
        assert xs.stat_at_sbi_median == pytest.approx(result.stat_median, rel=1e-5)
        assert xs.fit.stat <= xs.stat_at_sbi_median + 1e-6
        assert xs.chain.samples.shape == (800, 3)
        assert np.all(np.abs(np.median(xs.chain.samples, axis=0) - xs.fit.theta)
                      < 3 * xs.chain.samples.std(axis=0))
        assert str(xs) in result.table()
        if loaded_before is not None:
            assert int(xspec.AllChains.nChains) == loaded_before + 1   # only the SBI samples
        xspec.Fit.error("1-3")   # XSPEC's error runs on the loaded SBI samples
        # With a chain loaded, XSPEC's error is the chain's 90% range: here SBI's own.
        for i in (1, 2, 3):
            lo, hi = xspec.AllModels(1)(i).error[:2]
            q05, q50, q95 = np.quantile(result.samples[:, i - 1], [0.05, 0.5, 0.95])
            assert lo <= q50 <= hi, (i, lo, hi, q50)
            assert lo == pytest.approx(q05, abs=0.1 * (q95 - q05))
            assert hi == pytest.approx(q95, abs=0.1 * (q95 - q05))
        # ... and so does the flux with errors (from the chain's samples). XSPEC 12.9.1
        # computes flux errors only after a fit ("Fit is not currently valid"), and
        # sbi_fit left the user's parameters as they were: fit first, as a script does.
        xspec.Fit.perform()
        xspec.AllModels.calcFlux("0.5 2.0 err")
        flux = xspec.AllData(1).flux
        assert len(flux) == 6 and np.all(np.isfinite(flux)), flux
        assert 0 < flux[1] <= flux[0] <= flux[2], flux   # erg/cm^2/s and its 90% range
    finally:
        xspec.AllChains -= xs.sbi_chain_file


def test_sbi_fit_refuses_chi_square(pn_session):
    xspec.Fit.statMethod = "chi"
    try:
        with pytest.raises(px.PyXspecError, match="cstat"):
            sbi_fit(progress=False)
    finally:
        xspec.Fit.statMethod = "cstat"
