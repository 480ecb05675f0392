"""XSPEC's data groups: parameters per group, the grouped session, the CLI option."""
import numpy as np
import pytest

from xspec_sbi.cli import inputs as cli_inputs
from xspec_sbi.cli.errors import UsageError
from xspec_sbi.forward.simulate import simulate
from xspec_sbi.model.catalogue import ModelError
from xspec_sbi.model.evaluation import powerlaw_integral
from xspec_sbi.model.expression import Model
from xspec_sbi.model.groups import GroupedModel, free_per_group
from xspec_sbi.session import Session, SessionError

PN = "xmm_pn_ngc7793_ulx4/PN.pha"
XRT = "swift_xrt_grb110731a/grb110731a_src.pha"
EXPR = "constant*tbabs*powerlaw"
TRUE = {"TBabs.nH": 0.05, "powerlaw.PhoIndex": 2.0, "powerlaw.norm": 2e-4,
        "constant.factor[2]": 0.85}


def _cross_normalised(n_groups=2):
    return free_per_group(Model(EXPR), n_groups, ["constant.factor"])


def test_names_numbers_and_links_follow_xspec():
    g = _cross_normalised(3)
    names = [p.name for p in g.parameters]
    assert names[:4] == ["constant.factor", "TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm"]
    assert names[4:8] == ["constant.factor[2]", "TBabs.nH[2]", "powerlaw.PhoIndex[2]",
                          "powerlaw.norm[2]"]
    assert [p.index for p in g.parameters] == list(range(1, 13))      # XSPEC's global numbers
    assert g["TBabs.nH[3]"].link == "= p2" and g["powerlaw.norm[2]"].link == "= p4"
    # the constant is frozen at 1 in group 1, free in the others
    assert g["constant.factor"].frozen and g["constant.factor"].value == 1.0
    assert g.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm",
                            "constant.factor[2]", "constant.factor[3]")
    assert g.index_of("CONSTANT.FACTOR[2]") == 4 == g.index_of(5) and g.index_of("TBabs.nH[1]") == 1
    values = g.all_values([[0.3, 1.8, 1e-3, 0.9, 1.1]])[0]
    assert values.tolist() == [1.0, 0.3, 1.8, 1e-3, 0.9, 0.3, 1.8, 1e-3, 1.1, 0.3, 1.8, 1e-3]


def test_one_group_and_tied_groups_evaluate_as_the_model():
    m = Model("tbabs*(powerlaw+bbody)")
    rng = np.random.default_rng(4)
    theta = np.column_stack([rng.uniform(0.01, 1, 7), rng.uniform(1, 3, 7), rng.uniform(1e-4, 1e-2, 7),
                             rng.uniform(0.1, 2, 7), rng.uniform(1e-5, 1e-3, 7)])
    edges = np.geomspace(0.3, 10, 200)
    direct = m.evaluate(edges, theta)
    assert np.array_equal(GroupedModel(m, 1).for_group(1).evaluate(edges, theta), direct)
    tied = GroupedModel(m, 2)
    assert tied.free_names == m.free_names
    assert np.array_equal(tied.for_group(2).evaluate(edges, theta), direct)


def test_an_untied_norm_and_constant_scale_their_group_as_the_analytic_powerlaw():
    g = free_per_group(Model("constant*powerlaw"), 2, ["constant.factor", "powerlaw.norm"])
    assert g.free_names == ("powerlaw.PhoIndex", "powerlaw.norm", "constant.factor[2]",
                            "powerlaw.norm[2]")
    edges = np.geomspace(0.5, 8, 50)
    theta = np.array([[1.7, 2e-3, 0.85, 3e-3]])
    # independent of the engine's powerlaw: E^-a integrated over each bin
    shape = (edges[1:] ** -0.7 - edges[:-1] ** -0.7) / -0.7
    np.testing.assert_allclose(g.for_group(1).evaluate(edges, theta)[0], 2e-3 * shape, rtol=1e-12)
    # XSPEC's constant is single precision
    np.testing.assert_allclose(g.for_group(2).evaluate(edges, theta)[0], 0.85 * 3e-3 * shape, rtol=1e-6)
    assert np.allclose(powerlaw_integral(edges, np.array([1.7]))[0], shape, rtol=1e-12)


def test_links_within_and_across_groups_resolve_and_loops_are_refused():
    m = Model("powerlaw+powerlaw")
    g = GroupedModel(m, 2).updated("powerlaw_2.PhoIndex", link="= p1").thaw("powerlaw.norm[2]")
    g = g.updated("powerlaw_2.norm[2]", link="= 0.5*p6")     # group 2's second norm: half its first
    values = g.all_values([[2.0, 1e-3, 2e-3, 4e-3]])[0]
    assert values.tolist() == [2.0, 1e-3, 2.0, 2e-3, 2.0, 4e-3, 2.0, 2e-3]
    with pytest.raises(ModelError, match="loop"):
        GroupedModel(m, 2).updated("powerlaw.norm[2]", link="= p8").updated(
            "powerlaw_2.norm[2]", link="= p6")


def test_refusals_name_the_parameter_or_the_groups():
    g = _cross_normalised()
    with pytest.raises(ModelError, match=r"group 1's parameter"):
        free_per_group(g, 2, ["constant.factor[2]"])
    with pytest.raises(ModelError, match="at least two data groups"):
        free_per_group(Model(EXPR), 1, ["constant.factor"])
    with pytest.raises(ModelError, match="no parameter 'constant.factr'"):
        free_per_group(Model(EXPR), 2, ["constant.factr"])


@pytest.fixture(scope="module")
def files(shared_data):
    return [str(shared_data / PN), str(shared_data / XRT)]


@pytest.fixture(scope="module")
def grouped(files):
    """Spectra simulated through the PN and XRT responses, constant 0.85 in group 2."""
    from xspec_sbi.forward.simulate import fakeit_spectrum
    t = Session.from_files(files, EXPR, ignore="**-0.5 10.-** bad", backfile="none",
                           free_per_group=["constant.factor"])
    truth = t.with_model(t.model.set(**TRUE))
    rng = np.random.default_rng(5)
    # the XRT spectrum at 50 ks: ~1,100 counts beside the PN's ~7,700
    spectra = tuple(fakeit_spectrum(s, m, truth.model.free_values(), rng, exposure=e)
                    for s, m, e in zip(t.spectra, truth.spectrum_models(), (None, 5e4)))
    return Session(spectra, t.model, t.settings, groups=t.groups)


def test_session_groups_from_files(files, grouped):
    assert grouped.groups == (1, 2)
    assert grouped.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm",
                                        "constant.factor[2]")
    assert grouped.fingerprint()["groups"] == "1,2"
    assert "groups" not in Session.from_files(files[:1], EXPR).fingerprint()
    with pytest.raises(SessionError, match="none empty"):
        Session(grouped.spectra, Model(EXPR), groups=(1, 3))
    with pytest.raises(SessionError, match="give groups="):
        Session(grouped.spectra + grouped.spectra[:1], grouped.model)
    with pytest.raises(SessionError, match="free_per_group"):
        Session.from_files(files, EXPR, groups=[1, 1], free_per_group=["constant.factor"])


def test_tied_groups_give_the_numbers_of_one_group(files):
    one = Session.from_files(files, "tbabs*powerlaw", ignore="**-0.5 10.-**")
    two = Session.from_files(files, "tbabs*powerlaw", ignore="**-0.5 10.-**", groups="per-file")
    assert isinstance(two.model, GroupedModel) and not isinstance(one.model, GroupedModel)
    theta = np.array([[0.1, 2.0, 2e-4], [0.3, 1.5, 1e-4]])
    assert np.array_equal(simulate(one.simulator(), theta, seed=3), simulate(two.simulator(), theta, seed=3))
    assert np.array_equal(one.statistic_function()(theta), two.statistic_function()(theta))


def test_grouped_statistic_is_the_sum_of_each_spectrum_with_its_own_constant(grouped):
    theta = np.array([0.06, 1.9, 2.1e-4, 0.8])
    total = grouped.statistic_function()(theta)[0]
    # an independent path: each spectrum alone with a plain Model, the constant set by hand
    m = Model(EXPR).set(**{"constant.factor": 0.8}).freeze("constant.factor")
    alone = Session(grouped.spectra[1:], m, grouped.settings).statistic_function()(theta[:3])[0]
    m1 = Model(EXPR).freeze("constant.factor")
    first = Session(grouped.spectra[:1], m1, grouped.settings).statistic_function()(theta[:3])[0]
    assert total == pytest.approx(first + alone, rel=1e-12)
    assert total != pytest.approx(grouped.statistic_function()(np.r_[theta[:3], 1.0])[0], rel=1e-6)


def test_cli_group_free_builds_one_group_per_spectrum(files):
    prior = ["constant.factor[2]=uniform:0.5:1.5", "powerlaw.norm=log:1e-5:1e-3"]
    model, overrides, box = cli_inputs.model_and_prior(EXPR, [], prior, ["constant.factor"], 2)
    assert "constant.factor[2]" in box.names and "constant.factor" not in box.names
    session = cli_inputs.build_session(files, model, ignore="**-0.5 10.-**", notice=None,
                                       abund="angr", xsect="vern", respfile=None, arffile=None,
                                       backfile=None, nicer_like_arf=None)
    assert session.groups == (1, 2) and session.model.free_names[-1] == "constant.factor[2]"
    with pytest.raises(UsageError, match="at least two spectra"):
        cli_inputs.model_and_prior(EXPR, [], prior, ["constant.factor"], 1)
    with pytest.raises(UsageError, match="--group-free"):
        cli_inputs.model_and_prior(EXPR, [], [], ["constant.nope"], 2)


@pytest.mark.slow
def test_sbi_fit_and_the_chain_recover_the_cross_normalisation(grouped):
    from xspec_sbi.api import sbi_fit
    from xspec_sbi.inference.config import NPEConfig
    prior = {"TBabs.nH": ("log", 0.01, 1.0), "powerlaw.PhoIndex": ("uniform", 1.0, 3.0),
             "powerlaw.norm": ("log", 1e-5, 1e-3), "constant.factor[2]": ("uniform", 0.5, 1.5)}
    r = sbi_fit(grouped, prior=prior, restrict=None, n_simulations=1500, n_samples=2000, mcmc=True,
                seed=1, progress=False, workers=1, config=NPEConfig(max_epochs=40, patience=10),
                chain_length=2000, chain_burn=600)
    assert r.names[-1] == "constant.factor[2]"
    sbi, chain = r.samples[:, -1], r.chain.samples[:, -1]
    sd = chain.std()
    assert 0.01 < sd < 0.06                                # ~0.03 with these counts
    assert abs(np.median(chain) - 0.85) < 3 * sd           # the chain recovers the truth
    assert abs(np.median(sbi) - 0.85) < 3 * sd             # and so does SBI
    assert abs(np.median(sbi) - np.median(chain)) < 0.5 * sd
    assert 0.7 < sbi.std() / sd < 1.4
    # one folded-spectrum panel per spectrum, each through its own group's constant
    from xspec_sbi.report.spectrum import spectrum_panels
    panels = spectrum_panels(r, n_draws=50)
    assert len(panels) == 2 and "group 2" in panels[1].title


def test_cli_refuses_group_free_for_a_network_for_apply(files, tmp_path, capsys):
    from xspec_sbi.cli import main as cli_main
    code = cli_main.main(["train", *files, "--model", EXPR, "--group-free", "constant.factor",
                          "--save-network", str(tmp_path / "net"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--group-free" in err and "one spectrum" in err
    assert not (tmp_path / "net").exists()


def test_group_copies_pickle_for_worker_processes_and_label_xspec_chain_columns():
    import pickle
    from xspec_sbi.baseline.chainfile import chain_column_name
    g = _cross_normalised()
    back = pickle.loads(pickle.dumps(g.for_group(2)))
    edges = np.geomspace(0.5, 8, 20)
    theta = [[0.1, 2.0, 1e-3, 0.85]]
    assert np.array_equal(back.evaluate(edges, theta), g.for_group(2).evaluate(edges, theta))
    # XSPEC's chain file names group 2's constant "factor__5"
    assert chain_column_name("constant.factor[2]", 5) == "factor__5"


def test_a_grouped_convolution_is_folded_from_the_whole_grid():
    # folding trims the grid only for bin-local models: the group copies must say so too
    from xspec_sbi.forward.folding import trimmable
    from xspec_sbi.model.expression import Model
    from xspec_sbi.model.groups import GroupedModel
    conv = GroupedModel(Model("constant*cflux(powerlaw)"), 2)
    plain = GroupedModel(Model("constant*powerlaw"), 2)
    assert not conv.bin_local and not conv.for_group(2).bin_local
    assert plain.bin_local and plain.for_group(2).bin_local
    assert not trimmable(conv.for_group(2)) and trimmable(plain.for_group(2))
