"""NICER bursts b_004 and b_008: chain and amortized SBI against importance sampling from a widened fit to the chain.

The prior-weighted reference of ``burst_reference_check.py`` has too small an
effective sample size on the bright b_008. Here the proposal is a Student t
(5 degrees of freedom) fitted to the Goodman-Weare chain in the prior's
unconstrained coordinates (log for log-prior parameters, logit of the box),
its scale widened 1.6x, so it covers more than the chain reached; its draws are
weighted by the exact C-stat likelihood times the prior over the proposal's
density (Jacobian included). The reference is then independent of the chain's
mixing and of the network: wrong only if the posterior has mass the widened t
never reaches, which its Pareto k would show. The amortized SBI side is the
validation's: one network trained on b_004 (adaptive refinement off), applied
to both spectra with the exact-likelihood correction (``posteriors_for``).

Usage: python scripts/burst_tdist_reference.py [--draws 200000] [--sims 10000]   (about 4 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_end_to_end as B  # noqa: E402
from xspec_sbi.inference.priors import build_prior  # noqa: E402
from xspec_sbi.pipeline import _normalise_prior  # noqa: E402
from xspec_sbi.presets.table1 import table1_prior  # noqa: E402
from xspec_sbi.session import Session  # noqa: E402
from validation.real_data import burst_model, burst_spectrum  # noqa: E402
from xspec_sbi.data.response import nicer_like_response  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200_000)
    ap.add_argument("--sims", type=int, default=10_000)
    ap.add_argument("--widen", type=float, default=1.6)
    args = ap.parse_args(argv)
    bud = B.budgets(False)
    nicer = B.DATA / "nicer_4u1820"
    response = nicer_like_response(nicer / "b_004_0.25s.arf")   # as the validation: one response
    model = burst_model()
    specs = [burst_spectrum(nicer / f"{n}_0.25s_raw_opt.pha", response) for n in ("b_004", "b_008")]
    box = build_prior(model.parameters, _normalise_prior(model, table1_prior(3)))
    train = Session((specs[0],), model)
    r, t_train = B.fit_sbi(train, table1_prior(3), "counts:100-10000", dict(bud, sims=args.sims), 0,
                           refine=False)
    amort = r.posteriors_for(specs, n_samples=10_000, seed=3)
    print(f"network trained on b_004 in {t_train:.0f} s; amortized ESS "
          + ", ".join(f"{100 * e:.0f} %" for e in amort.ess_fraction), flush=True)
    rng = np.random.default_rng(11)
    for i, spectrum in enumerate(specs):
        session = Session((spectrum,), model)
        stat = session.statistic_function()
        chain, _ = B.chain_of(session, box, amort.samples[i], bud, 20 + i)
        ref, ess, k = B.t_reference(stat, box, chain.samples, args.draws, args.widen, rng)
        name = Path(spectrum.label).name
        print(f"{name}: reference ESS {ess:.0f} of {args.draws:,}, Pareto k {k:.2f} "
              f"({', '.join(box.names)})")
        for label, s in (("chain", chain.samples), ("amortized SBI", amort.samples[i])):
            ag = B.agreement(s, ref, box.is_log, 0, 0, with_c2st=False)
            f = lambda x: np.where(box.is_log, np.log10(x), x)
            wr = (np.percentile(f(s), 84, 0) - np.percentile(f(s), 16, 0)) / (
                np.percentile(f(ref), 84, 0) - np.percentile(f(ref), 16, 0))
            print(f"  {label} vs reference: max |dmedian|/sd {ag['dmed']:.3f}, 68 % width ratios "
                  + ", ".join(f"{w:.2f}" for w in wr), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
