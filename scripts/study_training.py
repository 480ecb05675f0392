"""How fast can the posterior network train without getting worse (issue 12, items 7 and 2)?

Three training sets, each made once and cached (``--cache``):

* ``a``: ``scripts/bench_end_to_end.py``'s case a (paper reference, 2,000 counts,
  3 free, count-window restriction), the 10,000 simulations ``sbi_fit`` trains on;
* ``b``: its case b (NICER persistent, ``tbabs*(powerlaw+bbodyrad)``, 5 free,
  C-stat restriction), likewise;
* ``20k``: ``scripts/study_network.py``'s 20,000-count reference spectrum
  (10,000 simulations from its classifier restriction).

The training set is the one ``sbi_fit`` would train on (its call to
``train_npe`` is intercepted), and the reference is a Goodman-Weare chain on
the exact statistic (XSPEC's chain defaults, 8 walkers, length 50,000, burn
5,000) computed once per case. Each variant is one :class:`NPEConfig` change,
trained with ``--seeds`` training seeds on the same set; per row: training wall
seconds, epochs, ESS fraction and Pareto k of ``sbi_fit``'s exact-likelihood
check on 10,000 raw draws, and max |median difference| / chain sd and the range
of 68 % width ratios of the raw draws against the chain.

    PYTHONPATH=$PWD .venv/bin/python scripts/study_training.py --cases a,b --variants default,pat5 --out reports/training_study.jsonl
    PYTHONPATH=$PWD .venv/bin/python scripts/study_training.py --table reports/training_study.jsonl
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))   # the bench's cases and the validation helpers (not a package install)

import bench_end_to_end as bench   # noqa: E402
from validation.common import compare_samples   # noqa: E402

from xspec_sbi import pipeline   # noqa: E402
from xspec_sbi.inference.config import NPEConfig   # noqa: E402
from xspec_sbi.inference.priors import build_prior   # noqa: E402
from xspec_sbi.inference.training import train_npe   # noqa: E402

#: name -> NPEConfig changes (the rows of reports/training_study.md); "_seq": members in this
#: process (the weights are the same in worker processes; the time is not)
VARIANTS = {
    "default": {},
    "cos20": {"epochs": 20},
    "cos30": {"epochs": 30},
    "bs1024": {"batch_size": 1024, "learning_rate": 3e-3},
    "pat5": {"patience": 5},
    "cos40_lr4e-3": {"epochs": 40, "learning_rate": 4e-3},
    "ens3_nocal": {"ensemble_size": 3, "calibrate": False},
    "ens3_nocal_seq": {"ensemble_size": 3, "calibrate": False, "member_workers": 1},
    "ens3_nocal_pat5_seq": {"ensemble_size": 3, "calibrate": False, "patience": 5, "member_workers": 1},
    "ens3_nocal_splits": {"ensemble_size": 3, "calibrate": False, "member_splits": True},
}


class _Captured(Exception):
    pass


def _session(key):
    if key == "20k":
        from xspec_sbi.demo import reference_session
        from xspec_sbi.presets.table1 import table1_prior
        session, _ = reference_session(20000.0, seed=1)   # study_network.py's spectrum (seed 0 + 1)
        return session, table1_prior(1), None
    session, prior, restrict, _ = bench.CASES[key]()
    return session, prior, restrict


def prepare(key: str, cache: Path) -> dict:
    """Session, prior box, training set and reference chain of case ``key`` (cached)."""
    session, prior, restrict = _session(key)
    box = build_prior(session.model.parameters, prior)
    path = cache / f"training_set_{key}.npz"
    if not path.exists():
        t0 = time.perf_counter()
        if key == "20k":
            sys.path.insert(0, str(HERE))
            import study_network
            case = study_network.prepare(20000.0, 10_000, 50_000, 5_000, 0)
            theta, x, chain = case["theta"], case["x"], case["chain"]
        else:
            got = {}

            def capture(theta, x, prior_box, **kw):
                got.update(theta=theta, x=x)
                raise _Captured

            real, pipeline.train_npe = pipeline.train_npe, capture
            try:
                bench.fit_sbi(session, prior, restrict, bench.budgets(False), seed=0, refine=False)
            except _Captured:
                pass
            finally:
                pipeline.train_npe = real
            theta, x = got["theta"], got["x"]
            chain, _ = bench.chain_of(session, box, theta, bench.budgets(False), seed=1)
            chain = chain.samples
        np.savez(path, theta=theta, x=x, chain=chain)
        print(f"{key}: prepared in {time.perf_counter() - t0:.0f} s", flush=True)
    d = np.load(path)
    return dict(key=key, session=session, box=box, sim=session.simulator(),
                stat_fn=session.statistic_function(), x_obs=session.observed(),
                theta=d["theta"], x=d["x"], chain=d["chain"])


def _cpu() -> float:
    """CPU seconds of this process and its finished children (spawned ensemble members)."""
    import resource
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def evaluate(case: dict, name: str, changes: dict, seed: int, n_samples: int = 10_000) -> dict:
    """Train one variant with training seed ``seed``; check its raw draws."""
    config = replace(NPEConfig(), **changes)
    t0, c0 = time.perf_counter(), _cpu()
    post = train_npe(case["theta"], case["x"], case["box"], rng=seed + 100, config=config)
    t_train, c_train = time.perf_counter() - t0, _cpu() - c0
    raw = post.sample(case["x_obs"][None, :], n_samples, rng=seed + 200)[0]
    st = SimpleNamespace(stat_fn=case["stat_fn"], box=case["box"], sim=case["sim"], x_obs=case["x_obs"],
                         rng=np.random.default_rng(seed + 300), checked=0,
                         options=SimpleNamespace(budget=SimpleNamespace(check_seconds=120.0)))
    corr = pipeline.likelihood_check(raw, post, st)
    # log-prior parameters compared in log10, as the bench does
    f = lambda s: np.where(case["box"].is_log, np.log10(np.abs(s) + 1e-300), s)
    cmp = compare_samples(f(raw), f(case["chain"]), case["box"].names)
    cmp.pop("c2st")
    med = [cmp[n]["median_diff_sd"] for n in case["box"].names]
    wid = [cmp[n]["width_ratio"] for n in case["box"].names]
    s = post.summary
    return dict(case=case["key"], variant=name, changes=changes, seed=seed, train_seconds=t_train,
                cpu_seconds=c_train,
                epochs=s.epochs, best_epoch=s.best_epoch, val_loss=s.best_validation_loss,
                ess=float(corr.ess_fraction), k=float(corr.pareto_k), dmed=max(med),
                w_lo=min(wid), w_hi=max(wid), load=os.getloadavg()[0])


def line(r: dict) -> str:
    return (f"| {r['case']} | {r['variant']} | {r['seed']} | {r['train_seconds']:.1f} | "
            f"{r['cpu_seconds']:.1f} | {r['epochs']} | "
            f"{100 * r['ess']:.0f} | {r['k']:.2f} | {r['dmed']:.2f} | {r['w_lo']:.2f}-{r['w_hi']:.2f} | "
            f"{r['load']:.1f} |")


def summary_table(rows: list[dict]) -> str:
    """Markdown: one line per case and variant, the seeds' values side by side (the latest row of each)."""
    latest = {(r["case"], r["variant"], r["seed"]): r for r in rows}
    groups: dict = {}
    for (case, variant, _), r in latest.items():
        groups.setdefault((case, variant), []).append(r)
    cells = {"wall s": lambda r: f"{r['train_seconds']:.0f}", "CPU s": lambda r: f"{r['cpu_seconds']:.0f}" if 'cpu_seconds' in r else "-",
             "epochs": lambda r: str(r["epochs"]), "ESS %": lambda r: f"{100 * r['ess']:.0f}",
             "max \\|Δmed\\|/sd": lambda r: f"{r['dmed']:.2f}",
             "w68": lambda r: f"{r['w_lo']:.2f}-{r['w_hi']:.2f}"}
    out = ["| case | variant | " + " | ".join(cells) + " |", "|---|---|" + "---|" * len(cells)]
    for (case, variant), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[1][0]["train_seconds"])):
        g = sorted(g, key=lambda r: r["seed"])
        out.append(f"| {case} | {variant} | "
                   + " | ".join(" / ".join(f(r) for r in g) for f in cells.values()) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="a,b,20k")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--cache", default="/tmp/xspec_sbi_training_study")
    ap.add_argument("--out", default=None, help="append rows (JSON lines) to this file")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--table", default=None, help="print the summary table of these JSON lines, run nothing")
    args = ap.parse_args(argv)
    if args.table:
        print(summary_table([json.loads(t) for t in Path(args.table).read_text().splitlines() if t]))
        return 0
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cases = [prepare(k, cache) for k in args.cases.split(",")]
    if args.prepare_only:
        return 0
    print("| case | variant | seed | train s | CPU s | epochs | ESS % | k | max dmed/sd | w68 | load |", flush=True)
    for v in args.variants.split(","):
        for case in cases:
            for seed in (int(s) for s in args.seeds.split(",")):
                r = evaluate(case, v, VARIANTS[v], seed)
                print(line(r), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(r, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
