"""The validation script's --quick mode runs, so the studies cannot rot."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "validate.py"


def test_prior_predictive_study_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("validate", SCRIPT)
    validate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(validate)
    metrics = validate.main(["--quick", "--studies", "ppc", "--out", str(tmp_path)])
    # the restricted prior's predictive band holds the observation in most bins (paper Fig. 4)
    assert metrics["ppc"]["fraction_of_bins_inside_95_band"] > 0.8
    assert json.loads((tmp_path / "metrics.json").read_text())["ppc"]
    assert (tmp_path / "ppc_prior_predictive.png").stat().st_size > 0
    assert "ppc_prior_predictive.png" in (tmp_path / "report.md").read_text()
    # the classifier narrowed the prior: fewer than all prior draws are accepted
    assert metrics["ppc"]["restricted_prior_acceptance"] < 1.0


def _script_module(name):
    import sys
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return importlib.import_module(f"validation.{name}")
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_distinct_corrected_draws_follow_the_weights():
    from types import SimpleNamespace

    import numpy as np
    common = _script_module("common")
    rng = np.random.default_rng(0)
    proposals = rng.normal(size=(20000, 2))
    weights = rng.random(20000)
    weights /= weights.sum()
    c = SimpleNamespace(proposals=proposals, weights=weights, ess_smoothed=1 / np.sum(weights**2))
    draws = common.distinct_corrected_draws(c, seed=1, max_draws=4000)
    # systematic resampling: each proposal appears m w_i times, rounded either way
    _, counts = np.unique(draws, axis=0, return_counts=True)
    m = min(4000, int(c.ess_smoothed / 4))      # at most a quarter of the ESS
    assert len(draws) == m and counts.max() <= int(np.ceil(m * weights.max()))
    # the weighted mean, which an unweighted sample of the proposals would miss
    np.testing.assert_allclose(draws.mean(0), weights @ proposals, atol=0.05)
    # too few effective draws for a C2ST: none
    few = SimpleNamespace(proposals=proposals, weights=weights, ess_smoothed=500.0)
    assert common.distinct_corrected_draws(few) is None


def test_summary_reports_misses_as_misses():
    summary = _script_module("summary")
    comp = {"a": {"median_diff_sd": 0.3, "width_ratio": 1.0}, "c2st": 0.52}
    metrics = {"targets": {"slope": (0.97, 1.03), "median_diff_sd": 0.1, "width_ratio": (0.9, 1.1),
                           "c2st": 0.55, "coverage_tol": 0.05, "sbc_ks_p": 0.01},
               "regimes": {"counts_20000": {"slopes": {"a": 0.99}, "sbi_vs_chain": comp,
                                            "coverage": {"0.68": {"a": 0.70}},
                                            "sbc_ks_pvalues": {"a": 0.001}}}}
    rows = {r[0]: r[3] for r in summary.summary_rows(metrics)}
    assert rows["20000 counts: regression slopes (500 test spectra)"] == "met"
    assert "missed" in rows["20000 counts, SBI result (corrected: None): max abs(median diff) / chain sd"]
    assert rows["20000 counts, SBI result (corrected: None): C2ST accuracy"] == "met"
    assert "missed" in rows["20000 counts: SBC KS p-value, smallest"]
