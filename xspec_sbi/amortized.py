"""Amortized posteriors for many spectra, each checked against its own exact likelihood.

One trained network gives draws for every spectrum of a set-up; each
spectrum's draws are weighted by its exact Poisson likelihood (C-stat, or
W-stat with a background), with a widened Student t mixed in so that
posterior mass the network leaves out can be found: the answer is that
spectrum's posterior wherever the weights are reliable, and the spectra where
they are not are named (refine them with ``sbi_fit(..., network=...)``, or
``xspec-sbi apply --refine``). The statistics are folded in blocks of a few
hundred draws across the spectra (cache-sized blocks fold ~2-4x faster than
one block of every draw, with the same bits).

A spectrum's draws are weighed in stages and its weighting stops once
:data:`MIN_EFFECTIVE` of them are effective: each draw's statistic (XSPEC's
model on the response's energies, the folding) is most of the cost, and past
that the extra draws refine the answer's Monte Carlo error only. Burst set-up,
10,000 draws asked per spectrum: 2,048-5,632 weighed, 0.52 s per spectrum
against 1.12 s when all are weighed (``scripts/bench_amortized_apply.py``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from xspec_sbi.checks.importance import ImportanceError, importance_correct, log_like_constant
from xspec_sbi.data.setup_match import SetupError, exposure_note, setup_differences
from xspec_sbi.forward.objective import poolable, statistics_of_spectra
from xspec_sbi.forward.pooled import RowCost, worth_a_pool
from xspec_sbi.forward.simulate import make_pool

__all__ = ["AmortizedPosteriors", "amortized_posteriors", "SetupError", "setup_differences",
           "exposure_note"]

log = logging.getLogger("xspec_sbi")

#: Share of each spectrum's weighted draws taken from a Student t around the network's
#: draws (a defensive mixture, Hesterberg 1995): the weights cannot see posterior mass
#: the network leaves out. A network 0.6x too narrow is then corrected to the posterior
#: instead of being flagged (tests/test_defensive_mixture.py); on a broad burst posterior
#: (scripts/amortized_reference_check.py) it moved 0.032 -> 0.019 sd from an independent
#: reference, widths 0.94-0.98 -> 0.93-1.01, for a few per cent of ESS.
DEFENSIVE_SHARE = 0.3

#: Covariance factor of that t over the network draws' own, in the prior's probit latent space.
DEFENSIVE_INFLATE = 2.0

#: Effective draws (the smaller of the raw and the PSIS-smoothed ESS) a spectrum's weighting stops at: more draws weighed
#: past it refine the posterior's Monte Carlo error only (1,000 effective draws put a
#: median within ~0.04 sd of the exact one), and the statistic of each draw (XSPEC's model,
#: the folding) is most of an amortized spectrum's cost. XSPEC's default chain (8 walkers,
#: 50,000 samples) held 90-1,122 effective draws per parameter on three burst spectra
#: (emcee's integrated autocorrelation time; ``scripts/bench_amortized_apply.py`` prints the
#: first spectrum's: 90-327).
MIN_EFFECTIVE = 1000

#: Draws weighed first per spectrum, and the step the later stages are rounded up to.
FIRST_WEIGHED = 2048
STAGE_ROWS = 512


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
    differences : tuple of tuple of str
        Per spectrum, how its set-up differs from the training one (empty: the same).
    weighed : ndarray (m,) of int, optional
        Per spectrum, the draws weighed by its exact likelihood (see
        :data:`MIN_EFFECTIVE`); None when not corrected.
    """

    samples: np.ndarray
    raw: np.ndarray
    ess_fraction: np.ndarray
    pareto_k: np.ndarray
    reliable: np.ndarray
    labels: tuple
    corrected: bool
    differences: tuple = ()
    weighed: np.ndarray | None = None

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
                f"likelihood (median ESS {100 * np.nanmedian(self.ess_fraction):.1f}%"
                + ("" if self.weighed is None else
                   f" of a median {np.median(self.weighed):,.0f} draws weighed") + ")")
        if bad:
            text += (f"; the check failed for {len(bad)} ({', '.join(bad[:10])}"
                     f"{', ...' if len(bad) > 10 else ''}): refine them one by one "
                     "(sbi_fit(..., network=...) or xspec-sbi apply --refine)")
        return text


@contextlib.contextmanager
def _statistics_pool(simulator, simulators, x, raw, block_rows, workers, executor):
    """The pool the statistics run on, and their measured cost: ``executor``, or one started here.

    A pool is started only when the work measured on one block, spread over
    ``workers`` processes, saves more than a pool's start-up
    (:data:`~xspec_sbi.forward.pooled.POOL_START_SECONDS`); it ends with the block.
    """
    cost = RowCost()
    if executor is not None or workers == 1 or raw.size == 0 \
            or not poolable(simulator, *(simulators or ())):
        yield executor, cost
        return
    n_workers = workers or os.cpu_count() or 1
    m, n, _ = raw.shape
    rows = min(n, max(1, int(block_rows)))
    t0 = time.perf_counter()   # one block of the first spectrum, timed (its values are not kept)
    statistics_of_spectra(simulator, None if simulators is None else simulators[:1], x[:1],
                          raw[:1, :rows], block_rows)
    cost.here = (time.perf_counter() - t0) / rows
    if not worth_a_pool(cost.here * m * n, n_workers):
        yield None, cost
        return
    log.info("exact statistics of %d spectra x %d draws (about %.0f s in one process) on %d "
             "processes", m, n, cost.here * m * n, n_workers)
    with make_pool(simulator, n_workers) as pool:
        yield pool, cost


def amortized_posteriors(posterior, simulator, prior, x: np.ndarray, *, n_samples: int = 1000,
                         seed: int = 0, correct: bool = True, labels=None,
                         block_rows: int = 512, simulators=None,
                         differences=(), exposure_factors=None, workers: int | None = 1,
                         executor=None, min_effective: float | None = MIN_EFFECTIVE) -> AmortizedPosteriors:
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
        Draws per spectrum: the network's, and the weighted draws returned
        (resampled from those weighed).
    seed : int
    correct : bool
        Apply the exact-likelihood weights. The draws weighed are a defensive
        mixture: 70 % the network's, 30 % a Student t widened around the
        network's draws (:data:`DEFENSIVE_SHARE`), the mixture's density in
        the weights.
    labels : sequence of str, optional
    block_rows : int
        Draws folded at once (memory: a few arrays of ``block_rows x n_e x 8``
        bytes, ``n_e`` the model's energy bins); the statistics do not depend on it.
    simulators : sequence of SpectralSimulator, optional
        One per row, for spectra whose response, ARF, exposure or background
        differ from the training set-up: each row's draws are weighted by its
        own exact likelihood, so the answer is that spectrum's posterior where
        the check passes.
    differences : sequence of sequence of str, optional
        Per row, how its set-up differs (kept in the result).
    exposure_factors : float or (m,) array, optional
        Each row's exposure over the training spectrum's (s / s), read by an
        exposure-conditioned network (``NPEConfig.exposure_range``); default 1.
        A network trained at one exposure ignores it (its rows are then judged
        by their own likelihood only).
    workers : int, optional
        Processes for the exact statistics (None: all cores; 1: this process).
        A pool is started only when the measured work would take longer than
        a pool's start-up; the numbers are the same with or without one.
    executor : SimulatorPool, optional
        A running pool to evaluate the statistics on (``workers`` is then ignored).
    min_effective : float or None
        Effective draws (raw and PSIS-smoothed ESS) to reach before a spectrum's
        weighting stops: its draws are weighed in stages, the first
        :data:`FIRST_WEIGHED`, then as many as its effective fraction says are
        still wanted, until this many are effective or all ``n_samples`` are
        weighed (see :data:`MIN_EFFECTIVE`). None: weigh all of them.

    Returns
    -------
    AmortizedPosteriors
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = len(x)
    labels = tuple(labels) if labels is not None else tuple(f"#{i}" for i in range(m))
    factors = np.broadcast_to(np.asarray(1.0 if exposure_factors is None else exposure_factors,
                                         dtype=float), (m,))
    x_net = posterior.with_exposure(x, factors) if hasattr(posterior, "with_exposure") else x
    raw = posterior.sample(x_net, n_samples, rng=seed)   # the same draws with or without the weights
    rng = np.random.default_rng([seed, 1])
    raw = raw.reshape(m, n_samples, -1)
    nan = np.full(m, np.nan)
    differences = tuple(tuple(d) for d in differences)
    if not correct:
        return AmortizedPosteriors(raw, raw, nan, nan.copy(), np.zeros(m, bool), labels, False,
                                   differences)
    proposals, wider = _defensive_proposals(prior, raw, rng)
    share = DEFENSIVE_SHARE if wider else 0.0

    def log_q(i, a, b):
        theta = proposals[i, a:b]
        out = posterior.log_prob(theta, x_net[i])
        if wider:   # the mixture's density: draws of either component weigh in it alike
            out = np.logaddexp(np.log1p(-share) + out, np.log(share) + wider[i].log_prob(theta))
        return out

    consts = [log_like_constant(simulator if simulators is None else simulators[i], x[i])
              for i in range(m)]

    def weigh(i, n_weighed, rng_i, n_resample=1):
        theta, lq = proposals[i, :n_weighed], np.concatenate(parts_q[i])
        # A draw the flow put on a prior bound (a log-uniform parameter rounded onto it) has
        # no finite density there: left out of the weighting, which it cannot enter
        use = np.isfinite(lq)
        return importance_correct(theta[use], lq[use], prior.log_prob(theta[use]),
                                  -0.5 * stat[i, :n_weighed][use], rng_i, log_like_constant=consts[i],
                                  n_resample=n_resample)

    stat = np.full((m, n_samples), np.nan)
    parts_q = [[] for _ in range(m)]
    weighed = np.zeros(m, dtype=int)
    goal = np.full(m, n_samples if min_effective is None else min(n_samples, FIRST_WEIGHED))
    with _statistics_pool(simulator, simulators, x, proposals[:, :int(goal.min())], block_rows,
                          workers, executor) as (pool, cost):
        todo = np.arange(m)
        while todo.size:
            # spectra at the same stage share one batched evaluation
            for a, b in sorted({(int(weighed[i]), int(goal[i])) for i in todo}):
                sel = np.array([i for i in todo if weighed[i] == a and goal[i] == b])
                stat[sel, a:b] = statistics_of_spectra(
                    simulator, None if simulators is None else [simulators[i] for i in sel],
                    x[sel], proposals[sel, a:b], block_rows, pool, cost)
                for i in sel:
                    parts_q[i].append(log_q(i, a, b))
                weighed[sel] = b
            still = []
            for i in todo:
                if weighed[i] >= n_samples:
                    continue
                try:
                    so_far = weigh(i, weighed[i], 0)
                except ImportanceError:   # no weight above zero yet: weigh them all
                    goal[i] = n_samples
                    still.append(i)
                    continue
                effective = min(so_far.ess, so_far.ess_smoothed)   # the smaller: the reported one is raw
                if so_far.reliable and effective >= min_effective:
                    continue
                if not so_far.reliable:   # a heavy tail (or too few effective): weigh them all
                    goal[i] = n_samples
                else:   # as many more as the effective fraction so far says, with a margin
                    wanted = weighed[i] * min_effective / max(effective, 1.0) * 1.05
                    goal[i] = min(n_samples, max(weighed[i] + STAGE_ROWS,
                                                 -(-int(wanted) // STAGE_ROWS) * STAGE_ROWS))
                still.append(i)
            todo = np.array(still, dtype=int)
    samples = raw.copy()
    ess, k, ok = nan.copy(), nan.copy(), np.zeros(m, bool)
    for i in range(m):
        try:
            res = weigh(i, weighed[i], np.random.default_rng([seed, 2, i]), n_resample=n_samples)
        except ImportanceError as exc:   # no draw has a non-zero weight: this spectrum is flagged
            log.warning("%s: the exact-likelihood check cannot weigh its draws (%s)", labels[i], exc)
            ess[i] = 0.0
            continue
        ess[i], k[i], ok[i] = res.ess_fraction, res.pareto_k, res.reliable
        if res.reliable:
            samples[i] = res.theta
    return AmortizedPosteriors(samples, raw, ess, k, ok, labels, True, differences, weighed)


def _defensive_proposals(prior, raw: np.ndarray, rng: np.random.Generator):
    """Each spectrum's draws to weigh, (m, n, k), and the t of each (empty list: the network's alone).

    The last :data:`DEFENSIVE_SHARE` of each spectrum's network draws are not
    weighed: a Student t is fitted to them (covariance times
    :data:`DEFENSIVE_INFLATE`, in the prior's probit latent space) and the same
    number of its draws take their place, so the cost is the same and the t
    does not depend on the draws it is weighed with. The t's draws are spread
    evenly through the rows (every first ``j`` rows hold ``floor(j x share)``
    of them), so draws weighed in stages are the mixture at every stage. Too
    few draws for a t (under 10, or under ``k + 2`` for ``k`` parameters)
    keep the network's alone.
    """
    from xspec_sbi.inference.proposals import LatentStudentT
    m, n, k = raw.shape
    j = np.arange(n)
    from_t = np.floor((j + 1) * DEFENSIVE_SHARE) > np.floor(j * DEFENSIVE_SHARE)
    n_t = int(from_t.sum())
    if n_t < max(10, k + 2) or prior is None or not hasattr(prior, "n_dim"):
        return raw, []
    proposals = np.empty_like(raw)
    wider = []
    for i in range(m):
        t = LatentStudentT.fit(prior, raw[i, n - n_t:], inflate=DEFENSIVE_INFLATE)
        proposals[i, from_t] = t.sample(n_t, rng=rng)
        proposals[i, ~from_t] = raw[i, :n - n_t]
        wider.append(t)
    return proposals, wider
