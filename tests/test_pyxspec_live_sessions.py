"""What PyXspec scripts contain, read by the adapter and checked against XSPEC 12.9.1.

Several spectra in one data group and in two, backgrounds, ignore by energy
and by channel, frozen and linked parameters, ``Xset.abund`` other than
angr, a type II row. Each case checks the engine's expected counts against
XSPEC's ``folded x exposure`` (:func:`xspec_sbi.pyxspec.check_agreement`)
and, where a background is loaded, XSPEC's ``Fit.statistic`` (W-stat)
against ours; and that reading left the session as it was. Run by
``tests/run_pyxspec_live.sh`` (``make test``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits

from ogip_testfiles import write_pha_type2
from pyxspec_live_support import SKIP_REASON, check_statistic
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.model.library import XspecSettings

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]

PN = "PN.pha"                    # XMM EPIC-pn, grouped, with background
XRT = "grb110731a_src.pha"       # Swift XRT WT, grouped, with background


def test_two_spectra_in_one_group_backgrounds_and_ignores(workdir):
    xs = workdir
    xs.AllData(f"1:1 {PN} 1:2 {XRT}")
    xs.AllData(1).ignore("**-0.3 10.-**")        # by energy (keV)
    xs.AllData(2).ignore("1-8")                   # by channel (grouped bins)
    xs.AllData(2).ignore("**-0.5 8.-**")
    xs.AllData.ignore("bad")
    xs.Model("tbabs*powerlaw").setPars(0.1, 2.0, 1e-3)
    before = px.snapshot()
    session = px.read_session()
    assert [s.background is not None for s in session.spectra] == [True, True]
    for n, s in enumerate(session.spectra, start=1):
        assert s.n_bins == len(xs.AllData(n).noticed)
        assert 1 not in xs.AllData(2).noticed and 8 not in xs.AllData(2).noticed
    agreement = px.check_agreement(session, rtol=1e-6)
    assert len(agreement.max_relative) == 2
    check_statistic(session, [0.1, 2.0, 1e-3])
    check_statistic(session, [0.3, 1.6, 3e-4])
    assert px.snapshot() == before


def test_two_data_groups_tied_and_untied(workdir):
    xs = workdir
    xs.AllData(f"1:1 {PN} 2:2 {XRT}")
    xs.AllData.ignore("**-0.5 8.-**")
    xs.Model("tbabs*powerlaw").setPars(0.1, 2.0, 1e-3)
    assert int(xs.AllData.nGroups) == 2
    # XSPEC ties a new group's parameters to group 1: one model, two spectra.
    session = px.read_session()
    assert len(session.spectra) == 2
    assert session.model.free_names == ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")
    px.check_agreement(session, rtol=1e-6)
    check_statistic(session, [0.2, 1.8, 5e-4])
    # A group with a parameter of its own has its copy (tests/test_pyxspec_live_groups.py).
    xs.AllModels(2)(3).untie()
    assert px.read_session().model.free_names[-1] == "powerlaw.norm[2]"


def test_frozen_and_linked_parameters(workdir):
    xs = workdir
    xs.AllData(PN)
    xs.AllData.ignore("**-0.3 10.-**")
    m = xs.Model("tbabs*(powerlaw+bbody)")
    m.setPars(0.05, 2.0, 2e-5, 0.3, 1e-6)
    m(1).frozen = True
    m(5).link = "0.05*p3"         # bbody.norm = 0.05 x powerlaw.norm
    before = px.snapshot()
    session = px.read_session()
    assert session.model.free_names == ("powerlaw.PhoIndex", "powerlaw.norm", "bbody.kT")
    assert session.model["TBabs.nH"].frozen
    assert session.model["bbody.norm"].link is not None
    px.check_agreement(session, rtol=1e-6)
    check_statistic(session, [1.7, 3e-5, 0.5])
    assert px.snapshot() == before


def test_abundances_other_than_angr(workdir):
    xs = workdir
    xs.AllData(PN)
    xs.AllData.ignore("**-0.3 10.-**")
    xs.Xset.abund = "wilm"
    xs.Model("tbabs*powerlaw").setPars(1.0, 2.0, 2e-5)
    session = px.read_session()
    assert session.settings.abund == "wilm"
    px.check_agreement(session, rtol=1e-6)
    # The table matters at this nH: with angr the engine no longer folds as XSPEC.
    angr = replace(session, settings=XspecSettings("angr", session.settings.xsect))
    with pytest.raises(px.AgreementError):
        px.check_agreement(angr, rtol=1e-4)
    assert str(xs.Xset.abund).strip() == "wilm"


def test_type_ii_row(workdir, tmp_path):
    xs = workdir
    with fits.open(XRT) as f:
        counts = np.asarray(f[1].data["COUNTS"], dtype=np.int64)
        header = f[1].header
    rows = np.stack([counts, 2 * counts])
    write_pha_type2(tmp_path / "typeII.pha", rows, exposures=[header["EXPOSURE"],
                    2 * header["EXPOSURE"]], backscals=[1.0, 1.0], keywords={
                        "RESPFILE": header["RESPFILE"], "ANCRFILE": header["ANCRFILE"],
                        "TELESCOP": header.get("TELESCOP", "SWIFT"),
                        "INSTRUME": header.get("INSTRUME", "XRT"), "HDUCLAS2": "TOTAL",
                        "HDUCLAS3": "COUNT", "CHANTYPE": header.get("CHANTYPE", "PI")})
    s = xs.Spectrum("typeII.pha{2}")
    # XSPEC 12.9.1 reads the header's ANCRFILE as "file{2}" too, and then
    # refuses it (a type I ARF): a script assigns the response itself.
    s.response = header["RESPFILE"]
    s.response.arf = header["ANCRFILE"]
    s.ignore("**-0.5 8.-**")
    xs.Model("tbabs*powerlaw").setPars(0.2, 1.8, 5e-2)
    assert xs.AllData(1).fileName == "typeII.pha"   # 12.9.1 drops the {2}
    session = px.read_session()
    (spec,) = session.spectra
    assert spec.exposure == pytest.approx(2 * header["EXPOSURE"])
    np.testing.assert_allclose(np.asarray(xs.AllData(1).values) * xs.AllData(1).exposure,
                               spec.binned_counts(), rtol=1e-6)
    px.check_agreement(session, rtol=1e-6)
    check_statistic(session, [0.3, 2.0, 4e-2])
