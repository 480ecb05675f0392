"""Training a posterior network on simulated pairs, and one round of simulate-then-train.

:func:`train_npe` maps the parameters to the latent space of the prior box
(:mod:`xspec_sbi.inference.latent`), fits the feature transform of the counts,
and runs a plain full-tensor Adam loop (no DataLoader) with early stopping on a
held-out fraction. Training on draws from the prior, or from the prior
truncated to a region (:class:`~xspec_sbi.inference.truncation.TruncatedPrior`),
gives the posterior under the user's prior.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from xspec_sbi.inference.config import NPEConfig, NPEError
from xspec_sbi.inference.features import FeatureTransform
from xspec_sbi.inference.latent import to_latent
from xspec_sbi.inference.members import train_members, validation_loss
from xspec_sbi.inference.networks import FlowEnsemble
from xspec_sbi.inference.posterior import NeuralPosterior, TrainingSummary
from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.torch_state import resolve_device, torch_seed, torch_threads
from xspec_sbi.inference.truncation import TruncatedPrior

__all__ = ["SimulateFn", "train_npe", "simulate_training_set", "fit_single_round", "check_proposal"]

#: ``simulate(theta (n, n_dim), rng) -> (n, n_bins)`` counts: what training needs of a simulator.
SimulateFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def train_npe(
    theta: np.ndarray,
    x: np.ndarray,
    prior: BoxPrior,
    *,
    rng: np.random.Generator | int,
    config: NPEConfig = NPEConfig(),
    device: str | torch.device = "cpu",
) -> NeuralPosterior:
    """Train a posterior network on simulated pairs.

    Parameters
    ----------
    theta : (n, n_dim) ndarray
        Parameter vectors, drawn from ``prior`` or from ``prior`` truncated to a
        region (never from another shape of proposal: the network would learn
        the posterior under that proposal).
    x : (n, n_bins) ndarray
        Simulated counts per bin.
    prior : BoxPrior
        The user's prior; every theta must lie strictly inside its box.
    rng : numpy.random.Generator or int
        Seeds the split, initialisation and batch order.
    config : NPEConfig
    device : str
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    NeuralPosterior
        With :attr:`NeuralPosterior.summary` filled in.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    theta = np.asarray(theta, dtype=float)
    x = np.asarray(x, dtype=float)
    if theta.ndim != 2 or theta.shape[1] != prior.n_dim:
        raise NPEError(f"theta must have shape (n, {prior.n_dim}) for {prior.names}, got {theta.shape}")
    if x.ndim != 2 or len(x) != len(theta):
        raise NPEError(f"x must have shape ({len(theta)}, n_bins), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise NPEError("x contains non-finite counts")
    z = to_latent(prior, theta, config.theta_map)
    bad = ~np.all(np.isfinite(z), axis=1)
    if bad.any():
        raise NPEError(f"{int(bad.sum())} theta rows lie on or outside the prior bounds of {prior.names}")
    n = len(theta)
    n_val = max(1, int(round(config.validation_fraction * n)))
    if n - n_val < 2:
        raise NPEError(f"need more simulations to train: got {n}")
    rng = np.random.default_rng(rng)
    perm = rng.permutation(n)
    tr, va = perm[n_val:], perm[:n_val]
    # an exposure-conditioned network's inputs end with log(exposure factor)
    features = FeatureTransform.fit(x[tr], config.x_transform, config.pca_variance,
                                    extra=1 if config.exposure_range else 0)
    z_mean, z_std = z[tr].mean(axis=0), z[tr].std(axis=0)
    z_std = np.where(z_std > 0, z_std, 1.0)
    s_all = torch.from_numpy(((z - z_mean) / z_std).astype(np.float32)).to(dev)
    f_all = torch.from_numpy(features.apply(x)).to(dev)
    s_tr, f_tr = s_all[tr], f_all[tr]
    s_va, f_va = s_all[va], f_all[va]

    # one seed per member, each member built and trained from its own: the weights do not
    # depend on whether the members train one after another or side by side
    seeds = [torch_seed(rng) for _ in range(config.ensemble_size)]
    pairs = [(s_tr, f_tr, s_va, f_va)] * config.ensemble_size
    if config.member_splits:
        # members after the first hold out other rows (the feature scaling stays the first split's)
        for i in range(1, config.ensemble_size):
            p = rng.permutation(n)
            pairs[i] = (s_all[p[n_val:]], f_all[p[n_val:]], s_all[p[:n_val]], f_all[p[:n_val]])
    runs = train_members(config, prior.n_dim, features.n_features, seeds, pairs, dev)
    flow = runs[0][0] if len(runs) == 1 else FlowEnsemble([r[0] for r in runs])
    epoch, best_epoch = max(r[1] for r in runs), max(r[2] for r in runs)
    with torch_threads(config.num_threads):
        best_loss = runs[0][3] if len(runs) == 1 else validation_loss(flow, s_va, f_va)
    flow.eval()
    summary = TrainingSummary(len(tr), len(va), epoch, best_epoch, float(best_loss),
                              time.perf_counter() - t0)
    return NeuralPosterior(prior, flow, features, z_mean, z_std, config, summary, dev)


def simulate_training_set(
    simulate: SimulateFn,
    proposal: BoxPrior | TruncatedPrior,
    n: int,
    *,
    rng: np.random.Generator | int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` parameter vectors from ``proposal`` and simulate them.

    Parameters
    ----------
    simulate : SimulateFn
        ``simulate(theta (n, n_dim), rng) -> (n, n_bins)`` counts.
    proposal : BoxPrior or TruncatedPrior
    n : int
    rng : numpy.random.Generator or int
        Used for the draws, then passed on to ``simulate``.

    Returns
    -------
    theta : (n, n_dim) ndarray
    x : (n, n_bins) ndarray
        Counts per bin, as returned by ``simulate(theta, rng)``.
    """
    rng = np.random.default_rng(rng)
    theta = proposal.sample(int(n), rng=rng)
    x = np.asarray(simulate(theta, rng), dtype=float)
    if x.ndim != 2 or len(x) != len(theta):
        raise NPEError(f"simulate returned shape {x.shape} for {len(theta)} parameter vectors; expected (n, n_bins)")
    return theta, x


def fit_single_round(
    simulate: SimulateFn,
    prior: BoxPrior,
    n_simulations: int,
    *,
    rng: np.random.Generator | int,
    proposal: TruncatedPrior | None = None,
    config: NPEConfig = NPEConfig(),
    device: str | torch.device = "cpu",
) -> NeuralPosterior:
    """Amortized NPE: simulate from ``proposal`` (default the prior) and train once.

    Parameters
    ----------
    simulate : SimulateFn
    prior : BoxPrior
        The user's prior.
    n_simulations : int
    rng : numpy.random.Generator or int
    proposal : TruncatedPrior, optional
        A truncation of ``prior`` (see :func:`check_proposal`).
    config : NPEConfig
    device : str
    """
    rng = np.random.default_rng(rng)
    check_proposal(prior, proposal)
    theta, x = simulate_training_set(simulate, proposal or prior, n_simulations, rng=rng)
    return train_npe(theta, x, prior, rng=rng, config=config, device=device)


def check_proposal(prior: BoxPrior, proposal: TruncatedPrior | None) -> None:
    """Refuse a proposal other than a truncation of ``prior`` (None, the prior itself, passes).

    Raises
    ------
    NPEError
        Any other proposal would change the learned posterior.
    """
    if proposal is not None and (not isinstance(proposal, TruncatedPrior) or proposal.prior != prior):
        raise NPEError(
            "proposal must be a TruncatedPrior of the same prior (the user's prior times an "
            "indicator); any other proposal would change the learned posterior"
        )
