"""The PyXspec adapter against a test double of PyXspec (tests/pyxspec_double.py).

These tests check the adapter's own logic: what it reads, how it maps notice
states, links and data groups, that it restores the session, that the XSPEC
path simulates like the engine and that chains round-trip. The double is
backed by the engine, so agreement *with XSPEC* is not shown here (see
tests/test_pyxspec_live.py).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
from dataclasses import replace

import numpy as np
import pytest

from pyxspec_double import PyXspecTestDouble
from xspec_sbi import pyxspec as px
from xspec_sbi.baseline.chainfile import ChainFileError, read_chain_file
from xspec_sbi.pyxspec.reader import XspecModel, parse_link
from xspec_sbi.forward.simulate import JointSimulator, Simulator, simulate
from xspec_sbi.data.spectrum import load_spectrum

PN = "xmm_pn_ngc7793_ulx4/PN.pha"
XRT = "swift_xrt_grb110731a/grb110731a_src.pha"


@pytest.fixture
def pn_double(shared_data):
    d = PyXspecTestDouble()
    s = d.Spectrum(str(shared_data / PN))
    s.ignore("**-0.3 10.-**")
    d.Model("tbabs*po").setPars(0.2, 1.8, 2e-5)
    return d


def _ours(path, selection):
    return load_spectrum(path).ignore(selection)


def test_reads_one_spectrum_with_background_and_ignored_range(pn_double, shared_data):
    session = px.read_session(pn_double)
    (s,) = session.spectra
    expected = _ours(shared_data / PN, "**-0.3 10.-**")
    assert np.array_equal(s.noticed, expected.noticed)
    assert 0 < s.n_bins < s.n_bins_all
    assert s.background is not None and s.background.path.endswith("PNbackground_spectrum.fits")
    assert s.response.arf_path.endswith("PN.arf")
    assert session.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
    assert session.model.free_values() == pytest.approx([0.2, 1.8, 2e-5])
    assert session.origin == "pyxspec" and session.statistic == "cstat"
    # XSPEC's noticed numbers are 1-based grouped bins: they map onto our mask.
    assert [int(i) + 1 for i in np.flatnonzero(s.noticed)] == pn_double.AllData(1).noticed


def test_reads_several_spectra_as_a_joint_session(shared_data):
    d = PyXspecTestDouble()
    d.AllData(f"{shared_data / PN} {shared_data / XRT}")
    d.AllData(1).ignore("**-0.5 8.-**")
    d.AllData(2).ignore("1-20 bad")
    d.Model("tbabs*po")
    session = px.read_session(d)
    assert len(session.spectra) == 2
    assert np.array_equal(session.spectra[1].noticed,
                          load_spectrum(shared_data / XRT).ignore("1-20 bad").noticed)
    assert all(s.background is not None for s in session.spectra)
    assert isinstance(session.simulator(), JointSimulator)
    px.check_agreement(session, d)


def test_frozen_and_linked_parameters(shared_data):
    d = PyXspecTestDouble()
    d.Spectrum(str(shared_data / PN))
    m = d.Model("tbabs*(po+po)")
    m.setPars(0.1, 1.5, 1e-5, 2.5, 1e-5)
    m(1).frozen = True
    m(4).link = "p2"
    m(5).link = "0.5*p3"
    session = px.read_session(d)
    params = session.model.parameters
    assert params[0].frozen and not params[0].free
    assert params[3].link == "= p2" and params[4].link == "= 0.5*p3"
    assert session.model.free_names == ("powerlaw.PhoIndex", "powerlaw.norm")
    agreement = px.check_agreement(session, d)
    assert max(agreement.max_relative) < 1e-10


@pytest.mark.parametrize("text, expected", [("= p3", (1.0, 3)), ("=2*p1", (2.0, 1)),
                                            ("= p1*0.5", (0.5, 1)), ("", None)])
def test_parse_link(text, expected):
    assert parse_link(text, "x") == expected


def test_parse_link_refuses_expressions():
    with pytest.raises(px.PyXspecError, match="TBabs.nH"):
        parse_link("= p1 + p2", "TBabs.nH")


def test_data_groups_tied_to_group_one_are_one_model(shared_data):
    d = PyXspecTestDouble()
    d.AllData(f"1:1 {shared_data / PN} 2:2 {shared_data / XRT}")
    d.Model("tbabs*po")
    session = px.read_session(d)      # XSPEC links new groups to group 1 by default
    assert session.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
    px.check_agreement(session, d)
    d.AllModels(2)(2).untie()
    d.AllModels(2)(2).values = 2.5
    grouped = px.read_session(d)      # group 2's own photon index: a copy of its own
    assert grouped.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm",
                                        "powerlaw.PhoIndex[2]")
    assert grouped.groups == (1, 2) and grouped.model["powerlaw.PhoIndex[2]"].value == 2.5
    px.check_agreement(grouped, d)
    # XSPEC's numbers for its free parameters (the double's statistic is group 1's only:
    # the statistic is compared in tests/test_pyxspec_live_groups.py)
    assert [p.index for p in px.free_parameters(d)] == [1, 2, 3, 5]


def test_chi_square_is_refused(pn_double):
    pn_double.Fit.statMethod = "chi"
    with pytest.raises(px.PyXspecError, match="statMethod.*cstat"):
        px.read_session(pn_double)


def test_agreement_fails_loudly_on_a_wrong_exposure(pn_double):
    session = px.read_session(pn_double)
    pn_double.test_hooks["exposure"] = {1: 1000.0}
    with pytest.raises(px.AgreementError, match=r"spectrum 1 .*PN\.pha.*engine .*XSPEC"):
        px.check_agreement(session, pn_double)


def test_agreement_fails_when_xspec_folds_other_parameters(pn_double):
    session = px.read_session(pn_double)
    px.check_agreement(session, pn_double)
    # The user changes XSPEC after reading: the check uses XSPEC's current values
    # for both sides, so it still agrees ...
    pn_double.AllModels(1)(2).values = 2.2
    px.check_agreement(session, pn_double)
    # ... but a model that differs from the session's (here: another expression) is refused.
    pn_double.Model("tbabs*bbodyrad")
    with pytest.raises(px.PyXspecError, match="model changed"):
        px.check_agreement(session, pn_double)


def test_statistic_at_theta_and_restored(pn_double):
    session = px.read_session(pn_double)
    before = px.snapshot(pn_double)
    theta = np.array([0.3, 2.1, 3e-5])
    value = px.xspec_statistic(theta, pn_double)
    assert value == pytest.approx(float(session.statistic_function()(theta[None])[0]), rel=1e-12)
    assert value != pytest.approx(pn_double.Fit.statistic)
    assert px.snapshot(pn_double) == before
    with pytest.raises(px.PyXspecError, match="TBabs.nH"):
        px.xspec_statistic([0.3, 2.1], pn_double)


def test_preserved_state_restores_after_an_error(pn_double):
    before = px.snapshot(pn_double)
    with pytest.raises(RuntimeError):
        with px.preserved_state(pn_double):
            m = pn_double.AllModels(1)
            m(1).frozen = True
            m(2).values = 2.9
            m(3).link = "p1"
            pn_double.AllData(1).ignore("1-30")
            pn_double.Fit.query = "yes"
            raise RuntimeError("boom")
    assert px.snapshot(pn_double) == before
    assert before.chatter == 10


def test_xspec_fit_leaves_session_unless_kept(pn_double):
    before = px.snapshot(pn_double)
    result = px.xspec_fit(pn_double)
    assert px.snapshot(pn_double) == before
    assert result.stat < px.xspec_statistic(result.starts[0], pn_double)
    assert result.stat == pytest.approx(px.xspec_statistic(result.theta, pn_double), rel=1e-10)
    kept = px.xspec_fit(pn_double, keep=True)
    assert pn_double.AllModels(1)(2).values[0] == pytest.approx(kept.theta[1])


def test_xspec_path_simulator_matches_engine(pn_double):
    session = px.read_session(pn_double)
    before = px.snapshot(pn_double)
    path = px.choose_simulator(session, pn_double, prefer="xspec")
    engine = px.choose_simulator(session, pn_double)
    assert isinstance(path, px.XspecPathSimulator) and isinstance(engine, Simulator)
    theta = np.array([[0.2, 1.8, 2e-5], [0.05, 2.5, 1e-5], [1.0, 1.2, 4e-5]])
    assert path.n_outputs == engine.n_outputs
    np.testing.assert_allclose(path.expected(theta), engine.expected(theta), rtol=1e-12)
    a = path(theta, np.random.default_rng(7))
    assert np.array_equal(a, engine(theta, np.random.default_rng(7)))
    assert np.array_equal(a, path(theta, np.random.default_rng(7)))
    assert px.snapshot(pn_double) == before
    clone = pickle.loads(pickle.dumps(path))
    assert clone._live is None and clone.xcm_text == path.xcm_text


def test_choose_simulator_takes_xspec_path_for_models_the_engine_refuses(pn_double):
    session = px.read_session(pn_double)
    only_xspec = replace(session, model=XspecModel(session.model.expression,
                                                   session.model.parameters, "local model"))
    sim = px.choose_simulator(only_xspec, pn_double)
    assert isinstance(sim, px.XspecPathSimulator)
    with pytest.raises(Exception, match="evaluated by XSPEC only"):
        only_xspec.model.evaluate(np.array([1.0, 2.0]), [[0.1, 2.0, 1.0]])
    with pytest.raises(ValueError, match="prefer"):
        px.choose_simulator(session, pn_double, prefer="gpu")


def test_abundances_reach_spawned_workers(pn_double):
    pn_double.Xset.abund = "wilm"
    pn_double.AllModels(1)(1).values = 3.0  # deep absorption: abundances matter
    wilm = px.read_session(pn_double)
    assert wilm.settings.abund == "wilm"
    path = px.choose_simulator(wilm, pn_double, prefer="xspec")
    engine = wilm.simulator()
    theta = np.array([[3.0, 1.8, 2e-5], [2.0, 2.2, 3e-5]])
    local_engine = simulate(engine, theta, seed=11)
    local_path = simulate(path, theta, seed=11)
    angr = replace(wilm, settings=replace(wilm.settings, abund="angr")).simulator()
    assert not np.allclose(angr.expected(theta), engine.expected(theta), rtol=1e-3)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        far_engine = simulate(engine, theta, seed=11, executor=pool)
        far_path = simulate(path, theta, seed=11, executor=pool)
    assert np.array_equal(far_engine, local_engine)
    assert np.array_equal(far_path, local_path)   # worker restored the session with wilm
    assert np.array_equal(local_path, local_engine)


def test_chain_runs_reads_back_and_unloads(pn_double, tmp_path):
    before = px.snapshot(pn_double)
    chain = px.xspec_chain(tmp_path / "xspec.fits", burn=16, length=64, walkers=8,
                           xspec=pn_double)
    assert chain.names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
    assert chain.samples.shape == (64, 3) and chain.walkers == 8
    assert pn_double.AllChains.test_loaded_files() == []
    assert px.snapshot(pn_double) == before
    with pytest.raises(FileExistsError):
        px.xspec_chain(tmp_path / "xspec.fits", burn=16, length=64, walkers=8, xspec=pn_double)


def test_exported_samples_load_into_allchains(pn_double, tmp_path):
    session = px.read_session(pn_double)
    rng = np.random.default_rng(3)
    samples = session.model.free_values() * (1 + 0.01 * rng.standard_normal((20, 3)))
    stat = session.statistic_function()(samples)
    out = tmp_path / "sbi.fits"
    px.export_samples(out, samples, session.model.free_parameters, stat)
    loaded = px.load_chain(out, pn_double)
    assert pn_double.AllChains.test_loaded_files() == [str(out)]
    back = read_chain_file(out)
    np.testing.assert_array_equal(back.samples, samples)
    assert back.column_names == ("nH__1", "PhoIndex__2", "norm__3") == loaded.column_names
    pn_double.AllModels(1)(1).frozen = True
    with pytest.raises(ChainFileError, match="nH__1"):
        px.load_chain(out, pn_double)


def test_pyxspec_module_is_reported_unavailable_here():
    if px.available():
        pytest.skip("PyXspec is importable here; tests/test_pyxspec_live.py covers it")
    with pytest.raises(px.PyXspecUnavailableError, match="PyXspec is not importable"):
        px.read_session()
