"""Validation studies of the paper (Barret & Dupourque), measured, with a report folder.

Studies (paper section):
  regimes       [4.1, 4.2 + calibration] tbabs*powerlaw reference spectra of ~20,000 and ~2,000
                counts, count-window restricted prior; inferred vs input over test spectra
                (regression slopes), coverage of 68/90/95 % intervals, SBC; the reference
                spectrum's posterior against the Goodman-Weare chain (|median difference| / chain
                sd, width ratio, C2ST), C-stat against the Kaastra expectation, and the time of the
                SBI path against the chain.
  multiround    [5] 3 rounds x 1000 simulations against single round, same comparison with the chain.
  local_minima  [6] tbabs*(powerlaw+bbodyrad): C-stat fits from the true parameters, a restricted-
                prior draw and an initial-prior draw against SBI's best posterior sample (Fig. 11).
  pca           [7] PCA keeping 90 % of the variance: dimension kept, times, slopes, widths.
  real_data     [8] XMM-pn and Swift-XRT spectra with their backgrounds (wstat), NICER 4U 1820-30
                persistent spectrum and burst spectra (amortized), against the chain.
  ppc           [Fig. 4] the observation inside the band of spectra from the restricted prior.
  correction    [beyond the paper] SBI alone, SBI + exact-likelihood correction and the chain on
                the reference spectra, for an under-trained and a fully trained network.

Writes OUT/report.md, OUT/metrics.json (merged with an earlier run's, so studies can be run
separately) and PNG figures. ``--quick`` uses small budgets (minutes): a smoke test, not the
measurement.

Usage: python scripts/validate.py [--quick] [--out reports/validation] [--studies regimes,ppc]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation.common import TARGETS, budgets  # noqa: E402
from validation.summary import summary_markdown  # noqa: E402

# study name -> module in scripts/validation that defines study_<name>
STUDIES = {"regimes": "simulated", "multiround": "simulated", "local_minima": "local_minima",
           "pca": "simulated", "real_data": "real_data", "ppc": "simulated",
           "correction": "correction"}


def study(name: str):
    if name not in STUDIES:
        raise SystemExit(f"--studies: unknown study {name!r}; choose from {', '.join(STUDIES)}")
    return getattr(importlib.import_module(f"validation.{STUDIES[name]}"), f"study_{name}")


def write_markdown(metrics, out: Path):
    quick = metrics.get("mode") == "quick"
    lines = ["# Validation report", "",
             f"Mode: {'quick (small budgets: numbers are a smoke test, not the measurement)' if quick else 'full'}.",
             "NICER set-ups use a NICER-like response: the real NICER ARF with a Gaussian "
             "redistribution of NICER XTI's resolution, because NICER's RMF is not available here.", ""]
    lines += ["## Summary against the targets", "", summary_markdown(metrics), ""]
    for key, m in metrics.items():
        if key in ("mode", "targets", "seconds"):
            continue
        lines += [f"## {key}", "", f"Run time: {metrics.get('seconds', {}).get(key, float('nan')):.0f} s", "",
                  "```", json.dumps(m, indent=1, default=float), "```", ""]
        for png in sorted(out.glob(f"{key}*.png")):
            lines.append(f"![{png.stem}]({png.name})")
        lines.append("")
    lines += ["## targets", "", "```", json.dumps(metrics.get("targets", TARGETS), indent=1), "```", ""]
    (out / "report.md").write_text("\n".join(lines))


def _write_atomic(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small budgets (a smoke run of minutes)")
    ap.add_argument("--out", default="reports/validation", help="report folder")
    ap.add_argument("--studies", default=",".join(STUDIES), help="comma-separated subset")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.studies.split(",") if n.strip()]
    functions = {n: study(n) for n in names}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    path = out / "metrics.json"
    if path.exists() and json.loads(path.read_text()).get("mode", mode) != mode:
        raise SystemExit(f"{path} holds another mode's run; write this {mode} run to another --out")
    b = budgets(args.quick)
    metrics = {}
    for name in names:
        t0 = time.perf_counter()
        produced = functions[name](b, out, args.seed)
        seconds = time.perf_counter() - t0
        print(f"{name}: {seconds:.0f} s", flush=True)
        # Written after every study, so a long run keeps what it measured; merged with what
        # other runs wrote into the same folder (studies can run separately).
        metrics = json.loads(path.read_text()) if path.exists() else {}
        if metrics.get("mode", mode) != mode:
            raise SystemExit(f"{path} holds a {metrics['mode']} run; write this {mode} run to another --out")
        metrics.update(produced, mode=mode, targets=TARGETS)
        metrics.setdefault("seconds", {})[name] = seconds
        _write_atomic(path, json.dumps(metrics, indent=1, default=float))
        write_markdown(metrics, out)
    print(f"report: {out / 'report.md'}")
    return metrics


if __name__ == "__main__":
    main()
