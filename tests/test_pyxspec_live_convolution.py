"""Convolution models: the engine folds as XSPEC 12.9.1 does, algebra and grid included.

The reference is XSPEC itself on the XMM PN spectrum (0.3-10 keV noticed, its
response grid 0.05-16 keV): ``AllModels(1).folded(1)`` x exposure, bin by bin,
through :func:`xspec_sbi.pyxspec.check_agreement` (relative 1e-6). Where the
engine extends the grid (a redshift of 1 needs the model up to 32 keV), XSPEC
is given the same extension with its own ``energies extend`` command.
Run by ``tests/run_pyxspec_live.sh`` (``make test``).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyxspec_live_support import SKIP_REASON
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.model.convolution import extended_grid, grid_extension
from xspec_sbi.model.expression import Model

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]

# (expression, parameter values in XSPEC order); none needs more grid than the response's
CASES = [
    # where a convolution sits decides what it acts on (XSPEC manual, cflux)
    ("phabs*cflux*powerlaw", (0.3, 0.5, 10.0, -12.0, 1.8, 1.0)),
    ("cflux*phabs*powerlaw", (0.5, 10.0, -12.0, 0.3, 1.8, 1.0)),
    ("phabs*(powerlaw+cflux*gaussian)", (0.3, 1.8, 1e-4, 6.0, 7.0, -13.0, 6.4, 0.1, 1.0)),
    ("zmshift(phabs)*powerlaw", (0.05, 0.5, 1.9, 1e-4)),     # zmshift acts on phabs*powerlaw
    ("(zmshift*phabs)*powerlaw", (0.05, 0.5, 1.9, 1e-4)),    # ... and here on phabs alone
    ("phabs*zashift(powerlaw+gaussian)", (0.2, 0.05, 1.9, 1e-4, 6.4, 0.1, 1e-5)),
    ("phabs*gsmooth(powerlaw+gaussian)", (0.2, 0.3, 0.0, 1.9, 1e-4, 6.4, 0.01, 1e-5)),
    ("phabs*gsmooth(powerlaw+gaussian)", (0.2, 0.05, 1.0, 1.9, 1e-4, 6.4, 0.01, 1e-5)),
    ("phabs*simpl(powerlaw)", (0.2, 2.3, 0.2, 1.0, 1.9, 1e-4)),
]


@pytest.fixture
def pn(pn):
    yield pn
    pn.AllModels.setEnergies("reset")      # a test may have extended the energy grid


@pytest.mark.parametrize("expression, values", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_engine_folds_convolutions_as_xspec_1291(pn, expression, values):
    pn.Model(expression).setPars(*values)
    session = px.read_session()
    assert isinstance(session.model, Model), session.model   # the engine, not the XSPEC path
    agreement = px.check_agreement(session, rtol=1e-6)
    assert agreement.path == "engine" and max(agreement.max_relative) <= 1e-6


def test_a_redshift_beyond_the_grid_agrees_with_xspecs_energies_extend(pn):
    pn.Model("phabs*zashift(powerlaw+gaussian)").setPars(0.2, 1.0, 1.9, 1e-4, 6.4, 0.1, 1e-5)
    session = px.read_session()
    # On the response grid alone XSPEC loses the photons emitted above 16 keV
    # that z = 1 brings to 8-16 keV: the engine, with them, differs there.
    with pytest.raises(px.AgreementError, match="differ") as err:
        px.check_agreement(session, rtol=1e-6)
    edges = np.asarray(pn.AllData(1).response.energies, dtype=np.float64)
    below, above = grid_extension("zashift", edges, np.array([[1.0]]))
    assert below[0] == 0 and above[0] > 0
    top = extended_grid(edges, 0, int(above[0]))[-1]
    assert top >= 2 * edges[-1]
    # the engine's extension is log bins continuing the response's last one:
    # XSPEC's "energies extend high <E> <n> log" makes the same grid
    command = f'AllModels.setEnergies("extend", "high,{top:.15g},{int(above[0])} log")'
    assert command in str(err.value)        # the error says how to give XSPEC that grid
    pn.AllModels.setEnergies("extend", f"high,{top:.15g},{int(above[0])} log")
    agreement = px.check_agreement(session, rtol=1e-6)
    assert max(agreement.max_relative) <= 1e-6


def test_cflux_parameter_is_xspecs_flux_over_its_band(pn):
    pn.Model("cflux*powerlaw").setPars(2.0, 8.0, -11.5, 1.9, 1.0)
    pn.AllModels.calcFlux("2.0 8.0")
    assert abs(pn.AllData(1).flux[0] / 10 ** -11.5 - 1) < 1e-9
    session = px.read_session()
    assert session.model.free_names == ("cflux.lg10Flux", "powerlaw.PhoIndex", "powerlaw.norm")
    assert max(px.check_agreement(session, rtol=1e-6).max_relative) <= 1e-6
