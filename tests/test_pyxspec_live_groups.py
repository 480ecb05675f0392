"""Data groups with their own parameters, read from XSPEC 12.9.1 and checked against it.

The everyday joint fit: XMM-pn in data group 1 and Swift XRT in group 2 with
``constant*tbabs*powerlaw``, the constant frozen at 1 in group 1 and untied,
free, in group 2; also a norm free per group. The reader's parameters are
XSPEC's, the engine folds each spectrum through its own group's parameters
as XSPEC's ``AllModels(g).folded(n)`` does, XSPEC's ``Fit.statistic`` equals
ours at parameters that move group 2's copy. Run by ``tests/run_pyxspec_live.sh``.
"""
from __future__ import annotations

import numpy as np
import pytest

from pyxspec_live_support import SKIP_REASON, check_statistic
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.model.groups import GroupedModel

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]

PN = "PN.pha"
XRT = "grb110731a_src.pha"


def _two_groups(xs):
    xs.AllData(f"1:1 {PN} 2:2 {XRT}")
    xs.AllData.ignore("**-0.5 8.-** bad")
    m = xs.Model("constant*tbabs*powerlaw")
    m.setPars(1.0, 0.1, 2.0, 1e-3)
    m(1).frozen = True                     # the constant is 1 in group 1 ...
    c2 = xs.AllModels(2)(1)
    c2.untie()                             # ... and free in group 2 (XSPEC's untie 5, thaw 5)
    c2.frozen = False
    c2.values = 0.85
    return m


def test_constant_free_in_group_two(workdir):
    xs = workdir
    _two_groups(xs)
    before = px.snapshot()
    session = px.read_session()
    assert isinstance(session.model, GroupedModel) and session.groups == (1, 2)
    assert session.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm",
                                        "constant.factor[2]")
    c2 = session.model["constant.factor[2]"]
    assert c2.index == 5 and c2.value == pytest.approx(0.85) and c2.link is None
    assert session.model["powerlaw.norm[2]"].link == "= p4"
    assert session.model["constant.factor"].frozen
    # XSPEC's own list of free parameters, numbers and order alike
    assert [(p.name, p.index) for p in px.free_parameters()] == [
        (p.name, p.index) for p in session.model.free_parameters]
    agreement = px.check_agreement(session, rtol=1e-6)    # per spectrum, through its group
    assert len(agreement.max_relative) == 2
    # group 2's constant is what XSPEC folds with: the engine's counts scale by it
    sim = session.simulator()
    theta = np.array([[0.1, 2.0, 1e-3, 0.85], [0.1, 2.0, 1e-3, 0.5]])
    pn, xrt = sim.parts
    assert np.array_equal(pn.expected_source(theta)[0], pn.expected_source(theta)[1])
    np.testing.assert_allclose(xrt.expected_source(theta)[1] / xrt.expected_source(theta)[0],
                               0.5 / 0.85, rtol=1e-6)
    a = check_statistic(session, [0.1, 2.0, 1e-3, 0.85])
    b = check_statistic(session, [0.2, 1.8, 5e-4, 0.6])
    assert a != pytest.approx(b)
    assert px.snapshot() == before


def test_a_norm_free_per_group_and_the_tied_case_unchanged(workdir):
    xs = workdir
    xs.AllData(f"1:1 {PN} 2:2 {XRT}")
    xs.AllData.ignore("**-0.5 8.-** bad")
    xs.Model("tbabs*powerlaw").setPars(0.1, 2.0, 1e-3)
    tied = px.read_session()
    # all tied: the one-model session of before, no group copies
    assert not isinstance(tied.model, GroupedModel) and tied.groups is None
    n2 = xs.AllModels(2)(3)
    n2.untie()
    n2.values = 2e-3
    session = px.read_session()
    assert session.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm",
                                        "powerlaw.norm[2]")
    assert session.model["powerlaw.norm[2]"].value == pytest.approx(2e-3)
    px.check_agreement(session, rtol=1e-6)
    check_statistic(session, [0.2, 1.8, 5e-4, 9e-4])
