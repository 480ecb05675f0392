"""The engine with XSPEC 12.9.1's own library folds as XSPEC 12.9.1 does.

XSPEC 12.9.1's ``model.dat`` lists several models as Fortran functions
(``xsphab`` for phabs, ``xsabsw`` for wabs, ``xsblbd`` for bbody, ``xsdskb``
for diskbb) and exports no ``C_<name>`` wrapper for them; the engine calls
them by model.dat's naming convention (``xspec_sbi.model.functions``). The
reference is XSPEC itself: ``AllModels(1).folded(1)`` x exposure, bin by bin,
through :func:`xspec_sbi.pyxspec.check_agreement` (relative 1e-6).
Run by ``tests/run_pyxspec_live.sh`` (``make test``).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyxspec_live_support import SKIP_REASON
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.expression import Model

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]

# (expression, parameter values in XSPEC order) on the XMM PN spectrum (0.3-10 keV).
CASES = [
    ("phabs*bbody", (0.3, 0.8, 1e-4)),
    ("wabs*gaussian", (0.5, 1.5, 0.3, 1e-4)),
    ("ztbabs*diskbb", (0.4, 0.5, 1.2, 5.0)),
    ("phabs*zpowerlw", (0.2, 1.9, 0.7, 3e-5)),
    ("ztbabs*(zpowerlw+gaussian)", (0.3, 0.2, 2.1, 0.2, 2e-5, 6.4, 0.1, 1e-6)),
    ("wabs*phabs*(bbody+diskbb)", (0.1, 0.2, 0.5, 2e-5, 1.0, 2.0)),
]


def test_engine_uses_xspecs_library():
    """The live process's engine loads $HEADAS's (12.9.1) library, not the wheel's."""
    lib = xslibrary.library()
    assert lib.source.origin == "headas"
    assert lib.headas == Path(os.environ["HEADAS"])
    assert xspec.Xset.version[1] == "12.9.1"
    assert Model("phabs*bbody").components[0].info.model_function.symbol == "xsphab_"


@pytest.mark.parametrize("expression, values", CASES, ids=[c[0] for c in CASES])
def test_engine_folds_as_xspec_1291(pn, expression, values):
    model = pn.Model(expression)
    model.setPars(*values)
    session = px.read_session()
    assert isinstance(session.model, Model), session.model   # the engine, not the XSPEC path
    agreement = px.check_agreement(session, rtol=1e-6)
    assert agreement.path == "engine"
    assert max(agreement.max_relative) <= 1e-6
