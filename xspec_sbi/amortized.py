"""Amortized posteriors for many spectra, each checked against its own exact likelihood.

One trained network gives draws for every spectrum of a set-up in one batched
call; each spectrum's draws are then weighted by its exact Poisson likelihood
(C-stat, or W-stat with a background), so the answer is that spectrum's
posterior wherever the weights are reliable, and the spectra where they are
not are named (refine them with ``sbi_fit(..., network=...)``, or
``xspec-sbi apply --refine``). The statistics of all spectra are computed by
one folding of every draw of a block of spectra.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xspec_sbi.checks.importance import cstat_log_like_constant, importance_correct, wstat_log_like_constant
from xspec_sbi.forward.objective import PoissonStatistic

__all__ = ["AmortizedPosteriors", "amortized_posteriors"]


@dataclass(frozen=True, eq=False)
class AmortizedPosteriors:
    """Posteriors of many spectra from one network, with their exact-likelihood checks.

    Attributes
    ----------
    samples : ndarray (m, n, k)
        Per spectrum: the draws reweighted by its exact likelihood and
        resampled (``n`` rows) where the check is reliable, else the network's draws.
    raw : ndarray (m, n, k)
        The network's own draws.
    ess_fraction, pareto_k : ndarray (m,)
        The check of each spectrum (NaN when not corrected).
    reliable : ndarray (m,) of bool
        The check passed (all False when not corrected).
    labels : tuple of str
        Names of the spectra (file names, or ``"#i"`` for rows of an array).
    corrected : bool
        The exact-likelihood weighting was applied.
    """

    samples: np.ndarray
    raw: np.ndarray
    ess_fraction: np.ndarray
    pareto_k: np.ndarray
    reliable: np.ndarray
    labels: tuple
    corrected: bool

    @property
    def flagged(self) -> tuple[str, ...]:
        """Spectra whose draws are not their posterior (the check failed)."""
        if not self.corrected:
            return ()
        return tuple(lab for lab, ok in zip(self.labels, self.reliable) if not ok)

    def summary(self) -> str:
        if not self.corrected:
            return f"{len(self.labels)} spectra: network draws, not checked against the exact likelihood"
        bad = self.flagged
        text = (f"{len(self.labels)} spectra: {len(self.labels) - len(bad)} reweighted by their exact "
                f"likelihood (median ESS {100 * np.nanmedian(self.ess_fraction):.1f}%)")
        if bad:
            text += (f"; the check failed for {len(bad)} ({', '.join(bad[:10])}"
                     f"{', ...' if len(bad) > 10 else ''}): refine them one by one "
                     "(sbi_fit(..., network=...) or xspec-sbi apply --refine)")
        return text


def amortized_posteriors(posterior, simulator, prior, x: np.ndarray, *, n_samples: int = 1000,
                         seed: int = 0, correct: bool = True, labels=None,
                         block_rows: int = 200_000) -> AmortizedPosteriors:
    """Draws of ``posterior`` for each row of ``x``, weighted by each row's exact likelihood.

    Parameters
    ----------
    posterior : NeuralPosterior
    simulator : SpectralSimulator
        The set-up the rows belong to (gives the folded model and the statistic).
    prior : BoxPrior
        The prior the network was trained under (the weights' prior).
    x : ndarray (m, n_outputs), counts
        Observations in the simulator's layout.
    n_samples : int
        Draws per spectrum.
    seed : int
    correct : bool
        Apply the exact-likelihood weights.
    labels : sequence of str, optional
    block_rows : int
        Draws folded at once (memory: about ``block_rows x n_bins x 8`` bytes).

    Returns
    -------
    AmortizedPosteriors
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = len(x)
    labels = tuple(labels) if labels is not None else tuple(f"#{i}" for i in range(m))
    raw = posterior.sample(x, n_samples, rng=seed)   # the same draws with or without the weights
    rng = np.random.default_rng([seed, 1])
    raw = raw.reshape(m, n_samples, -1)
    nan = np.full(m, np.nan)
    if not correct:
        return AmortizedPosteriors(raw, raw, nan, nan.copy(), np.zeros(m, bool), labels, False)
    stat = np.empty((m, n_samples))
    per_block = max(1, block_rows // n_samples)
    for a in range(0, m, per_block):
        b = min(m, a + per_block)
        rows = np.repeat(x[a:b], n_samples, axis=0)
        stat[a:b] = PoissonStatistic.of_rows(simulator, rows, raw[a:b].reshape(-1, raw.shape[-1])) \
            .reshape(b - a, n_samples)
    samples = raw.copy()
    ess, k, ok = nan.copy(), nan.copy(), np.zeros(m, bool)
    for i in range(m):
        log_q = posterior.log_prob(raw[i], x[i])
        const = 0.0
        for p, blk in zip(simulator.parts, simulator.split(x[i])):
            const += (wstat_log_like_constant(blk[:p.n_bins], blk[p.n_bins:]) if p.has_background
                      else cstat_log_like_constant(blk))
        res = importance_correct(raw[i], log_q, prior.log_prob(raw[i]), -0.5 * stat[i], rng,
                                 log_like_constant=const, n_resample=n_samples)
        ess[i], k[i], ok[i] = res.ess_fraction, res.pareto_k, res.reliable
        if res.reliable:
            samples[i] = res.theta
    return AmortizedPosteriors(samples, raw, ess, k, ok, labels, True)
