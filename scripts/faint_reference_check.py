"""Which is right on the faint, background-dominated case: SBI or the Goodman-Weare chain?

Benchmark case c (``scripts/bench_end_to_end.py``: ``tbabs*powerlaw`` with
powerlaw.norm = 1e-6 through the XMM-pn response of NGC 7793 ULX-4 with its
real background, W-stat, wide log priors) gave SBI and the chain 0.35 chain sd
apart. Both are compared here with a third, independent answer that needs no
network and no chain: 1,000,000 draws from the prior weighted by the exact
W-stat likelihood (effective sample size printed; thousands, on this broad
posterior), resampled to 10,000. Medians and 68 % widths in log10 for the
log-prior parameters, as the benchmark measures them.

Usage: python scripts/faint_reference_check.py [--draws 1000000]   (about 3 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_end_to_end as B  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1_000_000, help="prior draws weighted by the likelihood")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    bud = B.budgets(False)
    session, prior, restrict, _ = B.CASES["c"]()
    r, t_sbi = B.fit_sbi(session, prior, restrict, bud, args.seed)
    chain, t_chain = B.chain_of(session, r.prior, r.samples, bud, args.seed + 1)
    stat = session.statistic_function()
    theta = r.prior.sample(args.draws, rng=args.seed + 5)
    t0 = time.perf_counter()
    s = np.concatenate([stat(theta[i:i + 5000]) for i in range(0, len(theta), 5000)])
    w = np.exp(-0.5 * (s - s.min()))
    w /= w.sum()
    exact = theta[np.random.default_rng(args.seed + 6).choice(len(theta), 10_000, p=w)]
    print(f"prior draws weighted by the exact likelihood: {args.draws} draws, ESS {1 / np.sum(w * w):.0f}, "
          f"{time.perf_counter() - t0:.0f} s; SBI {t_sbi:.1f} s, chain {t_chain:.1f} s")
    for name, a, b in (("SBI vs weighted prior draws", r.samples, exact),
                       ("chain vs weighted prior draws", chain.samples, exact),
                       ("SBI vs chain", r.samples, chain.samples)):
        ag = B.agreement(a, b, r.prior.is_log, 2000, args.seed)
        print(f"{name}: max |dmedian|/sd {ag['dmed']:.3f}, 68 % width ratio {ag['w_lo']:.2f}-{ag['w_hi']:.2f}, "
              f"C2ST {ag['c2st']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
