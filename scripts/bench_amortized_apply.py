"""Seconds per applied spectrum of the amortized path (issue 12 item 9), beside one chain's.

The burst set-up of ``bench_end_to_end.py`` case e: one network trained on a
small budget (refinement off), applied with the exact-likelihood correction
(``SBIResult.posteriors_for``) to ``--n`` simulated burst spectra at 10,000 and
1,000 draws each, then one Goodman-Weare chain with XSPEC's defaults (burn
5,000, length 50,000) on the first spectrum. Run it at two commits back to
back (``PYTHONPATH=<tree>``) to compare; the checksum line shows whether the
two gave the same numbers. With ``--workers N`` (N > 1) each application
also runs with the exact statistics on a pool of N processes (started once,
its start-up printed apart) and with ``posteriors_for``'s default (a pool of
all cores started for the call when the measured work outweighs the
start-up, which is then included); the ratio pooled / in-process of the same
run is printed, with every checksum (they must be equal).

Usage: python scripts/bench_amortized_apply.py [--n 6] [--sims 2000] [--workers 2] [--no-chain]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_end_to_end as bench  # noqa: E402

from xspec_sbi.forward.simulate import fakeit_spectrum  # noqa: E402
from xspec_sbi.presets.table1 import table1_prior  # noqa: E402
from xspec_sbi.session import Session  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6, help="burst spectra applied to")
    ap.add_argument("--sims", type=int, default=2000, help="training simulations")
    ap.add_argument("--no-chain", action="store_true", help="skip the chain")
    ap.add_argument("--workers", type=int, default=1,
                    help="also apply with the statistics on a pool of this many processes")
    args = ap.parse_args(argv)
    bud = dict(bench.budgets(False), sims=args.sims, refine_rounds=1)
    rng = np.random.default_rng(100)
    template, model = bench.burst_setup()
    thetas = bench.burst_thetas(template, model, args.n, rng)
    spectra = [fakeit_spectrum(template, model, th, rng) for th in thetas]
    train = Session((fakeit_spectrum(template, model, thetas[0], rng),), model)
    t0 = time.perf_counter()
    r, _ = bench.fit_sbi(train, table1_prior(3), "counts:100-10000", bud, 0, refine=False)
    print(f"training {time.perf_counter() - t0:.1f} s", flush=True)
    pool = None
    if args.workers > 1:
        from xspec_sbi.forward.simulate import make_pool
        t0 = time.perf_counter()
        pool = make_pool(r.session.simulator(), args.workers)
        print(f"pool of {args.workers} started in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        for n_draws in (10_000, 1_000):
            dt = {}
            modes = [("in-process", dict(workers=1))]
            if pool is not None:   # the pool above; then the default, which starts its own when worth it
                modes += [("pooled", dict(executor=pool)), ("default workers", dict(workers=None))]
            for how, kw in modes:
                t0 = time.perf_counter()
                post = r.posteriors_for(spectra, n_samples=n_draws, seed=0, **kw)
                dt[how] = (time.perf_counter() - t0) / args.n
                print(f"apply {n_draws} draws, {how}: {dt[how]:.3f} s per spectrum; median ESS "
                      f"{100 * np.nanmedian(post.ess_fraction):.2f} %, draws weighed "
                      f"{'all' if post.weighed is None else ' '.join(map(str, post.weighed))}, reliable "
                      f"{int(post.reliable.sum())}/{args.n}; checksum {post.samples.sum():.10e} "
                      f"{post.ess_fraction.sum():.12f}; load {os.getloadavg()[0]:.1f}", flush=True)
            if pool is not None:
                print(f"apply {n_draws} draws: pooled / in-process {dt['pooled'] / dt['in-process']:.2f}",
                      flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    if not args.no_chain:
        import emcee
        s = Session((spectra[0],), model)
        chain, t_chain = bench.chain_of(s, r.prior, post.samples[0], bud, 1)
        steps = chain.walker_chains()
        # the chain's own effective draws (integrated autocorrelation time, log10 of log-prior parameters)
        g = np.where(r.prior.is_log, np.log10(np.abs(steps) + 1e-300), steps)
        tau = emcee.autocorr.integrated_time(g, quiet=True)
        print(f"one chain (burn {bud['burn']:,}, length {bud['length']:,}): {t_chain:.1f} s; its effective "
              f"draws per parameter {' '.join(f'{v:,.0f}' for v in chain.length / tau)}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
