"""Time NPE training and batched sampling on the real engine; measure coverage.

The paper's reference case: ``tbabs*powerlaw`` (wilm), the NICER-like response of
:func:`xspec_sbi.demo.reference_session` (~193 bins over 0.3-10 keV), Table 1's
prior (model 1), restricted by the classifier to spectra of 1,000-10,000 counts
(the 2,000-count case). Training and test spectra are drawn from the restricted
prior and simulated with the embedded engine over a 2-process pool.

For each estimator it prints the training time for ``--n-train`` simulations,
the time to draw ``--n-samples`` posterior samples for each of ``--n-test``
spectra, and the empirical coverage of central 68 % / 95 % intervals per
parameter, then the ratios against the baselines measured in the same process:

* ``previous``: the previous default (sbi's ``zuko_maf``, logit map, constant
  step size, patience on the raw validation loss) trained by our loop;
* ``sbi``: sbi's own ``NPE(density_estimator="maf").train()`` and
  ``sample_batched`` on the same (transformed) data, with sbi's defaults.

    .venv/bin/python scripts/bench_inference.py --threads 1
    .venv/bin/python scripts/bench_inference.py --estimators default,ensemble2 --no-sbi

The machine is shared; wall times carry its load (printed). CPU times
(``time.process_time``) of one-thread runs are less sensitive to it.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from dataclasses import replace

import numpy as np
import torch

from xspec_sbi.demo import reference_session
from xspec_sbi.checks.calibration import interval_coverage
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.inference.latent import from_latent, to_latent
from xspec_sbi.inference.torch_state import torch_threads
from xspec_sbi.inference.training import train_npe
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.presets.table1 import table1_prior
from xspec_sbi.inference.restrict import CountWindow, restrict_by_classifier
from xspec_sbi.forward.simulate import make_pool, simulate

LEVELS = (0.68, 0.95)

ESTIMATORS = {
    "default": NPEConfig(),
    "ensemble2": NPEConfig(ensemble_size=2),
    "previous": NPEConfig(estimator="zuko_maf", theta_map="logit", min_epochs=1, smoothing=1.0,
                          lr_decay_patience=None),
}


def timed(fn):
    """(result, wall s, cpu s) of fn()."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def run_ours(name, config, theta, x, theta_t, x_t, prior, n_samples, seed):
    post, t_train, c_train = timed(lambda: train_npe(theta, x, prior, rng=seed, config=config))
    samples, t_sample, c_sample = timed(lambda: post.sample(x_t, n_samples, rng=seed + 1))
    s = post.summary
    note = f"{s.epochs} epochs (best {s.best_epoch}), val {s.best_validation_loss:.3f} nat"
    return dict(name=name, train=t_train, train_cpu=c_train, sample=t_sample, sample_cpu=c_sample,
                coverage=interval_coverage(samples, theta_t, LEVELS), note=note)


def run_sbi(theta, x, theta_t, x_t, prior, n_samples, seed, threads):
    """sbi's NPE on our features and logit-mapped, z-scored parameters."""
    from sbi.inference import NPE

    ref = NPEConfig(estimator="maf", theta_map="logit", embedding=None)
    z = to_latent(prior, theta, ref.theta_map)
    mean, std = z.mean(0), z.std(0)
    from xspec_sbi.inference.features import FeatureTransform
    ft = FeatureTransform.fit(x, ref.x_transform)
    s_tr = torch.as_tensor((z - mean) / std, dtype=torch.float32)
    f_tr, f_t = torch.as_tensor(ft.apply(x)), torch.as_tensor(ft.apply(x_t))
    base = torch.distributions.MultivariateNormal(torch.zeros(prior.n_dim), 100.0 * torch.eye(prior.n_dim))
    torch.manual_seed(seed)
    with torch_threads(threads), contextlib.redirect_stdout(io.StringIO()):
        inference = NPE(prior=base, density_estimator="maf", show_progress_bars=False)
        est, t_train, c_train = timed(lambda: inference.append_simulations(s_tr, f_tr).train())
        posterior = inference.build_posterior(est)
        draws, t_sample, c_sample = timed(
            lambda: posterior.sample_batched((n_samples,), x=f_t, show_progress_bars=False))
    d = draws.double().numpy().transpose(1, 0, 2)                  # (m, n, k)
    samples = from_latent(prior, d.reshape(-1, prior.n_dim) * std + mean, ref.theta_map).reshape(d.shape)
    epochs = inference.summary["epochs_trained"][-1]
    return dict(name="sbi", train=t_train, train_cpu=c_train, sample=t_sample, sample_cpu=c_sample,
                coverage=interval_coverage(samples, theta_t, LEVELS),
                note=f"sbi NPE maf defaults, {epochs} epochs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every estimator")
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--counts", type=float, default=2000.0, help="counts of the reference spectrum")
    ap.add_argument("--estimators", default="default,ensemble2,previous",
                    help=f"comma-separated, from {sorted(ESTIMATORS)}")
    ap.add_argument("--no-sbi", action="store_true", help="skip sbi's own NPE (minutes)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    session, note = reference_session(args.counts)
    sim = session.simulator()
    prior = build_prior(session.model.parameters, table1_prior(1))
    print(f"tbabs*powerlaw, {sim.n_bins} bins; {note}")
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    rng = np.random.default_rng(args.seed)
    with make_pool(sim, 2) as pool:
        def simulate_fn(theta, r):
            return simulate(sim, theta, seed=int(r.integers(2**62)), executor=pool)

        res, t_restrict, _ = timed(lambda: restrict_by_classifier(
            simulate_fn, prior, CountWindow(args.counts / 2, args.counts * 5), rng=rng))
        n = args.n_train + args.n_test
        theta_all = res.prior.sample(n, rng=rng)
        x_all, t_sim, _ = timed(lambda: simulate_fn(theta_all, rng))
    theta, x = theta_all[:args.n_train], x_all[:args.n_train]
    theta_t, x_t = theta_all[args.n_train:], x_all[args.n_train:]
    print(f"restricted prior: {t_restrict:.1f} s, valid fractions {res.valid_fractions}; simulated {n} spectra "
          f"in {t_sim:.1f} s ({n / t_sim:.0f}/s); median counts {np.median(x.sum(1)):.0f}")

    rows = []
    for name in args.estimators.split(","):
        config = replace(ESTIMATORS[name], num_threads=args.threads)
        rows.append(run_ours(name, config, theta, x, theta_t, x_t, prior, args.n_samples, args.seed + 10))
        print(f"  done {name}: {rows[-1]['train']:.1f} s, {rows[-1]['note']}", flush=True)
    if not args.no_sbi:
        rows.append(run_sbi(theta, x, theta_t, x_t, prior, args.n_samples, args.seed + 10, args.threads))

    names = prior.names
    print(f"\n{args.n_train} training simulations; posterior for {args.n_test} spectra x {args.n_samples} samples; "
          f"coverage over {args.n_test} test spectra (binomial s.e. {np.sqrt(.68 * .32 / args.n_test):.3f} at 68 %, "
          f"{np.sqrt(.95 * .05 / args.n_test):.3f} at 95 %); load average now {os.getloadavg()[0]:.1f}")
    head = f"{'estimator':10s} {'train s':>8s} {'(cpu)':>7s} {'sample s':>9s} {'(cpu)':>7s}  " + "  ".join(
        f"{n.split('.')[-1] + ' 68/95':>14s}" for n in names)
    print(head)
    for r in rows:
        cov = "  ".join(f"{r['coverage'][0, j]:6.3f}/{r['coverage'][1, j]:.3f}" for j in range(len(names)))
        print(f"{r['name']:10s} {r['train']:8.1f} {r['train_cpu']:7.1f} {r['sample']:9.2f} {r['sample_cpu']:7.2f}  "
              f"{cov}   {r['note']}")
    first = rows[0]
    for r in rows[1:]:
        print(f"{first['name']} vs {r['name']}: training {r['train'] / first['train']:.1f}x faster, "
              f"sampling {r['sample'] / first['sample']:.1f}x faster")


if __name__ == "__main__":
    main()
