"""The engine's fluxes and luminosities against XSPEC 12.9.1's ``calcFlux`` and ``calcLumin``.

Same parameter draws on both sides, the XMM PN spectrum loaded (XSPEC
integrates on its response's energies; so does the engine by default).
Fluxes agree once XSPEC's keV (1.602192e-9 erg, against CODATA's
1.602176634e-9) is divided out. XSPEC 12.9.1's luminosity differs from the
exact one in two known ways, written out here as the reference:
``L = E_flux * LUMCON * FZSQ(z, q0, lambda0) / H0^2`` with LUMCON = 1.07057e61
(4 pi (c Mpc)^2 in km/s and cm is 1.0754e61) and, for lambda0 != 0, FZSQ from
Pen (1999)'s fitting formula of the comoving distance (XSUtil/Numerics/
CosmologyFunction.cxx in the HEASoft 6.20 source).
Run by ``tests/run_pyxspec_live.sh`` (``make test``).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyxspec_live_support import SKIP_REASON
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.model.cosmology import C_KM_S, MPC_CM, Cosmology
from xspec_sbi.model.flux import KEV_TO_ERG, band_fluxes, lumin_summary

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]

XSPEC_KEV = 1.602192e-9          # erg: 2 x KEVTOERGS of XSPEC's Numerics::integrationKernel
XSPEC_LUMCON = 1.07057e61        # clumin.cxx and the lumin command


def _pen_fzsq(z, lambda0):
    """XSPEC 12.9.1's (D_L / (c/H0))^2 for a flat universe (Pen 1999's eta)."""
    om = 1.0 - lambda0
    s3 = (1 - om) / om
    s = s3 ** (1 / 3)

    def eta(a):
        return 2 * np.sqrt(s3 + 1) * ((1 / a ** 2 - 0.1540 * s / a + 0.4304 * s * s) / a ** 2
                                      + (0.19097 / a + 0.066941 * s) * s3) ** -0.125
    return ((1 + z) * (eta(1.0) - eta(1 / (1 + z)))) ** 2


CASES = [
    ("tbabs*powerlaw", [[0.05, 1.7, 2e-4], [0.12, 2.1, 3e-4], [0.3, 2.6, 5e-4]]),
    ("phabs*(powerlaw+bbody)", [[0.1, 2.0, 1e-4, 0.3, 2e-5], [0.2, 1.6, 2e-4, 0.9, 1e-5]]),
]


def _session(xs, expression, theta):
    xs.Model(expression)
    session = px.read_session()
    assert len(session.model.free_names) == np.shape(theta)[1]
    return session, session.spectra[0].response.energy_edges


@pytest.mark.parametrize("expression, theta", CASES, ids=[c[0] for c in CASES])
def test_flux_agrees_with_calcflux(pn, expression, theta):
    session, edges = _session(pn, expression, theta)
    for lo, hi in [(0.5, 2.0), (2.0, 10.0), (0.3, 7.3)]:
        photon, energy = band_fluxes(session.model, edges, theta, [(lo, hi)])
        x_energy, x_photon = px.xspec_fluxes(theta, lo, hi)
        np.testing.assert_allclose(photon[:, 0], x_photon, rtol=1e-6)
        np.testing.assert_allclose(energy[:, 0] * (XSPEC_KEV / KEV_TO_ERG), x_energy, rtol=1e-6)
        np.testing.assert_allclose(energy[:, 0], x_energy, rtol=2e-5)       # as printed


def test_unabsorbed_flux_is_xspecs_flux_at_zero_column(pn):
    theta = np.array(CASES[0][1])
    session, edges = _session(pn, "tbabs*powerlaw", theta)
    photon, energy = band_fluxes(session.model, edges, theta, [(0.5, 2.0)], ("TBabs",))
    x_energy, x_photon = px.xspec_fluxes(np.column_stack([np.zeros(len(theta)), theta[:, 1:]]), 0.5, 2.0)
    np.testing.assert_allclose(photon[:, 0], x_photon, rtol=1e-6)
    np.testing.assert_allclose(energy[:, 0] * (XSPEC_KEV / KEV_TO_ERG), x_energy, rtol=1e-6)
    assert np.all(px.xspec_fluxes(theta, 0.5, 2.0)[0] < x_energy)


@pytest.mark.parametrize("cosmology", [Cosmology(), Cosmology(60.0, 0.0, 0.7), Cosmology(70.0, 0.5, 0.0)],
                         ids=["default", "flat-0.7", "matter-q0=0.5"])
@pytest.mark.parametrize("z", [0.05, 0.8])
def test_lumin_agrees_with_calclumin_up_to_xspecs_constants(pn, cosmology, z):
    theta = np.array(CASES[0][1])
    session, edges = _session(pn, "tbabs*powerlaw", theta)
    lum = lumin_summary(session.model, edges, theta, 2.0, 10.0, z, cosmology=cosmology)
    x_lum, _ = px.xspec_fluxes(theta, 2.0, 10.0, redshift=z, cosmology=cosmology)
    exact_fzsq = (lum.distance / cosmology.hubble_distance) ** 2
    fzsq = exact_fzsq if cosmology.lambda0 == 0 else _pen_fzsq(z, cosmology.lambda0)
    xspec_convention = (XSPEC_KEV / KEV_TO_ERG) * XSPEC_LUMCON / (4 * np.pi * (C_KM_S * MPC_CM) ** 2) \
        * fzsq / exact_fzsq
    np.testing.assert_allclose(lum.draws * xspec_convention, x_lum, rtol=1e-5)
    # the two conventions: 0.45 % from XSPEC's constant, up to ~0.6 % from Pen's formula
    np.testing.assert_allclose(lum.draws, x_lum, rtol=0.012)
    assert tuple(pn.Xset.cosmo) == ("70", "0", "0.73")            # put back
