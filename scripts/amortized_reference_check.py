"""Bench cases e and f: amortized SBI and the Goodman-Weare chain against an independent reference.

The burst posteriors of ``bench_end_to_end.py`` cases e and f are broad (a weak
blackbody: kT and bbodyrad.norm spread over much of the prior), and the case's
agreement columns compare SBI with one 8-walker chain started from SBI's
draws. Here each spectrum gets two chains (started from the draws without and
with the defensive t of ``xspec_sbi.amortized``) and a reference that depends
on neither: importance sampling of the exact C-stat likelihood from a Student t
fitted to the chains' and SBI's draws together, widened 1.6x
(``bench_end_to_end.t_reference``; its ESS and Pareto k are printed).

Usage: python scripts/amortized_reference_check.py [--case f] [--spectra 2] [--draws 200000]
(about 4 minutes a spectrum on 2 cores; spectrum 2 of case f is its simulated one)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_end_to_end as B  # noqa: E402
import xspec_sbi.amortized as A  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=("e", "f"), default="f", help="bench_end_to_end's amortized case")
    ap.add_argument("--spectra", default="2", help="comma-separated indices of the case's spectra (0-2)")
    ap.add_argument("--draws", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    bud = B.budgets(False)
    seed = args.seed
    _, sessions, train = B.amortized_spectra(3, seed, args.case == "f")
    # as the benchmark: case e's network may refine on its training spectrum, f's may not
    r, _ = B.fit_sbi(train, B.table1_prior(3), "counts:100-10000", bud, seed, refine=args.case == "e")
    xs = np.stack([s.observed() for s in sessions])
    sims = [s.simulator() for s in sessions]
    share = A.DEFENSIVE_SHARE
    outs = {}
    for a in (0.0, share):
        A.DEFENSIVE_SHARE = a
        outs[a] = A.amortized_posteriors(r.posterior, sims[0], r.prior, xs, n_samples=10_000,
                                         seed=seed, simulators=sims)
    A.DEFENSIVE_SHARE = share
    log10 = lambda a: np.where(r.prior.is_log, np.log10(a), a)  # noqa: E731
    print("parameters:", ", ".join(r.names), "(log10 where the prior is log-uniform)")
    for i in (int(v) for v in args.spectra.split(",")):
        s = sessions[i]
        chains = [B.chain_of(s, r.prior, outs[a].samples[i], bud, seed + 200 + i + 700 * j)[0].samples
                  for j, a in enumerate(outs)]
        both = np.vstack([c[::5] for c in chains] + [outs[share].samples[i][::2]])
        draws, ess, k = B.t_reference(s.statistic_function(), r.prior, both, args.draws, 1.6,
                                    np.random.default_rng(seed + 11))
        print(f"\nspectrum {i} ({s.observed().sum():.0f} counts): reference ESS {ess:.0f}, "
              f"Pareto k {k:.2f}; 16/50/84th percentiles:")
        print("  reference       ", np.percentile(log10(draws), [16, 50, 84], axis=0).T.round(3).tolist())
        rows = [(f"chain {j + 1}", c) for j, c in enumerate(chains)]
        rows += [(f"SBI, t share {a:g}", outs[a].samples[i]) for a in outs]
        for label, x in rows:
            ag = B.agreement(x, draws, r.prior.is_log, 0, seed, with_c2st=False)
            extra = ""
            if label.startswith("SBI"):
                o = outs[float(label.split()[-1])]
                extra = f", ESS {o.ess_fraction[i]:.3f}, k {o.pareto_k[i]:.2f}"
            print(f"  {label:16s} max |dmedian|/sd {ag['dmed']:.3f}, widths {ag['w_lo']:.2f}-"
                  f"{ag['w_hi']:.2f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
