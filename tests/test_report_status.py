"""The status panel's states, the prior/settings/round tables and summary.json's documented keys."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from report_fakes import fake_result
from xspec_sbi.report.status import STATES, CheckLine, check_lines, prior_rows, round_tables, settings_rows

DOC = Path(__file__).resolve().parent.parent / "docs" / "REPORT.md"


@pytest.fixture(scope="module")
def reliable():
    return fake_result(n=800, correction="reliable")


def _by_name(lines):
    return {c.name: c for c in lines}


def test_reliable_correction_and_good_fit_pass(reliable, shared_data):
    # the fake's proposal width is sized on the real NICER ARF (report_fakes.fake_session uses
    # it when ../shared is there): its Pareto k is "passed" there, not on the built-in table
    assert reliable.correction.reliable
    lines = _by_name(check_lines(reliable, None, "network not trained in this call"))
    assert lines["likelihood correction"].state == "passed"
    assert lines["Pareto k"].state == "passed"
    assert lines["Pareto k"].value == f"{reliable.correction.pareto_k:.2f}"
    assert lines["goodness of fit (best SBI sample)"].state == "passed"
    cov = lines["coverage of the network's intervals"]
    assert cov.state == "not computed" and "not trained" in cov.detail
    assert lines["out-of-distribution"].state == "not computed"
    assert all(c.state in STATES for c in lines.values())


def test_unreliable_correction_fails_with_its_advice():
    r = fake_result(n=400, correction="unreliable", seed=3)
    assert not r.correction.reliable
    lines = _by_name(check_lines(r))
    assert lines["likelihood correction"].state == "failed"
    assert lines["likelihood correction"].detail == r.correction.advice
    assert lines["Pareto k"].state == ("failed" if r.correction.pareto_k >= r.correction.k_threshold
                                       else "warning" if r.correction.pareto_k >= 0.5 else "passed")


def test_no_correction_is_not_computed():
    r = fake_result(n=100, correction=None, chain=False)
    lines = _by_name(check_lines(r))
    for name in ("likelihood correction", "effective sample size", "Pareto k", "SBI vs chain"):
        assert lines[name].state == "not computed"


@pytest.mark.parametrize("z, state", [(0.5, "passed"), (-2.5, "warning"), (3.5, "failed"),
                                      (float("nan"), "not computed")])
def test_goodness_state_follows_the_deviation(reliable, z, state):
    from dataclasses import replace

    from xspec_sbi.forward.expectation import GoodnessOfFit
    g = GoodnessOfFit(cstat=180.0 + 10.0 * z, expected=180.0, sigma=10.0 if np.isfinite(z) else 0.0,
                      n_bins=193)
    r = replace(reliable, goodness=g)
    assert _by_name(check_lines(r))["goodness of fit (best SBI sample)"].state == state


@pytest.mark.parametrize("p, warning, state", [(0.3, None, "passed"), (0.03, "odd", "warning"),
                                               (0.001, "bad fit", "failed")])
def test_ppc_and_ood_states(reliable, p, warning, state):
    from dataclasses import replace

    from xspec_sbi.result import TrustChecks
    ppc = SimpleNamespace(p_value=p, p_value_se=0.01, n=200, alpha=0.01, warning=warning,
                          flagged=p < 0.01)
    ood = SimpleNamespace(flagged=state == "failed", warning="far" if state == "failed" else None,
                          total_quantile=0.5, shape_quantile=0.99)
    lines = _by_name(check_lines(replace(reliable, trust=TrustChecks(ood=ood, ppc=ppc))))
    assert lines["posterior predictive"].state == state
    assert lines["out-of-distribution"].state == ("failed" if state == "failed" else "passed")


def test_coverage_state_uses_binomial_errors():
    from xspec_sbi.report.coverage import ReportCoverage
    levels = (0.68, 0.90, 0.95)
    good = ReportCoverage(("a",), levels, np.array([[0.70], [0.89], [0.95]]), 100, 200, 0, "x")
    assert good.state() == "passed"
    assert good.standard_error(0.68) == pytest.approx(np.sqrt(0.68 * 0.32 / 100))
    # 0.68 +/- 0.0466: 0.80 is 2.6 s.e. away (warning), 0.85 is 3.6 (failed)
    def state(f68):
        return ReportCoverage(("a",), levels, np.array([[f68], [0.9], [0.95]]), 100, 200, 0, "x").state()

    assert state(0.80) == "warning" and state(0.85) == "failed"


def test_check_line_refuses_unknown_state():
    with pytest.raises(ValueError, match="state 'ok'"):
        CheckLine("x", "ok", "1")


def test_prior_settings_and_rounds_tables(reliable):
    rows = prior_rows(reliable)
    assert [r[:5] for r in rows] == [(p.name, p.kind, p.lower, p.upper, p.unit)
                                     for p in reliable.prior.parameters]
    assert all(r[5] is None and r[6] is None for r in rows)          # no restriction
    settings = dict(settings_rows(reliable))
    assert settings["model"] == "tbabs*powerlaw" and settings["seed"] == "0"
    assert settings["record schema"] == "1"
    assert round_tables(reliable) == []
    rounds = [SimpleNamespace(to_dict=lambda i=i: {"round": i + 1, "simulations": 100 * (i + 1),
                                                   "ess_fraction": 0.1 * i}) for i in range(3)]
    r = fake_result(n=100, correction=None, chain=False, rounds=rounds)
    ((title, header, body),) = round_tables(r)
    assert title == "sequential inference" and header == ["round", "simulations", "ess_fraction"]
    assert body[2] == [3, 300, pytest.approx(0.2)]


def test_summary_json_has_a_schema_and_every_key_is_documented(reliable):
    from xspec_sbi.report.folder import summary_dict
    from xspec_sbi.result import RECORD_SCHEMA

    d = summary_dict(reliable)
    assert d["schema"] == RECORD_SCHEMA
    json.dumps(d, allow_nan=False)                    # plain JSON: no NaN, no numpy types
    assert d["coverage"] is None                      # the fake has no network trained in the call
    assert [c["name"] for c in d["checks"]] == [c.name for c in check_lines(reliable)]
    assert d["priors"][0]["unit"] == "10^22"
    documented = set(re.findall(r"^\| `([a-z_0-9]+)`", DOC.read_text(), flags=re.M))
    assert set(d) - documented == set(), "summary.json keys missing from docs/REPORT.md"
    assert f"schema {RECORD_SCHEMA}" in DOC.read_text()
