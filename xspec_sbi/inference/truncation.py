"""The user's prior truncated to a region: the only restricted prior used for training.

A :class:`TruncatedPrior` is the user's prior multiplied by the indicator of a
region, the only kind of restricted prior used for training here: a network
trained with the ordinary NPE loss on draws from it learns the posterior under
the user's prior wherever the region holds the posterior mass (truncated
sequential NPE, Deistler et al. 2022), whereas draws from any other proposal
would make it learn the posterior under that proposal (sbi issue 1334).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from xspec_sbi.inference.priors import BoxPrior, PriorError

__all__ = ["Region", "TruncatedPrior", "truncate"]

#: ``region(theta (n, n_dim)) -> (n,) bool``: True where theta lies in the region.
Region = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class TruncatedPrior:
    """The user's prior times the indicator of a region, inside a sub-box.

    Build it with :func:`truncate`. Draws come from the prior restricted to the
    sub-box (exact: the prior factorises) and are kept when ``region`` accepts
    them, so the density is ``prior(theta) * 1[theta in region and box] / mass``.

    Parameters
    ----------
    prior : BoxPrior
        The user's prior.
    region : callable
        ``region(theta (n, n_dim)) -> (n,) bool``.
    lower, upper : (n_dim,) ndarray
        Sub-box enclosing the region, within the prior bounds.
    acceptance : float
        Fraction of sub-box draws the region accepted, measured at construction.
    mass : float
        Estimated prior mass of the truncated region (sub-box mass x acceptance).
    label : str
        What defined the region (for reports).
    propose : callable, optional
        ``propose(n, rng) -> (m, n_dim)``: draws of the user's prior restricted
        to a set between the region and the sub-box (an ellipsoid drawn
        directly); candidates come from it instead of the whole sub-box.
    proposals_exact : bool
        ``propose`` already returns draws of the truncated prior (it sizes its
        own candidates): they are kept as they are, not tested again.
    """

    prior: BoxPrior
    region: Region
    lower: np.ndarray
    upper: np.ndarray
    acceptance: float
    mass: float
    label: str = ""
    propose: Callable | None = field(default=None, repr=False)
    proposals_exact: bool = False
    _box: BoxPrior = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_box", _sub_box(self.prior, self.lower, self.upper))

    @property
    def names(self) -> tuple[str, ...]:
        return self.prior.names

    @property
    def n_dim(self) -> int:
        return self.prior.n_dim

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: inside the sub-box and the region."""
        theta = self.prior.check_theta(theta)
        inside = self._box.contains(theta)
        out = np.zeros(len(theta), dtype=bool)
        if inside.any():
            out[inside] = np.asarray(self.region(theta[inside]), dtype=bool)
        return out

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """(n,) log density (normalised with the estimated :attr:`mass`); -inf outside."""
        inside = self.contains(theta)
        lp = self.prior.log_prob(theta) - math.log(self.mass)
        return np.where(inside, lp, -np.inf)

    def sample(self, n: int, *, rng: np.random.Generator | int,
               max_candidates: int = 50_000_000) -> np.ndarray:
        """Draw ``n`` parameter vectors by rejection from the prior on the sub-box.

        Parameters
        ----------
        n : int
        rng : numpy.random.Generator or int
        max_candidates : int
            Give up (RuntimeError) after this many candidate draws.

        Returns
        -------
        theta : (n, n_dim) ndarray
        """
        rng = np.random.default_rng(rng)
        n = int(n)
        kept, n_kept, n_tried = [], 0, 0
        # a proposal hugging the region accepts nearly all its draws
        acc = 0.8 if self.propose is not None else max(self.acceptance, 1e-3)
        while n_kept < n and self.proposals_exact:
            n_tried += n - n_kept
            good = self.propose(n - n_kept, rng)
            kept.append(good)
            n_kept += len(good)
            if n_kept < n and n_tried >= max_candidates:
                raise RuntimeError(f"truncated prior ({self.label}): only {n_kept} of {n} draws "
                                   f"after {n_tried} requested")
        while n_kept < n:
            batch = int(min(max(1.2 * (n - n_kept) / acc, 256), 2_000_000))
            cand = self._box.sample(batch, rng=rng) if self.propose is None else self.propose(batch, rng)
            cand = cand if self.propose is None else cand[self._box.contains(cand)]
            good = cand[np.asarray(self.region(cand), dtype=bool)]
            kept.append(good)
            n_kept += len(good)
            n_tried += batch
            if n_kept < n and n_tried >= max_candidates:
                raise RuntimeError(
                    f"truncated prior ({self.label}): only {n_kept} of {n} draws accepted "
                    f"after {n_tried} candidates"
                )
        return np.concatenate(kept)[:n]


def truncate(
    prior: BoxPrior,
    region: Region,
    *,
    rng: np.random.Generator | int,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    n_probe: int = 20_000,
    label: str = "",
    propose: Callable | None = None,
    mass: float | None = None,
    proposals_exact: bool = False,
) -> TruncatedPrior:
    """Truncate the user's prior to ``region`` (inside an optional sub-box).

    Parameters
    ----------
    prior : BoxPrior
    region : callable
        ``region(theta (n, n_dim)) -> (n,) bool``.
    rng : numpy.random.Generator or int
        Used to measure the acceptance fraction.
    lower, upper : (n_dim,) ndarray, optional
        Sub-box enclosing the region (clipped to the prior bounds); default the prior box.
    n_probe : int
        Candidate draws used to measure the acceptance fraction.
    label : str
    propose : callable, optional
        See :class:`TruncatedPrior`.
    mass : float, optional
        The region's prior mass when known better than by probing the sub-box
        (an ellipsoid's volume); the acceptance is then ``mass`` over the sub-box's.
    proposals_exact : bool
        See :class:`TruncatedPrior`.

    Returns
    -------
    TruncatedPrior

    Raises
    ------
    PriorError
        When no probe draw falls in the region.
    """
    rng = np.random.default_rng(rng)
    lo = prior.lower if lower is None else np.clip(np.asarray(lower, float), prior.lower, prior.upper)
    hi = prior.upper if upper is None else np.clip(np.asarray(upper, float), prior.lower, prior.upper)
    if np.any(lo >= hi):
        bad = [n for n, a, b in zip(prior.names, lo, hi) if a >= b]
        raise PriorError(f"truncation sub-box is empty along {bad}")
    if mass is not None:
        return TruncatedPrior(prior, region, lo, hi, min(1.0, mass / prior.mass(lo, hi)), float(mass),
                              label, propose, proposals_exact)
    probe = _sub_box(prior, lo, hi).sample(n_probe, rng=rng)
    acceptance = float(np.mean(np.asarray(region(probe), dtype=bool)))
    if acceptance == 0.0:
        raise PriorError(f"truncation region ({label}) accepted none of {n_probe} prior draws")
    return TruncatedPrior(prior, region, lo, hi, acceptance, prior.mass(lo, hi) * acceptance, label,
                          propose, proposals_exact)


def _sub_box(prior: BoxPrior, lower: np.ndarray, upper: np.ndarray) -> BoxPrior:
    """The user's prior restricted to a sub-box: same kinds (a Gaussian keeps mu and sigma and is
    renormalised on the narrower interval), so its draws are the user's prior's inside the box."""
    return BoxPrior(tuple(replace(p, lower=float(a), upper=float(b))
                          for p, a, b in zip(prior.parameters, lower, upper)))
