"""XSPEC model library: model.dat, expressions, evaluation against direct calls."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.expression import Model, ModelError, component_catalog, powerlaw_integral

EDGES = np.geomspace(0.1, 20.0, 801)


def direct(symbol, params, edges=EDGES):
    return xslibrary.call_model(symbol, edges, np.asarray(params, float))


def test_model_dat_entries():
    cat = component_catalog()
    pl = cat["powerlaw"]
    assert pl.kind == "add" and pl.symbol == "C_powerLaw"
    assert pl.parameters[0][:8] == ("PhoIndex", "", 1.0, -3.0, -2.0, 9.0, 10.0, 0.01)
    # A listed function without C_ prefix maps to C_<name>.
    assert cat["bbodyrad"].symbol == "C_bbodyrad"
    assert cat["tbabs"].name == "TBabs" and cat["tbabs"].kind == "mul"
    assert len(cat) > 200


def test_parameter_names_as_pyxspec():
    m = Model("tbabs*(powerlaw+bbodyrad)")
    assert [p.name for p in m.parameters] == [
        "TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm", "bbodyrad.kT", "bbodyrad.norm"]
    assert [p.index for p in m.parameters] == [1, 2, 3, 4, 5]
    nh = m["tbabs.nh"]
    assert (nh.value, nh.min, nh.bot, nh.top, nh.max, nh.delta) == (1.0, 0.0, 0.0, 1e5, 1e6, 1e-3)
    # Repeated components carry PyXspec's _<component number> suffix.
    m2 = Model("tbabs*(po+po)")
    assert [p.name for p in m2.parameters][3:] == ["powerlaw_3.PhoIndex", "powerlaw_3.norm"]


@pytest.mark.parametrize("expr, names", [
    ("phabs(bbody+gaussian)", ["phabs", "bbody", "gaussian"]),
    ("TBABS * POWERLAW", ["TBabs", "powerlaw"]),
    ("wa po", ["wabs", "powerlaw"]),
    ("tbabs(po)", ["TBabs", "powerlaw"]),
    ("(tbabs)(powerlaw + bbodyrad)", ["TBabs", "powerlaw", "bbodyrad"]),
])
def test_expression_forms(expr, names):
    assert [c.label for c in Model(expr).components] == names


@pytest.mark.parametrize("expr, msg", [
    ("tbabs*nosuchmodel", "nosuchmodel"),
    ("tbabs+powerlaw", "multiplicative"),
    ("powerlaw*bbodyrad", "two additive"),
    ("tbabs*(powerlaw", "parentheses"),
    ("tbabs", "no additive"),
    ("pileup*powerlaw", "pileup"),
    ("powerlaw*cflux", "nothing to its right"),
    ("tbabs*powerlaw$", "unexpected"),
    ("", "empty"),
])
def test_bad_expressions(expr, msg):
    with pytest.raises(ModelError, match=msg):
        Model(expr)


def test_evaluation_matches_direct_calls():
    m = Model("tbabs*(powerlaw+bbodyrad)")
    rng = np.random.default_rng(3)
    theta = np.column_stack([rng.uniform(0.0, 2.0, 6), rng.uniform(-1, 4, 6),
                             rng.uniform(0.01, 10, 6), rng.uniform(0.1, 3, 6),
                             rng.uniform(1, 1e4, 6)])
    got = m.evaluate(EDGES, theta)
    for t, row in zip(theta, got):
        want = direct("C_tbabs", t[:1]) * (direct("C_powerLaw", t[1:2]) * t[2]
                                           + direct("C_bbodyrad", t[3:4]) * t[4])
        np.testing.assert_allclose(row, want, rtol=1e-11, atol=0)



@pytest.mark.parametrize("expr, frozen", [
    ("tbabs*(powerlaw+bbodyrad)", {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 1.7}),   # Table 1, set-up 3
    ("tbabs*powerlaw", {"TBabs.nH": 0.3, "powerlaw.PhoIndex": 2.0}),              # only the norm free
    ("phabs*bbodyrad", {"phabs.nH": 0.5}),                                         # Fortran absorber
])
def test_frozen_components_computed_once_give_the_rows_of_one_by_one(expr, frozen):
    # A component whose parameters are the same in every row is computed once and
    # broadcast: the batch must equal the rows evaluated one at a time, bit for bit,
    # with draws repeated in the batch (the unique-rows path) and all distinct.
    m = Model(expr).set(**frozen).freeze(*frozen)
    rng = np.random.default_rng(7)
    n_free = len(m.free_names)
    theta = rng.uniform(0.2, 3.0, (9, n_free))
    theta[4] = theta[1]
    batch = m.evaluate(EDGES, theta)
    assert batch.shape == (9, EDGES.size - 1) and batch.flags.writeable
    one_by_one = np.vstack([m.evaluate(EDGES, t[None]) for t in theta])
    np.testing.assert_array_equal(batch, one_by_one)
    distinct = np.delete(theta, 4, axis=0)
    np.testing.assert_array_equal(m.evaluate(EDGES, distinct), np.delete(one_by_one, 4, axis=0))


def test_phabs_gaussian_and_frozen_values():
    m = Model("phabs(bbody+gaussian)").set(**{"gaussian.LineE": 6.4}).freeze("gaussian.LineE")
    assert "gaussian.LineE" not in m.free_names
    theta = [[0.5, 1.2, 2.0, 0.05, 3.0]]
    got = m.evaluate(EDGES, theta)[0]
    want = direct("C_phabs", [0.5]) * (direct("C_bbody", [1.2]) * 2.0
                                       + direct("C_gaussianLine", [6.4, 0.05]) * 3.0)
    # phabs is single precision: its own rounding grows with the optical depth
    tau = -np.log(direct("C_phabs", [0.5]))
    keep = want > 1e-30 * want.max()
    assert np.all(np.abs(got[keep] / want[keep] - 1) <= 1e-6 * (1 + tau[keep]))


@pytest.mark.parametrize("index", [-1.5, 0.0, 0.7, 1.0, 1.0 + 1e-12, 1.0 + 1e-6, 1.7, 3.3])
def test_powerlaw_closed_form(index):
    ours = powerlaw_integral(EDGES, np.array([index]))[0]
    # Near index 1 both closed forms lose digits to cancellation.
    np.testing.assert_allclose(ours, direct("C_powerLaw", [index]),
                               rtol=1e-7 if abs(index - 1) < 1e-4 else 1e-11)
    # and the analytic bin integral of E^-index, computed independently
    if abs(index - 1) > 1e-3:
        lo, hi = EDGES[:-1], EDGES[1:]
        analytic = (hi ** (1 - index) - lo ** (1 - index)) / (1 - index)
    else:
        analytic = np.log(EDGES[1:] / EDGES[:-1]) * (1 + 0 * index)
    np.testing.assert_allclose(ours, analytic, rtol=1e-5 if abs(index - 1) < 1e-3 else 1e-10)


# tbabs computes in double precision; phabs and wabs in single precision, so
# the identity f(nH) = f(1)^nH can only hold to their rounding there.
@pytest.mark.parametrize("name, symbol, rtol", [("tbabs", "C_tbabs", 1e-12),
                                                ("phabs", "C_phabs", 1e-6),
                                                ("wabs", "C_wabs", 1e-6)])
def test_absorber_power_identity(name, symbol, rtol):
    m = Model(f"{name}*powerlaw").freeze("powerlaw.PhoIndex", "powerlaw.norm")
    nh = np.array([0.0, 1e-3, 0.2, 0.5, 1.0, 7.5])
    got = m.evaluate(EDGES, nh[:, None])
    for v, row in zip(nh, got):
        want = direct(symbol, [v]) * direct("C_powerLaw", [1.0])
        keep = want > 1e-30 * want.max()   # below that both are numerically zero
        tau = -np.log(direct(symbol, [v]))[keep]
        assert np.all(np.abs(row[keep] / want[keep] - 1) <= rtol * (1 + tau))
        assert np.all(row[~keep] <= 1e-25 * want.max())


def test_links():
    m = Model("tbabs*(po+po)")
    params = list(m.parameters)
    from dataclasses import replace
    params[3] = replace(params[3], link="= 2*p2")   # powerlaw_3.PhoIndex = 2 * powerlaw.PhoIndex
    ml = Model("tbabs*(po+po)", params)
    assert "powerlaw_3.PhoIndex" not in ml.free_names
    vals = ml.all_values([[0.1, 1.5, 1.0, 2.0]])
    assert vals[0, 3] == 3.0
    params[3] = replace(params[3], link="= p9")
    with pytest.raises(ModelError, match="powerlaw_3.PhoIndex"):
        Model("tbabs*(po+po)", params)


def test_wrong_theta_width_names_parameters():
    with pytest.raises(ModelError, match="TBabs.nH"):
        Model("tbabs*powerlaw").evaluate(EDGES, [[1.0, 2.0]])
    with pytest.raises(ModelError, match="hard limits"):
        Model("tbabs*powerlaw").set(**{"TBabs.nH": -1})


def test_abundance_table_changes_tbabs_and_is_restored():
    before = xslibrary.current_settings()
    try:
        xslibrary.configure(xslibrary.XspecSettings("angr", "vern"))
        a = direct("C_tbabs", [1.0])
        xslibrary.configure(xslibrary.XspecSettings("wilm", "vern"))
        assert xslibrary.current_settings().abund == "wilm"
        w = direct("C_tbabs", [1.0])
        # wilm has fewer metals than angr: less absorption above the O edge
        assert np.all(w[EDGES[:-1] > 1.0] >= a[EDGES[:-1] > 1.0]) and not np.allclose(w, a)
        # the cached unit absorber follows the setting
        m = Model("tbabs*powerlaw").freeze("powerlaw.PhoIndex", "powerlaw.norm")
        np.testing.assert_allclose(m.evaluate(EDGES, [[1.0]])[0], w * direct("C_powerLaw", [1.0]))
        with pytest.raises(xslibrary.XspecLibraryError, match="nonsense"):
            xslibrary.configure(xslibrary.XspecSettings("nonsense", "vern"))
    finally:
        xslibrary.configure(before)


def test_missing_data_models_are_refused():
    with pytest.raises(xslibrary.ModelUnavailableError, match="apec"):
        Model("tbabs*apec").probe()
    Model("tbabs*(powerlaw+bbodyrad)").probe()  # usable models pass


def test_headas_without_spectral_tree_is_refused(tmp_path):
    lib_dir = Path(xslibrary.library().headas) / "lib"
    (tmp_path / "lib").symlink_to(lib_dir)
    env = dict(os.environ, HEADAS=str(tmp_path))
    code = ("from xspec_sbi.model import library as xslibrary\n"
            "try:\n    xslibrary.library()\nexcept xslibrary.XspecLibraryError as e:\n"
            "    print('REFUSED', e)\nelse:\n    print('ACCEPTED')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert "REFUSED" in out.stdout, out.stdout + out.stderr
    assert "abundance" in out.stdout


@pytest.mark.parametrize("function, low, high, n_par", [
    ("xsbbrd", 0.1, 4.5, 1),          # Fortran single (XSPEC's bbodyrad)
    ("C_tbabs", 0.0, 3.0, 1),         # C++
    ("C_gaussianLine", 0.5, 8.0, 2),  # C++, two parameters
    ("xsphab", 0.0, 3.0, 1),          # Fortran single absorber
])
def test_model_rows_equal_one_call_per_row(function, low, high, n_par):
    # The batch caller makes its buffers once; each row must keep the bits of its own call.
    rows = np.random.default_rng(11).uniform(low, high, (7, n_par))
    rows[:, 1:] = rows[:, 1:] / 10        # the line's width, keV
    got = xslibrary.call_model_rows(function, EDGES, rows)
    want = np.vstack([direct(function, r) for r in rows])
    assert got.shape == (7, EDGES.size - 1)
    np.testing.assert_array_equal(got, want)
    assert xslibrary.call_model_rows(function, EDGES, rows[:0]).shape == (0, EDGES.size - 1)
