"""Which network settings bring the network alone onto the exact posterior (issue 12, item 2)?

On the paper's reference spectra (``tbabs*powerlaw``, NICER-like response,
:func:`xspec_sbi.demo.reference_session` with 2,000 and 20,000 counts, spectrum
seed 1 as in the validation run), Table 1's prior (model 1) restricted by the
classifier to spectra of ``[counts/2, counts*5]`` counts, exactly as the demo
and the validation do. Per spectrum, computed once and shared by every variant:

* the restricted prior and ONE training set of the largest budget drawn from it
  (a smaller budget is its first rows: the same draws, nested);
* the reference Goodman-Weare chain (:func:`xspec_sbi.baseline.comparison.fit_and_chain`,
  8 walkers, length 50,000, burn 5,000) started from a C-stat fit at the true
  parameters, with XSPEC's deltas (independent of every network).

Each variant is one :class:`~xspec_sbi.inference.config.NPEConfig` change, trained
with the same seed on the same training set; for each it records

* the exact-likelihood check of ``sbi_fit`` (:func:`xspec_sbi.pipeline.likelihood_check`
  on 10,000 raw draws): ESS fraction and Pareto k;
* the network alone (raw draws, no correction) against the chain: per parameter
  |median difference| in chain sd and the 68 % width ratio
  (``scripts/validation/common.py``'s :func:`compare_samples`, without its C2ST);
* training seconds (wall, one torch thread, on a shared machine: the load
  averages are recorded) and epochs.

Targets (issue 12): ESS fraction >= 50 %, |median diff| <= 0.15 chain sd,
width ratios in [0.9, 1.1]. Writes ``reports/network_study.md`` and ``.json``
after every row (atomically), so an interrupted run leaves its rows.

    PYTHONPATH=$PWD .venv/bin/python scripts/study_network.py
    ... --variants default,no_calibrate --counts 2000 --quick
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # scripts/validation (not a package install)

from validation.common import compare_samples   # noqa: E402

from xspec_sbi.baseline.comparison import fit_and_chain   # noqa: E402
from xspec_sbi.baseline.mcmc import resolve_walkers   # noqa: E402
from xspec_sbi.demo import reference_session   # noqa: E402
from xspec_sbi.files import atomic_write_text   # noqa: E402
from xspec_sbi.forward.simulate import simulate   # noqa: E402
from xspec_sbi.inference.config import NPEConfig   # noqa: E402
from xspec_sbi.inference.priors import build_prior   # noqa: E402
from xspec_sbi.inference.restrict import CountWindow, restrict_by_classifier   # noqa: E402
from xspec_sbi.inference.training import train_npe   # noqa: E402
from xspec_sbi.pipeline import likelihood_check   # noqa: E402
from xspec_sbi.presets.nicer import REFERENCE_PARAMETERS   # noqa: E402
from xspec_sbi.presets.table1 import table1_prior   # noqa: E402

TARGETS = {"ess_fraction": 0.5, "median_diff_sd": 0.15, "width_ratio": (0.9, 1.1)}

#: name -> (NPEConfig changes, training simulations), in the order they run:
#: the most informative first, so a run cut short still answers the main questions.
VARIANTS = {
    "default": ({}, 10_000),
    "no_calibrate": ({"calibrate": False}, 10_000),
    "default_20k": ({}, 20_000),
    "ensemble3": ({"ensemble_size": 3}, 10_000),
    "patience40": ({"patience": 40}, 10_000),
    "lr1e-3": ({"learning_rate": 1e-3}, 10_000),
    "hidden100": ({"hidden_features": 100}, 10_000),
    "transforms8": ({"num_transforms": 8}, 10_000),
    "embedding64": ({"embedding_features": 64}, 10_000),
    # sbi's nflows NSF: ~6x slower per epoch than "cmaf" here (smoke run), so last
    "nsf": ({"estimator": "nsf"}, 10_000),
    # added after the first rows: calibration widens, the ensemble centres; both levers together
    "ensemble3_no_calibrate": ({"ensemble_size": 3, "calibrate": False}, 10_000),
    "hidden100_no_calibrate": ({"hidden_features": 100, "calibrate": False}, 10_000),
    "no_calibrate_20k": ({"calibrate": False}, 20_000),
    "ensemble3_20k": ({"ensemble_size": 3}, 20_000),
}


def prepare(counts: float, n_max: int, chain_length: int, chain_burn: int, seed: int) -> dict:
    """Spectrum, restricted prior, training set of ``n_max`` rows and the reference chain."""
    session, note = reference_session(counts, seed=seed + 1)   # the validation's spectrum
    sim = session.simulator()
    box = build_prior(session.model.parameters, table1_prior(1))
    stat_fn = session.statistic_function(sim)
    rng = np.random.default_rng([seed, int(counts)])

    def simulate_fn(theta, r):   # in process: ~30,000 spectra/s, a pool would cost more here
        return simulate(sim, theta, seed=int(r.integers(2**63 - 1)))

    t0 = time.perf_counter()
    restriction = restrict_by_classifier(simulate_fn, box, CountWindow(counts / 2, counts * 5), rng=rng)
    t_restrict = time.perf_counter() - t0
    theta = restriction.prior.sample(n_max, rng=rng)
    x = simulate_fn(theta, rng)
    t0 = time.perf_counter()
    free = session.model.free_parameters
    walkers, burn, length = resolve_walkers(None, chain_burn, chain_length, len(free))
    truth = np.array([REFERENCE_PARAMETERS[n] for n in box.names])
    fit, chain = fit_and_chain(stat_fn, truth, box, free, length, burn, walkers, rng)
    t_chain = time.perf_counter() - t0
    print(f"{counts:.0f} counts: {session.observed().sum():.0f} observed, {sim.n_bins} bins; restriction "
          f"{t_restrict:.0f} s; {n_max} training spectra (median {np.median(x.sum(1)):.0f} counts); "
          f"fit + chain {t_chain:.0f} s ({len(chain.samples)} samples)", flush=True)
    return dict(counts=counts, session=session, note=note, sim=sim, box=box, stat_fn=stat_fn,
                theta=theta, x=x, chain=chain.samples, t_restrict=t_restrict, t_chain=t_chain,
                chain_median=np.median(chain.samples, axis=0), chain_sd=chain.samples.std(axis=0))


def evaluate(case: dict, name: str, changes: dict, n_sims: int, n_samples: int, seed: int,
             quick: bool) -> dict:
    """Train one variant on the case's first ``n_sims`` pairs; check it against the chain."""
    config = replace(NPEConfig(max_epochs=40, patience=8) if quick else NPEConfig(), **changes)
    t0 = time.perf_counter()
    post = train_npe(case["theta"][:n_sims], case["x"][:n_sims], case["box"], rng=seed + 100,
                     config=config)
    t_train = time.perf_counter() - t0
    x_obs = case["session"].observed()
    raw = post.sample(x_obs[None, :], n_samples, rng=seed + 200)[0]
    # sbi_fit's own check, fed the few things it reads from a run's shared state
    st = SimpleNamespace(stat_fn=case["stat_fn"], box=case["box"], sim=case["sim"], x_obs=x_obs,
                         rng=np.random.default_rng(seed + 300), checked=0,
                         options=SimpleNamespace(budget=SimpleNamespace(check_seconds=120.0)))
    corr = likelihood_check(raw, post, st)
    cmp = compare_samples(raw, case["chain"], case["box"].names)
    cmp.pop("c2st")   # a C2ST per row costs more than the row's training; medians and widths answer
    names = list(case["box"].names)
    med = [cmp[n]["median_diff_sd"] for n in names]
    wid = [cmp[n]["width_ratio"] for n in names]
    meets = (corr.ess_fraction >= TARGETS["ess_fraction"] and max(med) <= TARGETS["median_diff_sd"]
             and all(TARGETS["width_ratio"][0] <= w <= TARGETS["width_ratio"][1] for w in wid))
    s = post.summary
    return dict(counts=case["counts"], variant=name, changes=changes, n_simulations=n_sims,
                ess_fraction=float(corr.ess_fraction), pareto_k=float(corr.pareto_k),
                reliable=bool(corr.reliable), median_diff_sd=dict(zip(names, med)),
                width_ratio=dict(zip(names, wid)), train_seconds=t_train, epochs=s.epochs,
                best_epoch=s.best_epoch, validation_loss=s.best_validation_loss, meets=bool(meets),
                load_average=os.getloadavg())


def short(name: str) -> str:
    return name.split(".")[-1]


def table(rows: list[dict], names: list[str]) -> str:
    """Markdown table, one row per spectrum x variant."""
    head = ("| counts | variant | sims | train s | epochs | ESS % | k | "
            + " | ".join(f"Δmed/sd {short(n)}" for n in names) + " | "
            + " | ".join(f"w68 {short(n)}" for n in names) + " | targets |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['counts']:.0f} | {r['variant']} | {r['n_simulations']} | {r['train_seconds']:.0f} | "
            f"{r['epochs']} | {100 * r['ess_fraction']:.1f} | {r['pareto_k']:.2f} | "
            + " | ".join(f"{r['median_diff_sd'][n]:.3f}" for n in names) + " | "
            + " | ".join(f"{r['width_ratio'][n]:.3f}" for n in names)
            + f" | {'met' if r['meets'] else 'missed'} |")
    return "\n".join(lines)


def write(out: Path, rows, cases, names, meta) -> None:
    text = [
        "# Network study: the network alone on the paper's reference spectra (issue 12, item 2)",
        "",
        f"Written by `scripts/study_network.py` ({meta['command']}); started {meta['started']}, "
        f"{'finished' if meta.get('finished') else 'in progress / interrupted'}.",
        "",
        "Targets: ESS fraction of the exact-likelihood check >= 50 %; the network's raw draws within "
        "0.15 chain sd of the chain's medians; 68 % width ratio (network / chain) in [0.9, 1.1]. "
        f"ESS and k from `xspec_sbi.pipeline.likelihood_check` on {meta.get('samples') or 10_000:,} raw draws; "
        "medians and widths from the raw draws against one Goodman-Weare chain per spectrum (8 walkers, "
        f"length {meta.get('chain_length') or 50_000:,}, burn {meta.get('chain_burn') or 5_000:,}). Same training set (nested budgets) and seeds for every variant; "
        "one torch thread; wall seconds on a shared 2-core machine (load averages below).",
        "",
        table(rows, names),
        "",
        "Per spectrum: " + "; ".join(
            f"{c['counts']:.0f} counts: restriction {c['t_restrict']:.0f} s, fit + chain {c['t_chain']:.0f} s"
            for c in cases),
        "",
        "Load averages (1, 5, 15 min) at the end of each row: " + "; ".join(
            f"{r['counts']:.0f}/{r['variant']}: {r['load_average'][0]:.1f}, {r['load_average'][1]:.1f}, "
            f"{r['load_average'][2]:.1f}" for r in rows),
        "",
    ]
    atomic_write_text(out.with_suffix(".md"), "\n".join(text), overwrite=True)
    record = {"meta": meta, "targets": TARGETS, "rows": rows,
              "cases": [{k: c[k] for k in ("counts", "note", "t_restrict", "t_chain")}
                        | {k: np.asarray(c[k]).tolist() for k in ("chain_median", "chain_sd")}
                        for c in cases]}
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=1, default=float), overwrite=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2000,20000", help="reference spectra (counts), comma-separated")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    ap.add_argument("--samples", type=int, default=10_000, help="raw network draws per check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/network_study", help="report path without suffix")
    ap.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    ap.add_argument("--merge", default=None,
                    help="comma-separated .json of earlier runs (e.g. one per spectrum, run side by side): "
                         "write their rows as one report at --out, and run nothing")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge.split(",")]
        rows = [r for p in parts for r in p["rows"]]
        meta = dict(command=" + ".join(p["meta"]["command"] for p in parts),
                    started=min(p["meta"]["started"] for p in parts),
                    **{k: parts[0]["meta"].get(k) for k in ("samples", "chain_length", "chain_burn")},
                    finished=None if any(not p["meta"].get("finished") for p in parts)
                    else max(p["meta"]["finished"] for p in parts))
        write(Path(args.out), rows, [c for p in parts for c in p["cases"]], list(rows[0]["median_diff_sd"]), meta)
        print(table(rows, list(rows[0]["median_diff_sd"])))
        return 0
    torch.set_num_threads(1)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; known {list(VARIANTS)}")
    scale = 0.1 if args.quick else 1.0
    # one training set of the largest budget of ALL variants, whichever run: the same rows (and the
    # same generator state for the chain after them) in every run of a spectrum
    n_max = int(scale * max(n for _, n in VARIANTS.values()))
    chain_length, burn = (8000, 1000) if args.quick else (50_000, 5_000)
    meta = dict(command="python scripts/study_network.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_at_start=os.getloadavg(),
                seed=args.seed, samples=args.samples, quick=args.quick, chain_length=chain_length,
                chain_burn=burn)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"load average at start {os.getloadavg()}", flush=True)
    cases = [prepare(float(c), n_max, chain_length, burn, args.seed) for c in args.counts.split(",")]
    names = list(cases[0]["box"].names)
    rows = []
    for v in variants:   # variant outer: a run cut short has every spectrum for the first variants
        changes, n = VARIANTS[v]
        for case in cases:
            r = evaluate(case, v, changes, int(scale * n), args.samples, args.seed, args.quick)
            rows.append(r)
            print(f"{r['counts']:6.0f} {v:16s} {r['n_simulations']:6d} sims {r['train_seconds']:6.1f} s "
                  f"{r['epochs']:4d} ep  ESS {100 * r['ess_fraction']:5.1f} %  k {r['pareto_k']:5.2f}  "
                  f"dmed {' '.join(f'{x:.3f}' for x in r['median_diff_sd'].values())}  "
                  f"w68 {' '.join(f'{x:.3f}' for x in r['width_ratio'].values())}  "
                  f"{'MET' if r['meets'] else 'missed'}  load {r['load_average'][0]:.1f}", flush=True)
            write(out, rows, cases, names, meta)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write(out, rows, cases, names, meta)
    print()
    print(table(rows, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
