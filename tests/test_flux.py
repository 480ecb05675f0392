"""Fluxes and luminosities (model/flux.py, model/cosmology.py) against closed forms and quadrature.

References independent of the code under test: the powerlaw's band integrals
in closed form, XSPEC's integration kernel worked by hand on a three-bin grid,
scipy's adaptive quadrature of the luminosity-distance integrals, and the
analytic distances of an empty and an Einstein-de Sitter universe.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from scipy.integrate import quad

from xspec_sbi.model.cosmology import C_KM_S, MPC_CM, Cosmology, CosmologyError
from xspec_sbi.model.expression import Model
from xspec_sbi.model.flux import (KEV_TO_ERG, FluxError, FluxRequest, Interval, absorber_labels,
                                  band_fluxes, band_weights, flux_summaries, flux_summary,
                                  lumin_summary)

LOG_GRID = np.geomspace(0.1, 100.0, 20001)      # 0.1-100 keV, 20000 log bins


def _analytic_photon(index, lo, hi):
    """int_lo^hi E^-index dE, photons cm^-2 s^-1 for norm 1."""
    return np.log(hi / lo) if index == 1 else (hi ** (1 - index) - lo ** (1 - index)) / (1 - index)


def _analytic_energy(index, lo, hi):
    """int_lo^hi E^(1-index) dE, keV cm^-2 s^-1 for norm 1."""
    return np.log(hi / lo) if index == 2 else (hi ** (2 - index) - lo ** (2 - index)) / (2 - index)


@pytest.mark.parametrize("index", [1.0, 1.5, 2.0, 2.7])
def test_powerlaw_flux_is_the_analytic_integral(index):
    """Photon and energy flux of a powerlaw (index 1 and 2 are the logarithmic cases)."""
    norm = 3e-3
    photon, energy = band_fluxes(Model("powerlaw"), LOG_GRID, [[index, norm]],
                                 [(0.5, 2.0), (2.0, 10.0), (0.3, 7.77)])
    for j, (lo, hi) in enumerate([(0.5, 2.0), (2.0, 10.0), (0.3, 7.77)]):
        # flat density inside a bin: an error of order (bin width / E)^2 / 12 ~ 1e-8 here
        assert photon[0, j] == pytest.approx(norm * _analytic_photon(index, lo, hi), rel=1e-7)
        assert energy[0, j] == pytest.approx(norm * _analytic_energy(index, lo, hi) * KEV_TO_ERG,
                                             rel=1e-7)


def test_photon_flux_is_exact_on_grid_edges_even_on_a_coarse_grid():
    """With the band on bin edges the photon flux is a sum of exact bin integrals."""
    edges = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    photon, energy = band_fluxes(Model("powerlaw"), edges, [[1.7, 1.0]], [(1.0, 8.0)])
    assert photon[0, 0] == pytest.approx(_analytic_photon(1.7, 1.0, 8.0), rel=1e-13)
    # the energy flux weights each bin by its mean energy: above the truth for a falling spectrum
    assert energy[0, 0] > _analytic_energy(1.7, 1.0, 8.0) * KEV_TO_ERG


def test_a_grid_from_0_kev_leaves_bands_above_it_finite():
    """A powerlaw is infinite in a bin starting at 0 keV; a band above it does not see that bin."""
    edges = np.concatenate([[0.0], np.geomspace(0.1, 10.0, 2001)])
    with np.errstate(divide="ignore", invalid="ignore"):
        photon, energy = band_fluxes(Model("powerlaw"), edges, [[2.0, 1.0]], [(0.5, 2.0)])
    assert photon[0, 0] == pytest.approx(_analytic_photon(2.0, 0.5, 2.0), rel=1e-6)
    assert np.isfinite(energy[0, 0])


def test_partial_bins_follow_xspecs_integration_kernel():
    """XSPEC's kernel by hand: bins [1,2] and [2,4] with 6 and 10 photons, band 1.5-3 keV."""
    edges = np.array([1.0, 2.0, 4.0])
    photon_w, energy_w, covered = band_weights(edges, 1.5, 3.0)
    f = np.array([6.0, 10.0])
    assert covered == (1.5, 3.0)
    assert f @ photon_w == pytest.approx(6 * 0.5 / 1 + 10 * 1.0 / 2)
    # the overlap [a, b] of a bin of width w holds f (b^2 - a^2) / (2 w) keV
    assert f @ energy_w == pytest.approx(6 * (4 - 2.25) / 2 + 10 * (9 - 4) / 4)


def test_a_band_beyond_the_grid_is_cut_with_a_warning_and_one_outside_is_refused(caplog):
    m = Model("powerlaw")
    edges = np.geomspace(0.3, 10.0, 2001)
    with caplog.at_level(logging.WARNING, logger="xspec_sbi"):
        f = flux_summary(m, edges, [[2.0, 1.0]] * 3, 0.1, 2.0)
    assert f.covered == (0.3, 2.0)
    assert "0.3-2 keV only" in caplog.text
    assert f.photon.median == pytest.approx(_analytic_photon(2.0, 0.3, 2.0), rel=1e-7)
    with pytest.raises(FluxError, match="outside the model's energy grid"):
        flux_summary(m, edges, [[2.0, 1.0]], 20.0, 50.0)
    with pytest.raises(FluxError, match="2-0.5 keV: needs 0 <= low < high"):
        flux_summary(m, edges, [[2.0, 1.0]], 2.0, 0.5)


def test_zpowerlw_through_the_library_at_z0_matches_the_analytic_powerlaw():
    """A library call (not the engine's closed form) gives the same band flux."""
    photon, energy = band_fluxes(Model("zpowerlw"), LOG_GRID, [[1.8, 2e-2]], [(0.5, 2.0)])
    assert photon[0, 0] == pytest.approx(2e-2 * _analytic_photon(1.8, 0.5, 2.0), rel=1e-6)
    assert energy[0, 0] == pytest.approx(2e-2 * _analytic_energy(1.8, 0.5, 2.0) * KEV_TO_ERG, rel=1e-6)


def test_unabsorbed_flux_of_tbabs_powerlaw_is_the_powerlaws():
    rng = np.random.default_rng(3)
    pl = np.column_stack([rng.uniform(1.2, 2.8, 40), rng.uniform(1e-3, 1e-1, 40)])
    nh = rng.uniform(0.05, 3.0, 40)
    m = Model("tbabs*powerlaw")
    assert absorber_labels(m) == ("TBabs",)
    bands = [(0.5, 2.0), (2.0, 10.0)]
    ph_abs, en_abs = band_fluxes(m, LOG_GRID, np.column_stack([nh, pl]), bands)
    ph_un, en_un = band_fluxes(m, LOG_GRID, np.column_stack([nh, pl]), bands, ("TBabs",))
    ph_pl, en_pl = band_fluxes(Model("powerlaw"), LOG_GRID, pl, bands)
    np.testing.assert_allclose(ph_un, ph_pl, rtol=1e-13)
    np.testing.assert_allclose(en_un, en_pl, rtol=1e-13)
    assert np.all(en_abs < en_un) and np.all(ph_abs < ph_un)
    # more absorbed at 0.5-2 keV than at 2-10 keV, as photoelectric absorption falls with energy
    assert np.all(en_abs[:, 0] / en_un[:, 0] < en_abs[:, 1] / en_un[:, 1])


def test_absorbers_are_the_line_of_sight_ones_not_every_multiplicative_component():
    m = Model("constant*tbabs*highecut*ztbabs*(powerlaw+gaussian)")
    assert absorber_labels(m) == ("TBabs", "zTBabs")
    assert absorber_labels(m, ["highecut", "tbabs"]) == ("highecut", "TBabs")
    with pytest.raises(FluxError, match="'bbody' is not a component"):
        absorber_labels(m, ["bbody"])
    with pytest.raises(FluxError, match="powerlaw is 'add', not multiplicative"):
        absorber_labels(m, ["powerlaw"])


# -- cosmology --------------------------------------------------------------------------------
def _quad_distance(z, om, ol):
    """D_L / (c/H0) by scipy's quad, for any curvature (Omega_k = 1 - om - ol)."""
    ok = 1.0 - om - ol
    dc = quad(lambda x: 1.0 / np.sqrt(om * (1 + x) ** 3 + ok * (1 + x) ** 2 + ol), 0, z,
              epsabs=0, epsrel=1e-13, limit=200)[0]
    if abs(ok) < 1e-15:
        return (1 + z) * dc
    k = np.sqrt(abs(ok))
    return (1 + z) * (np.sinh(k * dc) if ok > 0 else np.sin(k * dc)) / k


@pytest.mark.parametrize("z", [1e-3, 0.05, 0.3, 1.0, 3.0, 10.0, 20.0])
def test_flat_luminosity_distance_is_the_integral(z):
    cosmo = Cosmology()                          # XSPEC's default cosmo 70 0 0.73
    expected = _quad_distance(z, 0.27, 0.73) * C_KM_S / 70.0 * MPC_CM
    assert cosmo.luminosity_distance(z) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("q0", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("z", [1e-6, 0.1, 2.0, 8.0])
def test_matter_only_luminosity_distance_is_the_integral(q0, z):
    """lambda0 = 0: Mattig's form against quadrature; Omega_matter = 2 q0, curvature 1 - 2 q0."""
    cosmo = Cosmology(H0=50.0, q0=q0, lambda0=0.0)
    expected = _quad_distance(z, 2 * q0, 0.0) * C_KM_S / 50.0 * MPC_CM
    assert cosmo.luminosity_distance(z) == pytest.approx(expected, rel=1e-11)


def test_closed_forms_of_empty_and_einstein_de_sitter_universes():
    z = np.array([0.1, 1.0, 4.0])
    dh = C_KM_S / 70.0 * MPC_CM
    np.testing.assert_allclose(Cosmology(70, 0, 0).luminosity_distance(z), dh * z * (1 + z / 2), rtol=1e-14)
    np.testing.assert_allclose(Cosmology(70, 0.5, 0).luminosity_distance(z),
                               dh * 2 * (1 + z) * (1 - 1 / np.sqrt(1 + z)), rtol=1e-13)


def test_a_megaparsec_and_bad_cosmologies():
    assert MPC_CM == pytest.approx(3.0856775814913673e24, rel=1e-15)
    for kw, msg in [(dict(H0=0), "H0=0"), (dict(lambda0=1.0), "lambda0=1.0"),
                    (dict(q0=-0.1, lambda0=0.0), "q0=-0.1")]:
        with pytest.raises(CosmologyError, match=msg):
            Cosmology(**kw)
    with pytest.raises(CosmologyError, match="redshift"):
        Cosmology().luminosity_distance(-0.1)


def test_luminosity_of_a_powerlaw_against_an_independent_distance():
    """L = 4 pi D_L^2 x the observed flux over the redshifted band, D_L by quad."""
    z, lo, hi = 0.4, 2.0, 10.0
    samples = np.array([[1.9, 1e-3], [2.0, 2e-3], [2.1, 3e-3]])
    lum = lumin_summary(Model("powerlaw"), LOG_GRID, samples, lo, hi, z)
    d = _quad_distance(z, 0.27, 0.73) * C_KM_S / 70.0 * MPC_CM
    expected = [4 * np.pi * d ** 2 * n * _analytic_energy(g, lo / (1 + z), hi / (1 + z)) * KEV_TO_ERG
                for g, n in samples]
    np.testing.assert_allclose(lum.draws, expected, rtol=1e-7)
    assert lum.distance == pytest.approx(d, rel=1e-12)
    assert lum.covered == pytest.approx((lo / (1 + z), hi / (1 + z)))
    assert lum.luminosity.median == pytest.approx(expected[1], rel=1e-7)
    with pytest.raises(FluxError, match="redshift 0"):
        lumin_summary(Model("powerlaw"), LOG_GRID, samples, lo, hi, 0)


# -- records ----------------------------------------------------------------------------------
def test_intervals_are_the_draws_quantiles_and_records_are_json():
    values = np.arange(1, 1002, dtype=float)        # 1..1001: quantiles fall on values
    q = Interval.of(values)
    assert (q.median, q.lo68, q.hi68, q.lo90, q.hi90) == (501.0, 161.0, 841.0, 51.0, 951.0)
    rng = np.random.default_rng(0)
    samples = np.column_stack([rng.uniform(0.1, 0.3, 200), rng.normal(1.8, 0.05, 200),
                               rng.lognormal(np.log(1e-3), 0.1, 200)])
    out = flux_summaries(Model("tbabs*powerlaw"), LOG_GRID, samples,
                         [(0.5, 2.0), FluxRequest(0.5, 2.0, unabsorbed=True), (2.0, 10.0, 0.1)])
    assert [type(r).__name__ for r in out] == ["BandFlux", "BandFlux", "BandLuminosity"]
    assert out[1].absorbers == ("TBabs",) and out[0].absorbers == ()
    assert out[1].energy.median > out[0].energy.median
    assert out[0].energy.lo90 < out[0].energy.lo68 < out[0].energy.median < out[0].energy.hi68 \
        < out[0].energy.hi90
    d = json.loads(json.dumps([r.to_dict() for r in out]))
    assert d[2]["cosmology"] == {"H0": 70.0, "q0": 0.0, "lambda0": 0.73}
    assert d[0]["energy_flux_erg_cm2_s"]["median"] == out[0].energy.median
    assert "unabsorbed flux 0.5-2 keV:" in str(out[1])
    assert "lumin 2-10 keV (source frame) at z = 0.1:" in str(out[2])
    with pytest.raises(FluxError, match=r"give \(lo, hi\)"):
        FluxRequest.parse((1.0,))


def test_result_flux_lumin_and_summary(monkeypatch):
    """SBIResult.flux/lumin/with_fluxes on the demo's session, and the report's summary.json."""
    from report_fakes import fake_result
    from xspec_sbi.report.folder import summary_dict
    result = fake_result(n=300, chain=False)
    edges = result.session.spectra[0].response.energy_edges
    f = result.flux(0.5, 2.0)
    photon, energy = band_fluxes(result.session.model, edges, result.samples, [(0.5, 2.0)])
    assert f.energy.median == pytest.approx(float(np.median(energy)), rel=1e-12)
    assert f.photon.median == pytest.approx(float(np.median(photon)), rel=1e-12)
    assert result.flux(0.5, 2.0, unabsorbed=True).energy.median > f.energy.median
    full = result.with_fluxes([(0.5, 2.0), (2.0, 10.0, 0.05)])
    assert result.fluxes == () and len(full.fluxes) == 2
    assert "flux 0.5-2 keV:" in full.table() and "lumin 2-10 keV" in full.table()
    d = summary_dict(full)
    assert [x["kind"] for x in d["fluxes"]] == ["flux", "lumin"]
    assert d["fluxes"][1]["luminosity_erg_s"]["median"] == pytest.approx(
        full.lumin(2.0, 10.0, 0.05).luminosity.median)
    assert summary_dict(result)["fluxes"] == []


def test_a_model_only_xspec_evaluates_is_refused_naming_the_xspec_route():
    from xspec_sbi.pyxspec.reader import XspecModel
    model = XspecModel("cflux*powerlaw", Model("powerlaw").parameters, reason="convolution")
    with pytest.raises(FluxError, match="xspec_sbi.pyxspec.xspec_fluxes"):
        band_fluxes(model, LOG_GRID, [[2.0, 1.0]], [(0.5, 2.0)])


def test_flux_of_a_grouped_model_is_its_groups_own():
    # group 1's flux is the source's (its constant is 1); group 2's carries its cross-normalisation
    from xspec_sbi.model.groups import free_per_group
    grouped = free_per_group(Model("constant*tbabs*powerlaw"), 2, ["constant.factor"])
    grouped = grouped.set(**{"constant.factor[2]": 0.8})
    edges = np.geomspace(0.1, 20.0, 400)
    theta = np.tile(grouped.free_values(), (20, 1))
    single = flux_summary(Model("tbabs*powerlaw"), edges, theta[:, :3], 0.5, 2.0)
    for model, factor in ((grouped, 1.0), (grouped.for_group(1), 1.0), (grouped.for_group(2), 0.8)):
        got = flux_summary(model, edges, theta, 0.5, 2.0)
        np.testing.assert_allclose(got.energy.median, factor * single.energy.median, rtol=1e-6)
        un = flux_summary(model, edges, theta, 0.5, 2.0, unabsorbed=True)
        assert un.absorbers == ("TBabs",) and un.energy.median > got.energy.median
