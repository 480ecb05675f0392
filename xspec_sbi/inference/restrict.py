"""Restricted priors (Barret & Dupourque, Sec. 3), always as truncations of the user's prior.

Two ways to find the region of the prior worth simulating:

* :func:`restrict_by_classifier`: rounds of simulations labelled valid/invalid
  by a condition (:class:`CountWindow`: total counts within a window;
  :class:`BestFraction`: the best fraction of a fit statistic such as C-stat
  against the observation(s)), with ``sbi``'s ``RestrictionEstimator`` learning
  the valid region; stops once 95 % of draws from the restricted prior are
  valid, or after 10 rounds.
* :func:`restrict_by_coarse_inference`: a small NPE run whose posterior at the
  observation(s) defines the region (highest-density region, union over
  observations).

Either way the result is a :class:`xspec_sbi.inference.truncation.TruncatedPrior`: the user's
prior times the indicator of the region, sampled by rejection from the prior.
Training on it gives the posterior under the user's prior (exact where the
region holds the posterior mass); training on any other proposal, e.g. the
coarse posterior itself, would give the posterior under that proposal
(sbi issue 1334).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.stats import chi2

from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.inference.posterior import NeuralPosterior
from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.rounds import hpd_truncation
from xspec_sbi.inference.torch_state import seeded_torch, torch_threads
from xspec_sbi.inference.training import SimulateFn, fit_single_round
from xspec_sbi.inference.truncation import TruncatedPrior, truncate

__all__ = [
    "RestrictionError",
    "CountWindow",
    "BestFraction",
    "RestrictionResult",
    "restrict_by_classifier",
    "restrict_by_coarse_inference",
]


class RestrictionError(ValueError):
    """A restriction that cannot be carried out (names the keyword at fault)."""


@dataclass(frozen=True)
class CountWindow:
    """Valid when the total counts of a simulated spectrum lie in ``[lower, upper]``.

    Parameters
    ----------
    lower, upper : float
        Bounds on the total counts (summed over bins), inclusive.
    """

    lower: float
    upper: float

    def __post_init__(self) -> None:
        if not (0 <= self.lower < self.upper):
            raise RestrictionError(f"CountWindow: need 0 <= lower < upper, got ({self.lower}, {self.upper})")

    def scores(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(n,) distance of the total counts outside the window (0 inside)."""
        total = np.asarray(x, dtype=float).sum(axis=1)
        return np.maximum(np.maximum(self.lower - total, total - self.upper), 0.0)

    def threshold(self, scores: np.ndarray, previous: float | None, n_dim: int) -> float:
        """Valid means score <= 0, every round."""
        return 0.0


@dataclass(frozen=True)
class BestFraction:
    """Valid when a fit statistic against the observation(s) is among the best.

    Parameters
    ----------
    statistic : callable
        ``statistic(theta (n, n_dim), x (n, n_bins)) -> (n,) or (n, n_obs)``, e.g.
        the C-stat of each observation for the model counts at theta
        (``cstat(obs, folder.expected_counts(theta))``); with several observations
        the minimum over observations is used.
    fraction : float
        Fraction of each round's draws declared valid (paper: 0.25).
    floor : float or None
        The threshold never drops below (best statistic seen) + ``floor``, so the
        region cannot shrink inside the posterior; default the chi-square
        quantile ``1 - 1e-4`` for ``n_dim`` degrees of freedom (Delta C-stat).

    Notes
    -----
    Round r's threshold is ``max(min(t_{r-1}, q_f), best + floor)`` with ``q_f``
    the ``fraction`` quantile of that round's statistics, so it only decreases; a
    round's valid fraction is measured against the previous round's threshold.
    """

    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray]
    fraction: float = 0.25
    floor: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise RestrictionError(f"BestFraction: fraction must be in (0, 1), got {self.fraction!r}")

    def scores(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        s = np.asarray(self.statistic(theta, x), dtype=float)
        if s.ndim == 2:
            s = s.min(axis=1)
        if s.shape != (len(theta),):
            raise RestrictionError(
                f"BestFraction: statistic returned shape {s.shape} for {len(theta)} draws; "
                "expected (n,) or (n, n_obs)"
            )
        return np.where(np.isfinite(s), s, np.inf)

    def threshold(self, scores: np.ndarray, previous: float | None, n_dim: int) -> float:
        floor = chi2.ppf(1 - 1e-4, n_dim) if self.floor is None else self.floor
        t = float(np.quantile(scores, self.fraction))
        if previous is not None:
            t = min(t, previous)
        return max(t, float(np.min(scores)) + floor)


@dataclass(frozen=True)
class RestrictionResult:
    """A restricted prior and how it was found.

    Attributes
    ----------
    prior : TruncatedPrior
        The user's prior truncated to the region; train on draws from it.
    valid_fractions : tuple of float
        Classifier method: valid fraction of each round's draws (round 1: the
        prior). Coarse inference: empty.
    converged : bool
        Classifier method: the last measured valid fraction reached the target.
    n_simulations : int
        Simulations spent on finding the region.
    thresholds : tuple of float
        Classifier method: the condition's threshold after each round.
    posterior : NeuralPosterior or None
        Coarse inference: the coarse posterior.
    """

    prior: TruncatedPrior
    valid_fractions: tuple = ()
    converged: bool = True
    n_simulations: int = 0
    thresholds: tuple = ()
    posterior: NeuralPosterior | None = field(default=None, repr=False)


def _train_classifier(prior: BoxPrior, theta: np.ndarray, labels: np.ndarray, *, seed: int,
                      hidden_features: int, max_epochs: int, patience: int) -> Callable:
    """Train sbi's RestrictionEstimator on (theta, valid?) and return the region test."""
    from sbi.utils import BoxUniform, RestrictionEstimator

    # The classifier sees the warped position in the box (log for log-uniform
    # parameters), where the region has a scale comparable in every direction.
    unit = BoxUniform(torch.zeros(prior.n_dim), torch.ones(prior.n_dim))
    u = torch.as_tensor(prior.to_unit(theta), dtype=torch.float32)
    # The estimator's decision criterion reads x; x here is the label itself.
    lab = torch.as_tensor(labels, dtype=torch.float32)[:, None]
    # One torch thread, as for the NPE: these small networks ran several times slower with two
    # threads on a loaded 2-core machine.
    with seeded_torch(seed, torch.device("cpu")), torch_threads(1):
        est = RestrictionEstimator(unit, model="resnet", hidden_features=hidden_features,
                                   decision_criterion=lambda x: x[:, 0] > 0.5)
        est.append_simulations(u, lab)
        with contextlib.redirect_stdout(io.StringIO()):  # sbi prints epoch counts
            est.train(max_num_epochs=max_epochs, stop_after_epochs=patience)
        restricted = est.restrict_prior(allowed_false_negatives=0.0)

    def region(th: np.ndarray) -> np.ndarray:
        uu = torch.as_tensor(prior.to_unit(th), dtype=torch.float32)
        with torch.no_grad():
            lp = restricted.log_prob(uu, norm_restricted_prior=False)
        return torch.isfinite(lp).numpy()

    return region


def restrict_by_classifier(
    simulate: SimulateFn,
    prior: BoxPrior,
    condition: CountWindow | BestFraction,
    *,
    rng: np.random.Generator | int,
    max_rounds: int = 10,
    simulations_per_round: int = 500,
    target_valid: float = 0.95,
    hidden_features: int = 100,
    max_epochs: int = 300,
    patience: int = 20,
    margin: float = 0.05,
) -> RestrictionResult:
    """Restrict the prior with a classifier of valid simulations (paper Sec. 3).

    Each round draws ``simulations_per_round`` parameter vectors from the current
    restricted prior, simulates them and measures the valid fraction; it stops
    when that fraction reaches ``target_valid``, else trains ``sbi``'s
    ``RestrictionEstimator`` (ResNet) on all simulations so far and truncates the
    current restricted prior further to the classifier's valid region (its
    threshold set so that no valid validation draw is rejected).

    Parameters
    ----------
    simulate : SimulateFn
        ``simulate(theta (n, n_dim), rng) -> (n, n_bins)`` counts.
    prior : BoxPrior
        The user's prior.
    condition : CountWindow or BestFraction
    rng : numpy.random.Generator or int
    max_rounds : int
        At most this many rounds of simulations (paper: 10).
    simulations_per_round : int
        Paper: 500.
    target_valid : float
        Stop once this fraction of a round's draws is valid (default 0.95).
    hidden_features, max_epochs, patience : int
        Classifier width and training limits.
    margin : float
        The sub-box of each restricted prior spans the accepted draws widened by
        this fraction of the prior width on each side (warped coordinate).

    Returns
    -------
    RestrictionResult
        ``converged`` is False when the rounds ran out before ``target_valid``
        (the last restriction is returned, its valid fraction unmeasured).

    Raises
    ------
    RestrictionError
        When a round yields no valid simulation at all.
    """
    if max_rounds < 1 or simulations_per_round < 10:
        raise RestrictionError(
            f"need max_rounds >= 1 and simulations_per_round >= 10, got {max_rounds}, {simulations_per_round}"
        )
    rng = np.random.default_rng(rng)
    current: TruncatedPrior | None = None
    thetas, scores_all, fractions, thresholds = [], [], [], []
    threshold = None
    for r in range(1, max_rounds + 1):
        theta = (current or prior).sample(simulations_per_round, rng=rng)
        x = np.asarray(simulate(theta, rng), dtype=float)
        sc = condition.scores(theta, x)
        if threshold is not None:
            fractions.append(float(np.mean(sc <= threshold)))
        thetas.append(theta)
        scores_all.append(sc)
        new_threshold = condition.threshold(sc, threshold, prior.n_dim)
        if threshold is None:
            fractions.append(float(np.mean(sc <= new_threshold)))
        if fractions[-1] >= target_valid:
            return RestrictionResult(current or truncate(prior, lambda t: np.ones(len(t), bool), rng=rng,
                                                         label="prior (all draws valid)"),
                                     tuple(fractions), True, r * simulations_per_round, tuple(thresholds))
        threshold = new_threshold
        thresholds.append(threshold)
        all_theta, all_scores = np.concatenate(thetas), np.concatenate(scores_all)
        labels = all_scores <= threshold
        if not labels.any():
            raise RestrictionError(
                f"round {r}: none of {len(labels)} simulations satisfied the condition {condition}; "
                "widen the prior or the condition"
            )
        clf = _train_classifier(prior, all_theta, labels, seed=int(rng.integers(0, 2**62)),
                                hidden_features=hidden_features, max_epochs=max_epochs, patience=patience)
        parent = current
        region = clf if parent is None else (lambda th, c=clf, p=parent: c(th) & p.contains(th))
        lower, upper = _accepted_box(prior, parent, region, rng, margin)
        current = truncate(prior, region, rng=rng, lower=lower, upper=upper,
                           label=f"classifier round {r}")
    return RestrictionResult(current, tuple(fractions), False, max_rounds * simulations_per_round,
                             tuple(thresholds))


def _accepted_box(prior: BoxPrior, parent: TruncatedPrior | None, region: Callable,
                  rng: np.random.Generator, margin: float, n_probe: int = 20_000):
    """Sub-box around the region: range of accepted probe draws, widened by ``margin``."""
    lo = prior.lower if parent is None else parent.lower
    hi = prior.upper if parent is None else parent.upper
    probe_prior = truncate(prior, lambda t: np.ones(len(t), bool), rng=rng, lower=lo, upper=hi,
                           n_probe=16)
    probe = probe_prior.sample(n_probe, rng=rng)
    acc = probe[np.asarray(region(probe), dtype=bool)]
    if len(acc) < 2:
        return lo, hi
    u = prior.to_unit(acc)
    u_lo = np.clip(u.min(axis=0) - margin, 0.0, 1.0)
    u_hi = np.clip(u.max(axis=0) + margin, 0.0, 1.0)
    return np.maximum(prior.from_unit(u_lo[None])[0], lo), np.minimum(prior.from_unit(u_hi[None])[0], hi)


def restrict_by_coarse_inference(
    simulate: SimulateFn,
    prior: BoxPrior,
    x_obs: np.ndarray,
    *,
    rng: np.random.Generator | int,
    n_simulations: int = 5000,
    config: NPEConfig = NPEConfig(),
    quantile: float = 1e-4,
    n_hpd_samples: int = 100_000,
    device: str = "cpu",
) -> RestrictionResult:
    """Restrict the prior to where a coarse posterior at the observation(s) lives.

    A small amortized NPE run on ``n_simulations`` prior draws; the region is the
    union over observations of the coarse posterior's ``1 - quantile``
    highest-density region (threshold = ``quantile`` of its log density over its
    own draws), and the restricted prior is the user's prior truncated to it.

    Parameters
    ----------
    simulate : SimulateFn
    prior : BoxPrior
    x_obs : (n_bins,) or (m, n_bins) ndarray
        Observed counts per bin.
    rng : numpy.random.Generator or int
    n_simulations : int
        Paper: 5000.
    config : NPEConfig
    quantile : float
    n_hpd_samples : int
        Coarse-posterior draws per observation for the threshold and sub-box.
    device : str

    Returns
    -------
    RestrictionResult
        With the coarse posterior attached; ``prior.acceptance`` records the
        fraction of sub-box prior draws inside the region.
    """
    rng = np.random.default_rng(rng)
    coarse = fit_single_round(simulate, prior, n_simulations, rng=rng, config=config, device=device)
    region = hpd_truncation(coarse, x_obs, rng=rng, quantile=quantile, n_samples=n_hpd_samples)
    return RestrictionResult(region, n_simulations=n_simulations, posterior=coarse)
