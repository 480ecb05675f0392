"""Convolution (``con``) components in the engine: XSPEC's algebra, and each model
against an analytic expectation.

The references are independent of the library: a powerlaw's closed-form bin
integrals and energy flux, the shift identity of a redshifted powerlaw, the
moments of a Gaussian smoothing, photon conservation of Comptonization.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.convolution import (MAX_EXTRA_BINS, STEP_QUANTUM, extended_grid,
                                         grid_extension)
from xspec_sbi.model.evaluation import powerlaw_integral
from xspec_sbi.model.expression import Model, ModelError

KEV_TO_ERG = 1.602176634e-9


# --- the algebra ---------------------------------------------------------------

@pytest.mark.parametrize("expression, tree", [
    # XSPEC manual, cflux: the convolution acts on everything to its right in its product
    ("cflux*phabs*(powerlaw+gaussian)", ("conv", 0, ("*", [("c", 1), ("+", [("c", 2), ("c", 3)])]))),
    ("phabs*cflux*(powerlaw+gaussian)", ("*", [("c", 0), ("conv", 1, ("+", [("c", 2), ("c", 3)]))])),
    ("phabs*(powerlaw+cflux*gaussian)", ("*", [("c", 0), ("+", [("c", 1), ("conv", 2, ("c", 3))])])),
    ("tbabs*cflux(powerlaw)", ("*", [("c", 0), ("conv", 1, ("c", 2))])),
    ("cflux(zashift(powerlaw))", ("conv", 0, ("conv", 1, ("c", 2)))),
])
def test_a_convolution_acts_on_the_factors_to_its_right(expression, tree):
    assert Model(expression)._tree == tree


def test_convolution_parameters_have_xspec_names_and_no_norm():
    m = Model("tbabs*cflux(powerlaw)")
    assert [p.name for p in m.parameters] == [
        "TBabs.nH", "cflux.Emin", "cflux.Emax", "cflux.lg10Flux", "powerlaw.PhoIndex",
        "powerlaw.norm"]
    # model.dat's negative deltas: the band is frozen, as in XSPEC
    assert m.free_names == ("TBabs.nH", "cflux.lg10Flux", "powerlaw.PhoIndex", "powerlaw.norm")
    assert Model("zmshift*phabs*powerlaw").components[0].n_parameters == 1


@pytest.mark.parametrize("expression", ["powerlaw*cflux", "cflux+powerlaw", "(cflux)*powerlaw"])
def test_a_convolution_with_nothing_to_act_on_is_refused(expression):
    with pytest.raises(ModelError, match="cflux.*nothing to its right"):
        Model(expression)


def test_a_convolution_of_a_factor_alone_is_not_a_model():
    with pytest.raises(ModelError, match="no additive component"):
        Model("zmshift(phabs)")


# --- cflux -------------------------------------------------------------------------

def _powerlaw_energy_flux(norm, index, e1, e2):
    """Energy flux of ``norm E^-index`` over e1-e2 keV, erg cm^-2 s^-1 (analytic)."""
    s = 2.0 - index
    return norm * (e2 ** s - e1 ** s) / s * KEV_TO_ERG


def test_cflux_sets_the_energy_flux_over_its_band_whatever_the_norm():
    edges = np.geomspace(0.1, 20.0, 2001)
    m = Model("cflux(powerlaw)").set(**{"cflux.Emin": 2.0, "cflux.Emax": 8.0})
    theta = np.array([[-11.0, 1.7, 1.0], [-11.0, 1.7, 1234.0], [-12.5, 2.3, 1e-3]])
    flux = m.evaluate(edges, theta)
    for (lg10, index, _), row in zip(theta, flux):
        shape = powerlaw_integral(edges, np.array([index]))[0]
        norm = row / shape            # the scaled powerlaw: one norm in every bin
        np.testing.assert_allclose(norm, norm[0], rtol=1e-12)
        # XSPEC integrates bin by bin; the analytic flux agrees to its discretisation
        assert abs(_powerlaw_energy_flux(norm[0], index, 2.0, 8.0) / 10 ** lg10 - 1) < 2e-5
    # the inner norm is irrelevant: the same spectrum for norms 1 and 1234
    np.testing.assert_allclose(flux[0], flux[1], rtol=1e-12)


def test_cflux_inside_an_absorber_gives_the_unabsorbed_flux():
    edges = np.geomspace(0.3, 12.0, 801)
    absorbed = Model("tbabs*cflux(powerlaw)").evaluate(edges, [[0.5, -11.0, 2.0, 1.0]])
    unabsorbed = Model("cflux(powerlaw)").evaluate(edges, [[-11.0, 2.0, 1.0]])
    tbabs = Model("tbabs*powerlaw").evaluate(edges, [[0.5, 0.0, 1.0]]) / (edges[1:] - edges[:-1])
    np.testing.assert_allclose(absorbed, tbabs * unabsorbed, rtol=1e-12)


# --- zashift -------------------------------------------------------------------------

def test_zashift_of_a_powerlaw_is_the_powerlaw_scaled_by_one_plus_z_to_minus_index():
    # Output bin [E1, E2] holds the source-frame photons of [E1(1+z), E2(1+z)] over
    # (1+z) (time dilation): K/(1+z) * PL(E1(1+z), E2(1+z)) = K (1+z)^-a PL(E1, E2).
    edges = np.geomspace(0.3, 10.0, 1001)
    m = Model("zashift(powerlaw)").thaw("zashift.Redshift")
    theta = np.array([[0.5, 1.7, 1.0], [2.0, 2.2, 3.0], [-0.3, 1.5, 2.0], [0.0, 1.9, 1.0]])
    flux = m.evaluate(edges, theta)
    for (z, index, norm), row in zip(theta, flux):
        expected = norm * (1 + z) ** -index * powerlaw_integral(edges, np.array([index]))[0]
        # up to the last bin: the grid is extended to (1 + z) times its top energy
        np.testing.assert_allclose(row, expected, rtol=2e-5)


def test_without_the_extension_xspecs_zashift_empties_the_top_bins():
    edges = np.geomspace(0.3, 10.0, 1001)
    pl = powerlaw_integral(edges, np.array([1.7]))[0]
    raw = xslibrary.call_model("C_zashift", edges, np.array([0.5]), flux=pl)
    top = edges[:-1] * 1.5 >= 10.0        # bins wholly beyond the grid in the source frame
    assert np.all(raw[top] == 0.0) and top.sum() > 100


def test_a_rows_result_does_not_depend_on_the_rest_of_its_batch():
    edges = np.geomspace(0.3, 10.0, 401)
    m = Model("zashift(powerlaw)").thaw("zashift.Redshift")
    alone = m.evaluate(edges, [[0.2, 1.8, 1.0]])
    batch = m.evaluate(edges, [[3.0, 1.8, 1.0], [0.2, 1.8, 1.0], [-0.5, 1.8, 1.0]])
    assert np.array_equal(alone[0], batch[1])


def test_repeated_rows_give_the_same_values():
    edges = np.geomspace(0.3, 10.0, 401)
    m = Model("tbabs*zashift(powerlaw)").thaw("zashift.Redshift")
    flux = m.evaluate(edges, [[0.1, 0.3, 2.0, 1.0]] * 3)
    assert np.array_equal(flux[0], flux[2])


# --- gsmooth -----------------------------------------------------------------------------

def _line(center, sigma_line, sig6, edges):
    m = Model("gsmooth(gaussian)").set(**{"gsmooth.Sig_6keV": sig6})
    return m.evaluate(edges, [[sig6, center, sigma_line, 1.0]])[0]


def test_gsmooth_keeps_a_lines_flux_and_adds_its_width_in_quadrature():
    edges = np.linspace(3.0, 9.0, 3001)            # uniform bins, as gsmooth asks
    mid, width = 0.5 * (edges[1:] + edges[:-1]), edges[1] - edges[0]
    out = _line(6.0, 1e-3, 0.15, edges)
    assert abs(out.sum() - 1.0) < 1e-6             # norm 1: photons cm^-2 s^-1
    mean = (out * mid).sum() / out.sum()
    var = (out * (mid - mean) ** 2).sum() / out.sum()
    # Sigma(6 keV) = 0.15 keV (Index 0), plus the line's own width and binning
    assert abs(mean - 6.0) < 1e-4
    assert abs(var / (0.15 ** 2 + 1e-3 ** 2 + width ** 2 / 12) - 1) < 2e-3


def _above(energy, center, sigma):
    """Fraction of a Gaussian (center, sigma keV) above ``energy`` keV."""
    return 0.5 * math.erfc((energy - center) / (sigma * math.sqrt(2.0)))


def test_gsmooth_brings_in_the_wing_of_a_line_beyond_the_grid():
    # A line at 0.95 keV, 0.05 keV below the grid's start, smoothed by 0.05 keV: the
    # part above 1 keV belongs in the spectrum; only an extended grid has the line.
    edges = np.linspace(1.0, 5.0, 1601)
    out = _line(0.95, 1e-3, 0.05, edges)
    np.testing.assert_allclose(out.sum(), _above(1.0, 0.95, 0.05), rtol=2e-3)
    # on the grid as given, XSPEC's gsmooth has nothing to smooth
    inner = Model("gaussian").evaluate(edges, [[0.95, 1e-3, 1.0]])[0]
    raw = xslibrary.call_model("C_gsmooth", edges, np.array([0.05, 0.0]), flux=inner)
    assert raw.sum() < 1e-12
    # and inside the grid nothing is renormalised at the edge: 1.05 keV keeps its upper part
    np.testing.assert_allclose(_line(1.05, 1e-3, 0.05, edges).sum(),
                               _above(1.0, 1.05, 0.05), rtol=2e-3)
    # the top end: a line 2 widths above the grid's end sends its lower wing in
    # (2.3 % of it; XSPEC's discretised kernel is good to a few 1e-3 that far out)
    np.testing.assert_allclose(_line(5.1, 1e-3, 0.05, edges).sum(),
                               1.0 - _above(5.0, 5.1, 0.05), rtol=5e-3)


def test_gsmooth_is_not_extended_below_where_its_kernel_is_broad():
    # 6 widths of 0.2 keV below a 1 keV start would reach 0 keV: the grid is kept
    edges = np.linspace(1.0, 5.0, 401)
    below, above = grid_extension("gsmooth", edges, np.array([[0.2, 0.0], [0.05, 0.0]]))
    assert below[0] == 0 and below[1] > 0 and above[0] > above[1] > 0


# --- photon-conserving Comptonization ------------------------------------------------------

@pytest.mark.parametrize("expression, values", [
    ("simpl(gaussian)", {"simpl.Gamma": 2.3, "simpl.FracSctr": 0.3, "simpl.UpScOnly": 1.0}),
    ("thcomp(gaussian)", {"thcomp.Gamma_tau": 1.7, "thcomp.kT_e": 50.0, "thcomp.cov_frac": 1.0}),
])
def test_comptonization_conserves_photons(expression, values):
    # a 1 keV line on a grid wide enough for the scattered tail (0.01-1000 keV)
    edges = np.geomspace(0.01, 1000.0, 4001)
    m = Model(expression).set(**values)
    n_con = m.components[0].n_parameters
    theta = m.free_values()
    theta[-3:] = [1.0, 0.01, 1.0]          # gaussian LineE, Sigma, norm
    out = m.evaluate(edges, theta[None, :])[0]
    line = Model("gaussian").evaluate(edges, [[1.0, 0.01, 1.0]])[0]
    assert n_con == len(m.components[0].info.parameters)
    assert not np.allclose(out, line)                    # photons did move
    assert abs(out.sum() / line.sum() - 1) < 1e-4        # none was made or lost


# --- the grid extension --------------------------------------------------------------------

def test_the_extension_continues_the_end_ratios_and_nests():
    edges = np.geomspace(0.5, 10.0, 201)
    long, short = extended_grid(edges, 128, 192), extended_grid(edges, 64, 64)
    ratios = long[1:] / long[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    # the shorter extension is a slice of the longer one, bin for bin
    np.testing.assert_allclose(long[64:64 + short.size], short, rtol=1e-15)
    below, above = grid_extension("zashift", edges, np.array([[0.5], [0.0], [-0.2]]))
    assert list(below % STEP_QUANTUM) == [0, 0, 0] and list(above % STEP_QUANTUM) == [0, 0, 0]
    assert below[0] == below[1] == 0 and below[2] > 0 and above[0] > 0 and above[1] == above[2] == 0
    grid = extended_grid(edges, 0, int(above[0]))
    assert grid[-1] >= 10.0 * 1.5 and grid[-1 - STEP_QUANTUM] < 10.0 * 1.5


def test_an_extension_past_its_limit_is_refused_naming_the_component():
    edges = np.linspace(1.0, 10.0, 9001)       # 1 eV bins
    with pytest.raises(ModelError, match="zashift.*more than"):
        grid_extension("zashift", edges, np.array([[1e12]]))
    assert MAX_EXTRA_BINS >= 10_000


# --- folding ------------------------------------------------------------------------------------

def test_a_convolution_is_folded_from_the_whole_response_grid():
    # Trimming the grid to the energies that reach a noticed channel is exact bin by
    # bin, not for a convolution: simpl(powerlaw) at 0.3 keV holds photons scattered up
    # from lower energies, so XSPEC's whole response grid is kept (as XSPEC folds).
    from xspec_sbi.forward.folding import Folder, trimmable
    from xspec_sbi.presets.nicer import reference_spectrum
    spectrum = reference_spectrum(2000.0)
    full = np.asarray(spectrum.response.energy_edges)
    assert trimmable(Model("tbabs*powerlaw")) and not trimmable(Model("tbabs*simpl(powerlaw)"))
    assert Folder(spectrum, Model("tbabs*powerlaw")).transfer.energy_edges.size < full.size
    np.testing.assert_array_equal(
        Folder(spectrum, Model("tbabs*simpl(powerlaw)")).transfer.energy_edges, full)


def test_nested_redshifts_compose_and_their_extensions_add():
    from xspec_sbi.model.evaluation import Evaluator
    edges = np.geomspace(0.3, 10.0, 601)
    m = Model("zashift(zashift(powerlaw))").thaw("zashift.Redshift", "zashift_2.Redshift")
    theta = np.array([[0.5, 1.0, 1.8, 1.0]])
    expected = (1.5 * 2.0) ** -1.8 * powerlaw_integral(edges, np.array([1.8]))[0]
    np.testing.assert_allclose(m.evaluate(edges, theta)[0], expected, rtol=2e-5)
    below, above = Evaluator(m, edges).extension(m.all_values(theta))
    top = extended_grid(edges, 0, above)[-1]
    assert below == 0 and 10.0 * 3.0 <= top < 10.0 * 3.0 * (edges[-1] / edges[-2]) ** (2 * STEP_QUANTUM)
