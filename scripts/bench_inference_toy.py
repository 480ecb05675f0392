"""Time NPE training and batched sampling on a toy absorbed power law; measure coverage.

The toy is self-contained numpy (no XSPEC): ~200 log-spaced bins over 0.3-10 keV,
a smooth effective area, photo-absorption ~ E^-8/3, and Poisson counts of
``norm * E^-PhoIndex * exp(-nH sigma(E)) * area * exposure``; the exposure gives
about 20000 counts for (nH, PhoIndex, norm) = (0.2, 1.7, 1). The prior is Table 1
set-up 1, truncated to parameters whose expected total counts lie in a window
(the paper's restricted prior, here with an exact region).

    .venv/bin/python scripts/bench_inference_toy.py --threads 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xspec_sbi.checks.calibration import empirical_coverage
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.inference.training import simulate_training_set, train_npe
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior
from xspec_sbi.inference.truncation import truncate
from xspec_sbi.presets.table1 import table1_prior

EDGES = np.geomspace(0.3, 10.0, 201)        # keV
E_LO, E_HI = EDGES[:-1], EDGES[1:]
E_MID = np.sqrt(E_LO * E_HI)
AREA = 300.0 * np.exp(-0.5 * (np.log(E_MID / 1.5) / 0.9) ** 2) + 5.0   # cm^2
SIGMA = 2.2 * E_MID ** (-8.0 / 3.0)          # absorption depth per 10^22 cm^-2


def expected_counts(theta: np.ndarray, exposure: float) -> np.ndarray:
    """(n, 200) expected counts for theta = (nH [10^22], PhoIndex, norm)."""
    nh, gamma, norm = theta[:, :1], theta[:, 1:2], theta[:, 2:3]
    flux = norm * E_MID ** (-gamma) * (E_HI - E_LO) * np.exp(-nh * SIGMA)
    return flux * AREA * exposure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--ref-counts", type=float, default=20_000.0,
                    help="expected counts of the reference model (sets the exposure)")
    ap.add_argument("--window", type=float, nargs=2, default=(1e4, 1e5),
                    help="expected total counts window of the restricted prior")
    ap.add_argument("--estimator", default=NPEConfig.estimator)
    ap.add_argument("--x-transform", default=NPEConfig.x_transform)
    ap.add_argument("--pca", type=float, default=None)
    ap.add_argument("--embedding", default=NPEConfig.embedding)
    ap.add_argument("--batch-size", type=int, default=NPEConfig.batch_size)
    ap.add_argument("--lr", type=float, default=NPEConfig.learning_rate)
    ap.add_argument("--patience", type=int, default=NPEConfig.patience)
    ap.add_argument("--theta-map", default=NPEConfig.theta_map)
    ap.add_argument("--ensemble", type=int, default=NPEConfig.ensemble_size)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    over = table1_prior(1)
    prior = BoxPrior(tuple(ParameterPrior(n, k, lo, hi) for n, (k, lo, hi) in over.items()))
    exposure = args.ref_counts / expected_counts(np.array([[0.2, 1.7, 1.0]]), 1.0).sum()
    lo, hi = args.window
    in_window = lambda th: (lambda c: (c >= lo) & (c <= hi))(expected_counts(th, exposure).sum(1))  # noqa: E731
    proposal = truncate(prior, in_window, rng=args.seed, label=f"expected counts in [{lo:g}, {hi:g}]")

    def simulate(theta, rng):
        return rng.poisson(expected_counts(theta, exposure)).astype(float)

    rng = np.random.default_rng(args.seed)
    theta, x = simulate_training_set(simulate, proposal, args.n_train, rng=rng)
    theta_t, x_t = simulate_training_set(simulate, proposal, args.n_test, rng=rng)
    config = NPEConfig(estimator=args.estimator, x_transform=args.x_transform, pca_variance=args.pca,
                       embedding=args.embedding, batch_size=args.batch_size, learning_rate=args.lr,
                       patience=args.patience, theta_map=args.theta_map, ensemble_size=args.ensemble,
                       num_threads=args.threads)
    print(f"threads={torch.get_num_threads()} exposure={exposure:.1f} s  prior acceptance="
          f"{proposal.acceptance:.3f}  test counts median={np.median(x_t.sum(1)):.0f}")
    print(f"config: {config}")

    t0 = time.perf_counter()
    post = train_npe(theta, x, prior, rng=args.seed + 1, config=config, device=args.device)
    t_train = time.perf_counter() - t0
    s = post.summary
    print(f"train: {t_train:.1f} s for {args.n_train} simulations ({s.epochs} epochs, best {s.best_epoch}, "
          f"val loss {s.best_validation_loss:.3f})")

    t0 = time.perf_counter()
    samples = post.sample(x_t, args.n_samples, rng=args.seed + 2)
    t_sample = time.perf_counter() - t0
    print(f"sample: {t_sample:.2f} s for {args.n_test} spectra x {args.n_samples} draws; "
          f"outside prior: {int((~prior.contains(samples.reshape(-1, 3))).sum())}")

    cov = empirical_coverage(post, theta_t, x_t, rng=args.seed + 3, n_samples=args.n_samples)
    print("coverage of central intervals (binomial s.e. ~0.02 at 68%):")
    print(cov.table())


if __name__ == "__main__":
    main()
