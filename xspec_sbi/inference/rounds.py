"""Sequential rounds: truncation to the posterior's highest-density region, multi-round NPE.

Each later round draws from the user's prior truncated to the current
posterior's highest-density region at the observation(s) and retrains on all
simulations so far (truncated sequential NPE, Deistler et al. 2022). Because
every proposal is the prior times an indicator, the result is the posterior
under the user's prior wherever the regions hold the posterior mass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from xspec_sbi.inference.config import NPEConfig, NPEError
from xspec_sbi.inference.posterior import NeuralPosterior
from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.training import SimulateFn, check_proposal, simulate_training_set, train_npe
from xspec_sbi.inference.truncation import TruncatedPrior, truncate

__all__ = ["hpd_truncation", "MultiRoundResult", "fit_multi_round"]


def hpd_truncation(
    posterior: NeuralPosterior,
    x_obs: np.ndarray,
    *,
    rng: np.random.Generator | int,
    quantile: float = 1e-4,
    n_samples: int = 100_000,
    margin: float = 0.1,
    within: TruncatedPrior | None = None,
) -> TruncatedPrior:
    """The user's prior truncated to the posterior's highest-density region at ``x_obs``.

    Parameters
    ----------
    posterior : NeuralPosterior
    x_obs : (n_bins,) or (m, n_bins) ndarray
        Observation(s), counts per bin; the region is the union over observations.
    rng : numpy.random.Generator or int
    quantile : float
        Mass left out: the threshold is this quantile of ``log q`` over the
        posterior's own draws (TSNPE uses 1e-4).
    n_samples : int
        Posterior draws per observation used for the threshold and the sub-box.
    margin : float
        Sub-box = range of the draws widened by this fraction of it on each side
        (in the warped coordinate: log for log-uniform parameters).
    within : TruncatedPrior, optional
        Intersect the region with this one (e.g. a classifier-restricted prior).

    Returns
    -------
    TruncatedPrior
    """
    rng = np.random.default_rng(rng)
    prior = posterior.prior
    xs = np.atleast_2d(np.asarray(x_obs, dtype=float))
    draws = posterior.sample(xs, n_samples, rng=rng)  # (m, n, k)
    thresholds = []
    for j in range(len(xs)):
        lp = posterior.log_prob(draws[j], xs[j])
        thresholds.append(np.quantile(lp[np.isfinite(lp)], quantile))
    thresholds = np.asarray(thresholds)

    def region(theta: np.ndarray) -> np.ndarray:
        keep = np.zeros(len(theta), dtype=bool)
        for j in range(len(xs)):
            todo = ~keep
            if not todo.any():
                break
            keep[todo] = posterior.log_prob(theta[todo], xs[j]) >= thresholds[j]
        if within is not None:
            keep &= within.contains(theta)
        return keep

    u = prior.to_unit(draws.reshape(-1, prior.n_dim))
    u_lo, u_hi = u.min(axis=0), u.max(axis=0)
    width = u_hi - u_lo
    u_lo, u_hi = np.clip(u_lo - margin * width, 0, 1), np.clip(u_hi + margin * width, 0, 1)
    lower, upper = prior.from_unit(u_lo), prior.from_unit(u_hi)
    if within is not None:
        lower, upper = np.maximum(lower, within.lower), np.minimum(upper, within.upper)
    return truncate(prior, region, rng=rng, lower=lower, upper=upper,
                    label=f"HPD 1-{quantile:g} of the posterior at {len(xs)} observation(s)")


@dataclass(frozen=True)
class MultiRoundResult:
    """Outcome of :func:`fit_multi_round`.

    Attributes
    ----------
    posterior : NeuralPosterior
        Trained on all rounds' simulations; valid at the observation(s).
    proposals : tuple of TruncatedPrior or None
        Proposal of each round (None: the prior).
    acceptances : tuple of float
        Acceptance fraction of each round's truncated proposal (1.0 for the prior).
    n_simulations : int
        Simulations over all rounds.
    """

    posterior: NeuralPosterior
    proposals: tuple = field(repr=False)
    acceptances: tuple
    n_simulations: int


def fit_multi_round(
    simulate: SimulateFn,
    prior: BoxPrior,
    x_obs: np.ndarray,
    *,
    rng: np.random.Generator | int,
    rounds: int = 3,
    simulations_per_round: int = 1000,
    proposal: TruncatedPrior | None = None,
    config: NPEConfig = NPEConfig(),
    quantile: float = 1e-4,
    n_hpd_samples: int = 100_000,
    device: str | torch.device = "cpu",
) -> MultiRoundResult:
    """Multi-round NPE with truncated proposals (TSNPE) for one observation (or a few).

    Round 1 draws from ``proposal`` (default: the prior); each later round draws
    from the prior truncated to the current posterior's ``1 - quantile`` highest
    density region at ``x_obs`` (intersected with ``proposal``), and the network is
    retrained from scratch on all simulations so far. Because every proposal is the
    prior times an indicator, the result is the posterior under the user's prior
    wherever the regions hold the posterior mass.

    Parameters
    ----------
    simulate : SimulateFn
        ``simulate(theta (n, n_dim), rng) -> (n, n_bins)`` counts.
    prior : BoxPrior
    x_obs : (n_bins,) or (m, n_bins) ndarray
    rng : numpy.random.Generator or int
    rounds, simulations_per_round : int
    proposal : TruncatedPrior, optional
        Starting restricted prior (e.g. from :mod:`xspec_sbi.inference.restrict`).
    config : NPEConfig
    quantile, n_hpd_samples
        See :func:`hpd_truncation`.
    device : str

    Returns
    -------
    MultiRoundResult
    """
    if rounds < 1:
        raise NPEError(f"rounds must be >= 1, got {rounds}")
    check_proposal(prior, proposal)
    rng = np.random.default_rng(rng)
    current = proposal
    thetas, xs, proposals, accs = [], [], [], []
    posterior = None
    for r in range(rounds):
        if r > 0:
            current = hpd_truncation(posterior, x_obs, rng=rng, quantile=quantile,
                                     n_samples=n_hpd_samples, within=proposal)
        proposals.append(current)
        accs.append(1.0 if current is None else current.acceptance)
        th, x = simulate_training_set(simulate, current or prior, simulations_per_round, rng=rng)
        thetas.append(th)
        xs.append(x)
        posterior = train_npe(np.concatenate(thetas), np.concatenate(xs), prior,
                              rng=rng, config=config, device=device)
    return MultiRoundResult(posterior, tuple(proposals), tuple(accs),
                            int(sum(len(t) for t in thetas)))
