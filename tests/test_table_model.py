"""Table models (atable, mtable, etable) against the analytic models they tabulate.

Each file is written by tests/table_model_support.py from an analytic model on
a parameter grid; the engine's table model must reproduce the analytic model
within the interpolation error computed here (or exactly, where the model is
linear in the interpolated quantity), and its energy rebinning must match an
independent bin-by-bin overlap computation.
"""
from __future__ import annotations

import numpy as np
import pytest

from table_model_support import write_table
from xspec_sbi.model.evaluation import powerlaw_integral
from xspec_sbi.model.expression import Model, ModelError
from xspec_sbi.model.table import average_values, rebin_flux
from xspec_sbi.model.table_file import read_table

# FITS "E" columns are float32: every stored value carries ~6e-8 relative rounding.
F32 = 2.0 ** -23

# float32-exact edges: the file stores ENERG_LO/HI as float32, and evaluating on
# edges 6e-8 off would move ~5e-6 of a neighbouring bin's flux into each bin.
TABLE_EDGES = np.geomspace(0.1, 20.0, 401).astype(np.float32).astype(np.float64)
GAMMA = np.round(np.arange(1.0, 3.01, 0.1), 10)        # linear (METHOD 0)
SCALE = np.geomspace(0.1, 10.0, 5)                     # logarithmic (METHOD 1)


def _pl_spectrum(edges):
    # INTPSPEC linear in ln(s) (positive on the grid): logarithmic interpolation
    # in s is exact for it.
    return lambda p: (powerlaw_integral(edges, np.array([p[0]]))[0] * (3.0 + np.log(p[1])))[None, :]


@pytest.fixture(scope="module")
def pl_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "plscale.fits"
    write_table(path, "plscale", [
        ("PhoIndex", 0, 2.0, 0.01, 1.0, 1.0, 3.0, 3.0, GAMMA),
        ("scale", 1, 1.0, 0.01, 0.1, 0.1, 10.0, 10.0, SCALE)],
        TABLE_EDGES, _pl_spectrum(TABLE_EDGES),
        # reversed row order: the reader places rows by PARAMVAL, not by position
        row_order=lambda pts: pts[::-1])
    return path


def _gamma_bound(edges, g_lo, g_hi):
    """h^2/8 max|d^2 f/dGamma^2| per bin, f the bin integral of E^-Gamma.

    d^2/dGamma^2 of the integral is the integral of ln(E)^2 E^-Gamma, bounded
    on [g_lo, g_hi] by the sum of its values at both ends (E^-Gamma is monotonic
    in Gamma at each E); the integrals by 64-point midpoint sums per bin.
    """
    h = g_hi - g_lo
    t = (np.arange(64) + 0.5) / 64
    e = edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * t[None, :]
    w = (edges[1:] - edges[:-1]) / 64
    second = [(np.log(e) ** 2 * e ** -g).sum(axis=1) * w for g in (g_lo, g_hi)]
    return h * h / 8.0 * (second[0] + second[1])


def test_atable_header_and_parameters(pl_table):
    m = Model(f"atable{{{pl_table}}}")
    assert [p.name for p in m.parameters] == ["plscale.PhoIndex", "plscale.scale", "plscale.norm"]
    p = m["plscale.PhoIndex"]
    assert (p.value, p.delta, p.min, p.bot, p.top, p.max) == (2.0, pytest.approx(0.01), 1.0, 1.0,
                                                              3.0, 3.0)
    assert m.components[0].info.kind == "add"
    t = read_table(pl_table, "atable")
    assert t.log == (False, True)
    np.testing.assert_allclose(t.grid[1], SCALE, rtol=F32)


def test_atable_interpolation_within_the_bound(pl_table):
    m = Model(f"atable{{{pl_table}}}")
    rng = np.random.default_rng(4)
    gamma = rng.uniform(1.0, 3.0, 40)
    scale = np.exp(rng.uniform(np.log(0.1), np.log(10.0), 40))
    norm = rng.uniform(0.5, 2.0, 40)
    got = m.evaluate(TABLE_EDGES, np.column_stack([gamma, scale, norm]))
    exact = powerlaw_integral(TABLE_EDGES, gamma) * (3.0 + np.log(scale))[:, None] * norm[:, None]
    for i in range(40):
        j = min(np.searchsorted(GAMMA, gamma[i], side="right") - 1, GAMMA.size - 2)
        bound = _gamma_bound(TABLE_EDGES, GAMMA[j], GAMMA[j + 1]) * (3.0 + np.log(scale[i])) \
            * norm[i] + 4 * F32 * np.abs(exact[i])
        assert np.all(np.abs(got[i] - exact[i]) <= bound), i
    # the bound is not vacuous: mid-cell errors reach a good fraction of it
    mid = np.array([[2.05, 1.0, 1.0]])
    err = np.abs(m.evaluate(TABLE_EDGES, mid)
                 - powerlaw_integral(TABLE_EDGES, np.array([2.05])) * 3)
    assert err.max() > 0.3 * _gamma_bound(TABLE_EDGES, 2.0, 2.1)[np.argmax(err)] * 3


def test_atable_on_grid_points_is_the_tabulated_spectrum(pl_table):
    m = Model(f"atable{{{pl_table}}}")
    theta = np.array([[1.7, 1.0, 1.0], [3.0, 10.0, 1.0], [1.0, 0.1, 2.0]])
    exact = powerlaw_integral(TABLE_EDGES, theta[:, 0]) * (3.0 + np.log(theta[:, 1]))[:, None] \
        * theta[:, 2:]
    np.testing.assert_allclose(m.evaluate(TABLE_EDGES, theta), exact, rtol=8 * F32)
    # outside the grid: the end point's spectrum, as XSPEC clamps
    np.testing.assert_allclose(m.evaluate(TABLE_EDGES, [[3.0, 10.0, 1.0]]),
                               m.evaluate(TABLE_EDGES, [[3.0, 30.0, 1.0]]), rtol=1e-12)


def test_log_method_matters(tmp_path):
    """The same table with METHOD 0 for scale interpolates linearly: not exact in ln(s)."""
    path = write_table(tmp_path / "lin.fits", "plscale", [
        ("PhoIndex", 0, 2.0, 0.01, 1.0, 1.0, 3.0, 3.0, GAMMA),
        ("scale", 0, 1.0, 0.01, 0.1, 0.1, 10.0, 10.0, SCALE)], TABLE_EDGES,
        _pl_spectrum(TABLE_EDGES))
    theta = np.array([[2.0, 0.5, 1.0]])
    exact = powerlaw_integral(TABLE_EDGES, np.array([2.0])) * (3.0 + np.log(0.5))
    lin = Model(f"atable{{{path}}}").evaluate(TABLE_EDGES, theta)
    lo, hi = SCALE[1], SCALE[2]
    w = (0.5 - lo) / (hi - lo)
    expected_linear = powerlaw_integral(TABLE_EDGES, np.array([2.0])) * (
        (1 - w) * (3.0 + np.log(lo)) + w * (3.0 + np.log(hi)))
    np.testing.assert_allclose(lin, expected_linear, rtol=8 * F32)
    assert np.max(np.abs(lin / exact - 1)) > 0.05


def _overlap_rebin(table_edges, flux, edges):
    """XSPEC's erebin, bin by bin: each table bin's flux times the fraction of it inside."""
    out = np.zeros(edges.size - 1)
    for i in range(edges.size - 1):
        for j in range(table_edges.size - 1):
            lo, hi = max(edges[i], table_edges[j]), min(edges[i + 1], table_edges[j + 1])
            if hi > lo:
                out[i] += flux[j] * (hi - lo) / (table_edges[j + 1] - table_edges[j])
    return out


def _overlap_average(table_edges, values, edges, outside):
    """XSPEC's eintrp, bin by bin: the fraction-weighted mean of the table bins inside."""
    out = np.empty(edges.size - 1)
    for i in range(edges.size - 1):
        num = den = 0.0
        for j in range(table_edges.size - 1):
            lo, hi = max(edges[i], table_edges[j]), min(edges[i + 1], table_edges[j + 1])
            if hi > lo:
                f = (hi - lo) / (table_edges[j + 1] - table_edges[j])
                num += f * values[j]
                den += f
        out[i] = num / den if den > 0 else (outside[0] if edges[i + 1] <= table_edges[0]
                                            else outside[1])
    return out


def test_rebinning_matches_bin_by_bin_overlaps():
    rng = np.random.default_rng(2)
    table_edges = np.sort(rng.uniform(1.0, 5.0, 30))
    flux = rng.uniform(0.0, 2.0, (2, 29))
    edges = np.concatenate([[0.5], np.sort(rng.uniform(0.8, 6.0, 40)), [7.0]])
    got = rebin_flux(table_edges, flux, edges)
    for r in range(2):
        np.testing.assert_allclose(got[r], _overlap_rebin(table_edges, flux[r], edges),
                                   rtol=1e-12, atol=1e-14)
    # an output grid covering the table keeps its total
    np.testing.assert_allclose(got.sum(axis=1), flux.sum(axis=1), rtol=1e-12)
    avg = average_values(table_edges, flux, edges, (0.3, 0.7))
    for r in range(2):
        np.testing.assert_allclose(avg[r], _overlap_average(table_edges, flux[r], edges,
                                                            (0.3, 0.7)), rtol=1e-12)


def test_atable_rebinned_onto_a_coarser_grid(pl_table):
    """Output bins wider than the table's: off only by the two partial table bins at each edge."""
    m = Model(f"atable{{{pl_table}}}")
    edges = np.linspace(0.5, 10.0, 51)
    got = m.evaluate(edges, [[2.0, 1.0, 1.0]])[0]
    exact = powerlaw_integral(edges, np.array([2.0]))[0] * 3.0
    table_flux = powerlaw_integral(TABLE_EDGES, np.array([2.0]))[0] * 3.0
    # a partial table bin's flux is misplaced by at most its flux times the
    # density's relative change across it, Gamma * dlnE
    dln = np.diff(np.log(TABLE_EDGES))
    j = np.searchsorted(TABLE_EDGES, edges, side="right") - 1
    per_edge = table_flux[j] * 2.0 * dln[j]
    bound = per_edge[:-1] + per_edge[1:] + 4 * F32 * exact
    assert np.all(np.abs(got - exact) <= bound)


def test_additional_parameter(tmp_path):
    line = np.diff(np.exp(-0.5 * ((TABLE_EDGES - 6.4) / 0.1) ** 2))    # any fixed spectrum
    path = write_table(tmp_path / "plline.fits", "plline", [
        ("PhoIndex", 0, 2.0, 0.01, 1.0, 1.0, 3.0, 3.0, GAMMA)], TABLE_EDGES,
        lambda p: np.stack([powerlaw_integral(TABLE_EDGES, np.array([p[0]]))[0], line]),
        additional=[("lnorm", 0.0, 0.01, 0.0, 0.0, 5.0, 5.0)])
    m = Model(f"atable{{{path}}}")
    assert [p.name for p in m.parameters] == ["plline.PhoIndex", "plline.lnorm", "plline.norm"]
    a = m.evaluate(TABLE_EDGES, [[1.75, 0.0, 1.0], [1.75, 0.7, 1.0], [1.75, 0.7, 3.0]])
    np.testing.assert_allclose(a[1] - a[0], 0.7 * line, rtol=1e-6, atol=1e-6 * np.abs(line).max())
    np.testing.assert_allclose(a[2], 3.0 * a[1], rtol=1e-12)


def test_atable_redshift_is_zpowerlaw(tmp_path):
    """A powerlaw table with REDSHIFT = T gives (1+z)^-Gamma times the powerlaw (zpowerlw)."""
    path = write_table(tmp_path / "zpl.fits", "zpl", [
        ("PhoIndex", 0, 2.0, 0.01, 1.0, 1.0, 3.0, 3.0, GAMMA)], TABLE_EDGES,
        lambda p: powerlaw_integral(TABLE_EDGES, np.array([p[0]])), redshift=True)
    m = Model(f"atable{{{path}}}").thaw("zpl.z")
    assert [p.name for p in m.parameters] == ["zpl.PhoIndex", "zpl.z", "zpl.norm"]
    z = 0.8
    # the output grid: the table's own, shifted to the observer: every bin maps onto one table bin
    obs = TABLE_EDGES / (1 + z)
    got = m.evaluate(obs, [[1.8, z, 1.0]])[0]
    exact = (1 + z) ** -1.8 * powerlaw_integral(obs, np.array([1.8]))[0]
    np.testing.assert_allclose(got, exact, rtol=8 * F32)
    # beyond the table's top energy / (1 + z) the additive table is zero
    assert np.all(m.evaluate(np.array([12.0, 15.0, 20.0]), [[1.8, z, 1.0]]) == 0.0)


def _sigma(e):
    return 0.5 * e ** (-8.0 / 3.0)     # an absorption-like cross-section, per unit "nH"


NH = np.round(np.linspace(0.0, 2.0, 11), 10)


def test_etable_is_exact_in_a_linear_optical_depth(tmp_path):
    centre = np.sqrt(TABLE_EDGES[1:] * TABLE_EDGES[:-1])
    path = write_table(tmp_path / "tau.fits", "tauabs", [
        ("nH", 0, 1.0, 0.01, 0.0, 0.0, 2.0, 2.0, NH)], TABLE_EDGES,
        lambda p: (p[0] * _sigma(centre))[None, :], additive=False, redshift=True)
    m = Model(f"etable{{{path}}}*powerlaw")
    assert [p.name for p in m.parameters] == ["tauabs.nH", "tauabs.z",
                                              "powerlaw.PhoIndex", "powerlaw.norm"]
    factor = Model(f"etable{{{path}}}*powerlaw").evaluate(
        TABLE_EDGES, [[0.73, 1.0, 1.0]])[0] / powerlaw_integral(TABLE_EDGES, np.array([1.0]))[0]
    # the optical depth is linear in nH, so interpolation is exact up to float32 storage
    np.testing.assert_allclose(-np.log(factor), 0.73 * _sigma(centre), rtol=8 * F32)
    # redshift: the observed bin E/(1+z) takes the table bin at E
    t = read_table(path, "etable")
    z = 0.5
    got = t.evaluate(TABLE_EDGES / (1 + z), np.array([[0.73, z]]))[0]
    np.testing.assert_allclose(-np.log(got), 0.73 * _sigma(centre), rtol=8 * F32)
    # outside the table: factor 1 (value 0)
    assert np.all(t.evaluate(np.array([30.0, 40.0]), np.array([[0.73, 0.0]])) == 1.0)


def test_mtable_interpolation_within_the_bound(tmp_path):
    centre = np.sqrt(TABLE_EDGES[1:] * TABLE_EDGES[:-1])
    path = write_table(tmp_path / "abs.fits", "myabs", [
        ("nH", 0, 1.0, 0.01, 0.0, 0.0, 2.0, 2.0, NH)], TABLE_EDGES,
        lambda p: np.exp(-p[0] * _sigma(centre))[None, :], additive=False)
    t = read_table(path, "mtable")
    nh = np.random.default_rng(8).uniform(0.0, 2.0, 25)
    got = t.evaluate(TABLE_EDGES, nh[:, None])
    s = _sigma(centre)
    for i, v in enumerate(nh):
        j = min(np.searchsorted(NH, v, side="right") - 1, NH.size - 2)
        # linear interpolation of exp(-nH s): h^2/8 s^2 exp(-nH_lo s)
        bound = (NH[j + 1] - NH[j]) ** 2 / 8 * s ** 2 * np.exp(-NH[j] * s) + 4 * F32
        assert np.all(np.abs(got[i] - np.exp(-v * s)) <= bound), i
    # outside the tabulated energies: 1, XSPEC's default for mtable
    assert np.all(t.evaluate(np.array([0.01, 0.05, 0.09]), [[1.0]]) == 1.0)
    with pytest.raises(ModelError, match="no additive component"):
        Model(f"mtable{{{path}}}")
    m = Model(f"tbabs*mtable{{{path}}}*powerlaw")
    assert [p.name for p in m.parameters][:2] == ["TBabs.nH", "myabs.nH"]


def test_expression_relative_path_and_agreement_with_powerlaw(pl_table, monkeypatch):
    """``tbabs*atable{file}`` from the working directory equals tbabs*powerlaw on grid points."""
    monkeypatch.chdir(pl_table.parent)
    m = Model("tbabs * atable{plscale.fits}")
    assert m.free_names == ("TBabs.nH", "plscale.PhoIndex", "plscale.scale", "plscale.norm")
    ref = Model("tbabs*powerlaw")
    edges = TABLE_EDGES[100:300]
    theta = np.array([[0.3, 1.7, np.e ** -2, 2.5], [0.05, 2.4, np.e ** -2, 0.1]])
    # 3 + ln(e^-2) = 1: the table is the powerlaw itself
    got = m.evaluate(edges, theta)
    np.testing.assert_allclose(got, ref.evaluate(edges, theta[:, [0, 1, 3]]), rtol=1e-5)
    # implicit multiplication as XSPEC writes it
    assert Model("tbabs(atable{plscale.fits})").free_names == m.free_names


def _good(tmp_path, **kw):
    return write_table(tmp_path / "t.fits", "bad", [
        ("PhoIndex", 0, 2.0, 0.01, 1.0, 1.0, 3.0, 3.0, GAMMA[:3])], TABLE_EDGES[:11],
        lambda p: powerlaw_integral(TABLE_EDGES[:11], np.array([p[0]])), **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(drop=["SPECTRA"]), "t.fits: no SPECTRA extension"),
    (dict(drop=["PARAMETERS"]), "t.fits: no PARAMETERS extension"),
    (dict(drop=[("ENERGIES", "ENERG_HI")]), "extension ENERGIES has no ENERG_HI column"),
    (dict(drop=[("SPECTRA", "INTPSPEC")]), "extension SPECTRA has no INTPSPEC column"),
    (dict(drop=[("PARAMETERS", "METHOD")]), "extension PARAMETERS has no METHOD column"),
    (dict(row_order=lambda pts: pts[:-1]), "SPECTRA has 2 rows, the grid 3 points"),
    (dict(row_order=lambda pts: pts + pts[:1]), "row 4 repeats a grid point"),
    (dict(extra_header={"ESCALE": True}), "ESCALE = T"),
    (dict(additive=False), "ADDMODEL = F"),
    (dict(extra_header={"LOELIMIT": 0.5}), "non-zero LOELIMIT/HIELIMIT in an additive"),
])
def test_bad_files_name_the_file_and_the_fault(tmp_path, kw, match):
    path = _good(tmp_path, **kw)
    with pytest.raises(ModelError, match=match):
        Model(f"atable{{{path}}}")


def test_missing_file_and_wrong_kind(tmp_path):
    with pytest.raises(ModelError, match="nothere.fits.*not found.*working directory"):
        Model("atable{nothere.fits}")
    path = _good(tmp_path)
    with pytest.raises(ModelError, match="ADDMODEL = T.*mtable needs ADDMODEL = F"):
        Model(f"tbabs*mtable{{{path}}}*powerlaw")
    with pytest.raises(ModelError, match="unexpected"):
        Model(f"atable{{{path}")


def test_pickled_model_evaluates_the_same(pl_table, tmp_path, monkeypatch):
    """Worker processes get the model pickled: the table travels with it, no re-read."""
    import pickle
    m = Model(f"atable{{{pl_table}}}")
    blob = pickle.dumps(m)
    monkeypatch.chdir(tmp_path)   # elsewhere, as a worker may be
    again = pickle.loads(blob)
    theta = [[1.9, 2.0, 1.5]]
    np.testing.assert_array_equal(again.evaluate(TABLE_EDGES, theta),
                                  m.evaluate(TABLE_EDGES, theta))
    # a changed parameter set-up keeps the same table object (read once per file)
    assert m.set(**{"plscale.PhoIndex": 2.5}).components[0].info.table is m.components[0].info.table


def test_mtable_outside_values_from_loelimit_hielimit(tmp_path):
    path = write_table(tmp_path / "lim.fits", "lim", [
        ("nH", 0, 1.0, 0.01, 0.0, 0.0, 2.0, 2.0, NH)], TABLE_EDGES,
        lambda p: np.full((1, TABLE_EDGES.size - 1), 0.5), additive=False,
        extra_header={"LOELIMIT": 0.25, "HIELIMIT": 0.75})
    t = read_table(path, "mtable")
    got = t.evaluate(np.array([0.01, 0.05, 1.0, 2.0, 30.0, 40.0]), [[1.0]])[0]
    np.testing.assert_allclose(got, [0.25, 0.5, 0.5, 0.5, 0.75], rtol=1e-7)
