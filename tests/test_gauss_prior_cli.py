"""Gaussian priors at the edges: ``--prior NAME=gauss:...``, and the priors in the table, report and summary.json."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from xspec_sbi.cli import main as cli
from xspec_sbi.cli.inputs import model_and_prior
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior


def test_parse_gauss_prior():
    assert cli.parse_prior("TBabs.nH=gauss:0.05:0.01") == ("TBabs.nH", ("gauss", 0.05, 0.01))
    assert cli.parse_prior("TBabs.nH=Gaussian:0.05:0.01:0:1") == ("TBabs.nH", ("gauss", 0.05, 0.01, 0.0, 1.0))
    for bad, fragment in (("TBabs.nH=gauss", "gauss:MU:SIGMA"), ("TBabs.nH=gauss:0.05", "gauss:MU:SIGMA"),
                          ("TBabs.nH=gauss:0.05:0.01:0", "gauss:MU:SIGMA"),
                          ("TBabs.nH=gauss:0.05:x", "'x'")):
        with pytest.raises(cli.UsageError) as exc:
            cli.parse_prior(bad)
        assert bad in str(exc.value) and fragment in str(exc.value), str(exc.value)


def test_model_and_prior_with_a_gaussian():
    _, overrides, box = model_and_prior("tbabs*powerlaw", [], ["TBabs.nH=gauss:0.05:0.01",
                                                               "powerlaw.norm=log:1e-5:1e-2"])
    assert overrides["TBabs.nH"] == ("gauss", 0.05, 0.01)
    nh = box.parameters[0]
    assert (nh.kind, nh.mu, nh.sigma, nh.lower, nh.upper) == ("gauss", 0.05, 0.01, 0.0, 1e6)
    with pytest.raises(cli.UsageError) as exc:
        model_and_prior("tbabs*powerlaw", [], ["TBabs.nH=gauss:0.05:-0.01"])
    assert "--prior" in str(exc.value) and "TBabs.nH" in str(exc.value) and "sigma > 0" in str(exc.value)


def test_gauss_prior_usage_error_is_one_line(tmp_path, capsys):
    code = cli.main(["fit", str(tmp_path / "x.pha"), "--model", "tbabs*powerlaw",
                     "--prior", "TBabs.nH=gauss:0.05:abc"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "TBabs.nH=gauss:0.05:abc" in lines[0] and "'abc'" in lines[0]


@pytest.fixture(scope="module")
def gauss_result():
    from report_fakes import fake_result
    r = fake_result()
    p = r.prior.parameters
    box = BoxPrior((ParameterPrior(p[0].name, "gauss", 0.0, 1e6, p[0].unit, mu=0.2, sigma=0.02),)
                   + p[1:])
    return replace(r, prior=box)


def test_priors_in_the_table_the_summary_and_the_page(gauss_result, tmp_path):
    from xspec_sbi.report.folder import summary_dict
    from xspec_sbi.report.html import _priors
    text = gauss_result.table()
    header, nh_row = text.splitlines()[:2]
    assert header.rstrip().endswith("prior")
    assert nh_row.rstrip().endswith("Gaussian 0.2 +- 0.02 in [0, 1e+06]")
    assert "log-uniform [0.01, 100]" in text
    d = json.loads(json.dumps(summary_dict(gauss_result), default=float))
    nh, index, norm = d["priors"]
    assert (nh["kind"], nh["mu"], nh["sigma"], nh["lower"], nh["upper"]) == ("gauss", 0.2, 0.02, 0.0, 1e6)
    assert nh["description"] == "Gaussian 0.2 +- 0.02 in [0, 1e+06]"
    assert norm["mu"] is None and norm["description"] == "log-uniform [0.01, 100]"
    page = _priors(gauss_result, tmp_path)
    assert "Gaussian 0.2 +- 0.02 in [0, 1e+06]" in page and "uniform [0.5, 2.5]" in page


def test_prior_panel_of_a_gaussian_spans_its_width_not_the_hard_limits(gauss_result):
    from xspec_sbi.report.plots import prior_marginals
    fig = prior_marginals(gauss_result)
    lo, hi = fig.axes[0].get_xlim()
    samples = np.asarray(gauss_result.samples)[:, 0]
    assert lo == pytest.approx(max(0.0, min(0.2 - 0.1, samples.min())))
    assert hi == pytest.approx(max(0.2 + 0.1, samples.max()))
