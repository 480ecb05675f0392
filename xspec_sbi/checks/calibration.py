"""Calibration checks of a trained posterior: coverage, SBC, C2ST.

All three take parameter vectors drawn from the distribution the network was
trained on (the prior, or the prior truncated to a region) and spectra simulated
from them; a calibrated posterior puts the true value inside its central p %
interval p % of the time, gives uniform SBC ranks, and cannot be told apart from
a reference sample by a classifier (C2ST accuracy near 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from xspec_sbi.inference.posterior import NeuralPosterior
from xspec_sbi.inference.priors import BoxPrior
from xspec_sbi.inference.truncation import TruncatedPrior

__all__ = [
    "CoverageReport",
    "SBCReport",
    "interval_coverage",
    "empirical_coverage",
    "run_sbc",
    "c2st",
]


@dataclass(frozen=True)
class CoverageReport:
    """Empirical coverage of central credible intervals.

    Attributes
    ----------
    names : tuple of str
        Parameter names (columns).
    levels : tuple of float
        Nominal credibilities, e.g. (0.68, 0.90, 0.95).
    fractions : (n_levels, n_dim) ndarray
        Fraction of test cases whose true value lies inside the central interval.
    n_test : int
        Number of test cases; the binomial standard error of a fraction p is
        ``sqrt(p (1 - p) / n_test)``.
    """

    names: tuple
    levels: tuple
    fractions: np.ndarray
    n_test: int

    def table(self) -> str:
        """Plain-text table: one row per level, one column per parameter."""
        head = "level  " + "  ".join(f"{n:>18s}" for n in self.names)
        rows = [f"{lvl:5.2f}  " + "  ".join(f"{f:18.3f}" for f in fr)
                for lvl, fr in zip(self.levels, self.fractions)]
        return "\n".join([head, *rows])


def interval_coverage(
    samples: np.ndarray,
    theta_true: np.ndarray,
    levels: Sequence[float] = (0.68, 0.90, 0.95),
) -> np.ndarray:
    """Fraction of cases whose true value lies in the central posterior interval.

    Parameters
    ----------
    samples : (m, n, n_dim) ndarray
        ``n`` posterior draws for each of ``m`` test cases.
    theta_true : (m, n_dim) ndarray
        True parameters.
    levels : sequence of float
        Credibilities in (0, 1).

    Returns
    -------
    (n_levels, n_dim) ndarray
    """
    samples = np.asarray(samples, dtype=float)
    theta_true = np.asarray(theta_true, dtype=float)
    if samples.ndim != 3 or theta_true.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(
            f"samples must be (m, n, n_dim) and theta_true (m, n_dim); got {samples.shape} "
            f"and {theta_true.shape}"
        )
    out = np.empty((len(levels), samples.shape[2]))
    for i, lvl in enumerate(levels):
        if not 0.0 < lvl < 1.0:
            raise ValueError(f"coverage level {lvl!r} must be in (0, 1)")
        lo, hi = np.quantile(samples, [(1 - lvl) / 2, (1 + lvl) / 2], axis=1)
        out[i] = np.mean((theta_true >= lo) & (theta_true <= hi), axis=0)
    return out


def empirical_coverage(
    posterior: NeuralPosterior,
    theta: np.ndarray,
    x: np.ndarray,
    *,
    rng: np.random.Generator | int,
    n_samples: int = 1000,
    levels: Sequence[float] = (0.68, 0.90, 0.95),
) -> CoverageReport:
    """Coverage of the central intervals of ``posterior`` over test pairs.

    Parameters
    ----------
    posterior : NeuralPosterior
    theta : (m, n_dim) ndarray
        True parameters, drawn from the training distribution.
    x : (m, n_bins) ndarray
        Counts simulated at ``theta``.
    rng : numpy.random.Generator or int
    n_samples : int
        Posterior draws per test case.
    levels : sequence of float

    Returns
    -------
    CoverageReport
    """
    samples = posterior.sample(np.atleast_2d(x), n_samples, rng=rng)
    fr = interval_coverage(samples, theta, levels)
    return CoverageReport(posterior.prior.names, tuple(levels), fr, len(theta))


@dataclass(frozen=True)
class SBCReport:
    """Simulation-based calibration (Talts et al. 2018) via ``sbi``.

    Attributes
    ----------
    names : tuple of str
    ranks : (m, n_dim) ndarray
        Rank of each true value among ``n_samples`` posterior draws.
    n_samples : int
    ks_pvalues : (n_dim,) ndarray
        Kolmogorov-Smirnov p-values of rank uniformity.
    c2st_ranks : (n_dim,) ndarray
        C2ST accuracy of ranks against uniform draws (0.5: uniform).
    c2st_dap : (n_dim,) ndarray
        C2ST accuracy of the data-averaged posterior against reference draws.
    """

    names: tuple
    ranks: np.ndarray
    n_samples: int
    ks_pvalues: np.ndarray
    c2st_ranks: np.ndarray
    c2st_dap: np.ndarray


class _BatchedSampler:
    """The one method of an sbi posterior that ``sbi.diagnostics.run_sbc`` calls."""

    def __init__(self, posterior: NeuralPosterior, seed: int) -> None:
        self.posterior, self.seed = posterior, seed

    def sample_batched(self, sample_shape, x, show_progress_bars=False, **kwargs):
        n = int(torch.Size(sample_shape).numel())
        s = self.posterior.sample(x.detach().cpu().double().numpy(), n, rng=self.seed)
        return torch.as_tensor(s, dtype=torch.float32).transpose(0, 1)  # (n, m, k)


def run_sbc(
    posterior: NeuralPosterior,
    theta: np.ndarray,
    x: np.ndarray,
    reference: BoxPrior | TruncatedPrior,
    *,
    rng: np.random.Generator | int,
    n_samples: int = 1000,
) -> SBCReport:
    """SBC ranks and checks with ``sbi.diagnostics.run_sbc`` / ``check_sbc``.

    Parameters
    ----------
    posterior : NeuralPosterior
    theta : (m, n_dim) ndarray
        True parameters drawn from ``reference``.
    x : (m, n_bins) ndarray
        Counts simulated at ``theta``.
    reference : BoxPrior or TruncatedPrior
        The training distribution of ``theta``; fresh draws from it are compared
        with the data-averaged posterior.
    rng : numpy.random.Generator or int
    n_samples : int
        Posterior draws per test case.

    Returns
    -------
    SBCReport
    """
    import warnings

    from sbi.diagnostics import check_sbc
    from sbi.diagnostics import run_sbc as sbi_run_sbc

    rng = np.random.default_rng(rng)
    theta = np.asarray(theta, dtype=float)
    sampler = _BatchedSampler(posterior, int(rng.integers(0, 2**62)))
    th = torch.as_tensor(theta, dtype=torch.float32)
    xs = torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float32)
    ref = torch.as_tensor(reference.sample(len(theta), rng=rng), dtype=torch.float32)
    with warnings.catch_warnings():
        # sbi warns below 100 test cases; the caller chose the size.
        warnings.simplefilter("ignore", UserWarning)
        ranks, dap = sbi_run_sbc(th, xs, sampler, num_posterior_samples=n_samples,
                                 show_progress_bar=False)
        checks = check_sbc(ranks, ref, dap, num_posterior_samples=n_samples)
    return SBCReport(
        posterior.prior.names, ranks.numpy().astype(int), n_samples,
        checks["ks_pvals"].numpy().astype(float), checks["c2st_ranks"].numpy().astype(float),
        np.atleast_1d(checks["c2st_dap"].numpy()).astype(float),
    )


def c2st(a: np.ndarray, b: np.ndarray, *, seed: int = 0, n_folds: int = 5) -> float:
    """Classifier two-sample test accuracy between two sample sets (``sbi``'s c2st).

    Parameters
    ----------
    a, b : (n, n_dim) ndarray
        Two sample sets (z-scored with ``a``'s mean and scale).
    seed : int
        Seeds the random-forest classifier and the folds.
    n_folds : int

    Returns
    -------
    float
        Cross-validated accuracy: 0.5 when indistinguishable, 1 when disjoint.
    """
    from sbi.utils.metrics import c2st as sbi_c2st

    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"c2st: sample sets have {a.shape[1]} and {b.shape[1]} columns")
    acc = sbi_c2st(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32),
                   seed=seed, n_folds=n_folds)
    return float(acc)
