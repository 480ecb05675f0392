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
