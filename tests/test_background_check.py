"""W-stat on a background that leaves most bins empty is named (its profiled background is biased).

The bias itself is measured by ``scripts/wstat_background_bias.py`` (fake XMM-pn
spectra by binning: PhoIndex +0.31, 3.5 fit sd, ungrouped; within 0.3 sd at 40 %
empty bins or fewer). Here: which spectra are named, on the real PN background,
and that the warning reaches the result's table and summary.
"""
import dataclasses

import numpy as np
import pytest

from xspec_sbi.checks.background import EMPTY_SHARE, empty_background_warnings
from xspec_sbi.result import TrustChecks
from xspec_sbi.session import Session


@pytest.fixture(scope="module")
def pn(shared_data):
    return Session.from_files(str(shared_data / "xmm_pn_ngc7793_ulx4" / "PN.pha"), "tbabs*powerlaw",
                              ignore="**-0.5 10.-** bad")


def _ungrouped(session):
    s = session.spectra[0]
    spec = dataclasses.replace(s, grouping=None, noticed=None).ignore("**-0.5 10.-**")
    return Session((spec,), session.model, session.settings)


def _backgrounds(session):
    return [p.background_counts for p in session.simulator().parts]


def test_ungrouped_background_is_named_and_the_files_grouping_is_not(pn):
    labels = [s.label for s in pn.spectra]
    assert empty_background_warnings(_backgrounds(pn), labels) == ()      # the file's grouping: ~1 % empty
    loose = _ungrouped(pn)
    counts = _backgrounds(loose)[0]
    share = np.mean(counts == 0)
    assert share > EMPTY_SHARE                                              # ~65 % of ~1,900
    (warning,) = empty_background_warnings(_backgrounds(loose), labels)
    assert warning.startswith(f"{labels[0]}: {100 * share:.0f}% of its {counts.size} noticed bins")
    assert "ftgrouppha grouptype=bmin" in warning and "--regroup" in warning


def test_the_threshold_and_spectra_without_background():
    b = np.ones(100)
    b[:40] = 0
    assert empty_background_warnings([b], ["a.pha"]) == ()                  # 40 %: not above
    b[40] = 0
    assert len(empty_background_warnings([b], ["a.pha"])) == 1              # 41 %
    assert empty_background_warnings([None, b], ["c.pha", "a.pha"])[0].startswith("a.pha: ")


def test_the_warning_reaches_the_table_and_the_summary():
    t = TrustChecks(background=("src.pha: 65% of its 1904 noticed bins have no background counts",))
    assert "W-stat background: src.pha: 65%" in "\n".join(t.lines())
    assert t.to_dict()["W-stat background"] == list(t.background)


def test_sbi_fit_names_an_ungrouped_pn_spectrum(pn):
    from xspec_sbi.api import sbi_fit
    from xspec_sbi.inference.config import NPEConfig
    r = sbi_fit(_ungrouped(pn), prior={"TBabs.nH": ("log", 0.01, 10.0), "powerlaw.norm": ("log", 1e-6, 1e-2)},
                restrict=None, n_simulations=200, n_samples=200, chain=False, refine=False, seed=0,
                workers=1, progress=False, config=NPEConfig(max_epochs=3, min_epochs=1))
    assert r.statistic == "wstat"
    assert len(r.trust.background) == 1 and "PN.pha" in r.trust.background[0]
    assert "W-stat background: " in r.table()
