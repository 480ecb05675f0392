"""The NICER burst spectra b_004 and b_008, each with its own ARF: one network, a chain each.

``xspec-sbi train`` on b_004 (its own ARF with the NICER-like redistribution,
5 channels a bin, 0.3-10 keV, Table 1 model 3), ``xspec-sbi apply`` on b_004
and b_008 with each file's own ARF (``--nicer-like-arf header``), then a
Goodman-Weare chain (XSPEC's defaults: 50,000 samples, 5,000 burn-in) on each
spectrum's own exact C-stat: median difference in chain sd and 68 % width
ratio per parameter, printed as a table.

Usage: ``python scripts/burst_apply_check.py OUT [--sims N] [--data ../shared/data]``
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

BAND = "**-0.3 10.-**"
SPECTRA = ("b_004_0.25s_raw_opt.pha", "b_008_0.25s_raw_opt.pha")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--sims", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent
                    / "shared" / "data")
    ap.add_argument("--chain-length", type=int, default=50_000)
    ap.add_argument("--refine", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep OUT/net when it exists")
    a = ap.parse_args(argv)
    from xspec_sbi.cli import main as cli
    from xspec_sbi.presets.table1 import table1_frozen, table1_prior
    nicer = a.data / "nicer_4u1820"
    files = [nicer / f for f in SPECTRA]
    model = ["--model", "tbabs*(bbodyrad+powerlaw)", "--ignore", BAND, "--regroup", "5"]
    model += [x for k, v in table1_frozen(3).items() for x in ("--freeze", f"{k}={v}")]
    model += [x for k, (kind, lo, hi) in table1_prior(3).items()
              for x in ("--prior", f"{k}={kind}:{lo}:{hi}")]
    net, tracks = a.out / "net", a.out / ("tracks_refine" if a.refine else "tracks")
    t0 = time.perf_counter()
    code = 0 if a.reuse and net.is_dir() else cli.main(["train", str(files[0]), *model, "--nicer-like-arf", str(nicer / "b_004_0.25s.arf"),
                     "--restrict", "counts:100-10000", "--sims", str(a.sims), "--save-network",
                     str(net), "--overwrite", "--workers", "1"])
    t_train = time.perf_counter() - t0
    if code:
        return code
    t0 = time.perf_counter()
    code = 0 if a.reuse and tracks.is_dir() else cli.main(["apply", str(net), *map(str, files), "--nicer-like-arf", "header", "--out",
                     str(tracks), "--overwrite", "--samples", "5000"]
                    + (["--refine"] if a.refine else []))
    t_apply = time.perf_counter() - t0
    if code:
        return code
    rows = list(csv.DictReader((tracks / "tracks.csv").open()))
    npz = np.load(tracks / "samples.npz")
    names = [str(n) for n in npz["names"]]
    report = {"train_s": t_train, "apply_s": t_apply, "spectra": {}}
    for path, row, draws in zip(files, rows, npz["samples"]):
        m = np.median(draws, axis=0)
        median, sd, width, is_log = _chain(path, model, names, a.chain_length, start=m)
        # log-uniform parameters compared in log10, as the validation report does
        d = np.where(is_log, np.log10(draws), draws)
        lo, hi = np.quantile(d, [0.16, 0.84], axis=0)
        md = np.median(d, axis=0)
        report["spectra"][path.name] = {
            "setup": row["setup"], "check": row["likelihood_check"], "ess": row["ess_fraction"],
            "pareto_k": row["pareto_k"], "rounds": row.get("refine_rounds", ""),
            "sbi": {n: [float(x) for x in np.quantile(draws[:, j], [0.5, 0.16, 0.84])]
                    for j, n in enumerate(names)},
            "compared_in": {n: "log10" if is_log[j] else "linear" for j, n in enumerate(names)},
            "median_diff_sd": {n: float((md[j] - median[j]) / sd[j]) for j, n in enumerate(names)},
            "width_ratio": {n: float((hi[j] - lo[j]) / width[j]) for j, n in enumerate(names)}}
    (a.out / f"burst_check{'_refine' if a.refine else ''}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


def _chain(path, model_args, names, length, start):
    """Median, sd and 68 % width of a chain on the spectrum's own exact C-stat (own ARF)."""
    from xspec_sbi.baseline.comparison import fit_and_chain
    from xspec_sbi.model.library import DEFAULT_ABUND, DEFAULT_XSECT
    from xspec_sbi.cli.inputs import build_session, model_and_prior
    opts = dict(zip(model_args[::2], model_args[1::2]))
    freeze = [v for k, v in zip(model_args[::2], model_args[1::2]) if k == "--freeze"]
    priors = [v for k, v in zip(model_args[::2], model_args[1::2]) if k == "--prior"]
    model, _, box = model_and_prior(opts["--model"], freeze, priors)
    from xspec_sbi.cli.setups import own_arf
    session = build_session([str(path)], model, ignore=BAND, notice=None, abund=DEFAULT_ABUND,
                            xsect=DEFAULT_XSECT, respfile=None, arffile=None, backfile=None,
                            nicer_like_arf=own_arf(str(path)), group=5)
    assert list(box.names) == names
    stat = session.statistic_function()
    _, chain = fit_and_chain(stat, start, box, model.free_parameters, length, length // 10, None,
                             np.random.default_rng(7))
    is_log = np.asarray(box.is_log, bool)
    s = np.where(is_log, np.log10(chain.samples), chain.samples)
    lo, hi = np.quantile(s, [0.16, 0.84], axis=0)
    return np.median(s, axis=0), s.std(axis=0), hi - lo, is_log


if __name__ == "__main__":
    sys.exit(main())
