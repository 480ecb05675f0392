"""fakeit: Poisson spectra from a model, batched over processes.

XSPEC's ``fakeit`` draws the source spectrum as Poisson counts of the folded
model; when the spectrum has a background, the fake source spectrum also
contains Poisson counts of the background scaled to the source region
(BACKSCAL, EXPOSURE, AREASCAL), and a fake background spectrum is drawn from
the observed one. :class:`Simulator` does exactly that for a batch of
parameter vectors and is a pure function of ``(theta, rng)``.

Reproducibility: a run is cut into seed blocks of fixed size, block ``i``
draws from ``SeedSequence(seed).spawn(n_blocks)[i]``, so the same seed gives
the same spectra whatever executor or number of workers runs the blocks.
How many consecutive blocks travel to a worker as one task is chosen from the
measured cost of a spectrum (see :func:`simulate`); it never changes a number,
because every block is drawn with its own generator whatever task carries it.

The blocks are scheduled by :func:`~xspec_sbi.forward.schedule.evaluate_units`
(the exact statistic's scheduler too); the pool is :mod:`~xspec_sbi.forward.pool`.
"""
from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.forward.folding import Transfer, build_transfer, fold_model, trimmable
from xspec_sbi.forward.pool import SimulatorPool, installed_simulator, make_pool
# inference/members.py starts its processes behind the same guard, imported from here
from xspec_sbi.forward.pool import _main_module_hidden  # noqa: F401
from xspec_sbi.forward.schedule import RowCost, evaluate_units

__all__ = ["SpectralSimulator", "FakeitDraws", "Simulator", "JointSimulator", "SimulatorPool", "simulate", "make_pool", "fakeit_spectrum"]


@runtime_checkable
class SpectralSimulator(Protocol):
    """What every simulator offers: the engine's for one spectrum or several, and the XSPEC path's.

    A simulator is a pure function ``(theta, rng) -> counts``. Its data
    vector is the spectra side by side: per spectrum, the source bins, then
    the background bins when the spectrum has a background. ``parts`` are the
    one-spectrum simulators in that order (a one-spectrum simulator is its own
    only part) and ``split`` cuts data vectors into their blocks, so callers
    never need to ask which kind they hold.
    """

    model: object
    n_outputs: int

    @property
    def parts(self) -> Sequence["FakeitDraws"]: ...

    def split(self, x: np.ndarray) -> list[np.ndarray]: ...

    def __call__(self, theta, rng: np.random.Generator) -> np.ndarray: ...


class FakeitDraws:
    """fakeit's draws given the folded source model, shared by every one-spectrum simulator.

    A subclass provides ``n_bins``, ``expected_source(theta)``, ``model`` and
    the attributes ``background_counts`` / ``background_scale`` (None without
    a background).
    """

    @property
    def parts(self) -> tuple:
        """One spectrum: the simulator itself (see :class:`SpectralSimulator`)."""
        return (self,)

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        """One spectrum: the data vectors as they are, as the only block."""
        return [x]

    @property
    def has_background(self) -> bool:
        return self.background_counts is not None

    @property
    def n_outputs(self) -> int:
        """Length of one simulated data vector: source bins, then background bins if any."""
        return self.n_bins * (2 if self.has_background else 1)

    def expected(self, theta) -> np.ndarray:
        """Mean of the fake source spectrum (n_batch, n_bins): model plus scaled background."""
        mu = self.expected_source(theta)
        if self.has_background:
            mu = mu + self.background_scale * self.background_counts
        return mu

    def __call__(self, theta, rng: np.random.Generator) -> np.ndarray:
        """Fake spectra, shape (n_batch, n_outputs), counts.

        Source counts first; with a background, the fake background counts follow.
        """
        mu = self.expected(theta)
        if not np.all(np.isfinite(mu)) or np.any(mu < 0):
            bad = np.flatnonzero(~np.all(np.isfinite(mu) & (mu >= 0), axis=1))[0]
            raise ValueError(f"model {self.model.expression} gives invalid expected counts "
                             f"for parameters {np.atleast_2d(theta)[bad].tolist()}")
        src = rng.poisson(mu).astype(np.float64)
        if not self.has_background:
            return src
        bkg = rng.poisson(np.broadcast_to(self.background_counts, mu.shape)).astype(np.float64)
        return np.concatenate([src, bkg], axis=1)


@dataclass(frozen=True)
class Simulator(FakeitDraws):
    """fakeit for one spectrum set-up: ``(theta, rng) -> counts``.

    Parameters
    ----------
    model : Model
    transfer : Transfer
    settings : XspecSettings
        Abundance and cross-section tables; applied in every process that runs it.
    background_counts : ndarray (n_bins,) or None
        Observed background counts on the source's noticed binning.
    background_scale : ndarray (n_bins,) or None
        Factor taking background counts to the source region,
        ``(t_s * BACKSCAL_s * AREASCAL_s) / (t_b * BACKSCAL_b * AREASCAL_b)``.
    """

    model: object
    transfer: Transfer
    settings: xslibrary.XspecSettings
    background_counts: np.ndarray | None = None
    background_scale: np.ndarray | None = None

    @classmethod
    def from_spectrum(cls, spectrum, model, settings=None, use_background: bool = True,
                      trim: bool = True) -> "Simulator":
        """Build from a :class:`~xspec_sbi.data.spectrum.Spectrum` (with response) and a model."""
        bkg = scale = None
        if use_background and spectrum.background is not None:
            bkg = np.asarray(spectrum.binned_background_counts(), dtype=np.float64)
            scale = np.broadcast_to(np.asarray(spectrum.background_scale(), dtype=np.float64),
                                    bkg.shape).copy()
        return cls(model=model, transfer=build_transfer(spectrum, trim=trim and trimmable(model)),
                   settings=settings or xslibrary.current_settings(),
                   background_counts=bkg, background_scale=scale)

    @property
    def n_bins(self) -> int:
        return self.transfer.n_bins

    def expected_source(self, theta) -> np.ndarray:
        """Folded model counts (n_batch, n_bins), without background."""
        xslibrary.configure(self.settings)
        return fold_model(self.model, self.transfer, theta)


@dataclass(frozen=True)
class JointSimulator:
    """Several spectra fitted together (XSPEC's joint fit): one theta, outputs side by side.

    Parameters
    ----------
    parts : tuple of Simulator
        One per spectrum, sharing the free parameters (same model and settings).
    """

    parts: tuple

    def __post_init__(self):
        if not self.parts:
            raise ValueError("JointSimulator needs at least one spectrum")
        if len({p.settings for p in self.parts}) != 1:
            raise ValueError("all spectra of a joint simulation must share XSPEC settings")

    @property
    def settings(self):
        return self.parts[0].settings

    @property
    def model(self):
        return self.parts[0].model

    @property
    def n_outputs(self) -> int:
        return sum(p.n_outputs for p in self.parts)

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        """Cut data vectors (..., n_outputs) into one block per spectrum."""
        edges = np.cumsum([0] + [p.n_outputs for p in self.parts])
        return [x[..., a:b] for a, b in zip(edges[:-1], edges[1:])]

    def __call__(self, theta, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([p(theta, rng) for p in self.parts], axis=1)


def fakeit_spectrum(spectrum, model, theta, rng: np.random.Generator, exposure: float | None = None):
    """One fake spectrum channel by channel, as XSPEC's ``fakeit`` writes it.

    Parameters
    ----------
    spectrum : Spectrum
        Template with response (and optionally background, grouping, notice state).
    model : Model
    theta : array_like (n_free,)
    rng : numpy.random.Generator
    exposure : float, optional
        Exposure of the fake spectrum, s (default: the template's).

    Returns
    -------
    Spectrum
        Same set-up with Poisson counts in every channel (plus, with a
        background, Poisson counts of the background scaled to the source
        region, and a fake background drawn from the observed one).
    """
    import dataclasses

    resp = spectrum.response
    exp = float(exposure or spectrum.exposure)
    edges = np.asarray(resp.energy_edges, dtype=np.float64)
    flux = model.evaluate(edges, np.atleast_2d(theta))[0]
    per_channel = exp * np.asarray(spectrum.areascal) * np.asarray(resp.effective_matrix().T @ flux)
    counts = rng.poisson(per_channel).astype(np.float64)
    bkg = spectrum.background
    if bkg is not None:
        scale = (exp * np.asarray(spectrum.backscal) * np.asarray(spectrum.areascal)) / (
            bkg.exposure * np.asarray(bkg.backscal) * np.asarray(bkg.areascal))
        counts = counts + rng.poisson(scale * bkg.counts)
        bkg = bkg.with_counts(rng.poisson(bkg.counts).astype(np.float64))
    return dataclasses.replace(spectrum, counts=counts, exposure=exp, background=bkg, path=None)


# --- running many -------------------------------------------------------------

def _blocks(sim, theta, seed_seqs, block_size) -> np.ndarray:
    """Consecutive seed blocks of ``theta``, block ``k`` drawn from ``seed_seqs[k]``.

    Returns
    -------
    ndarray (rows, n_outputs), counts
    """
    if len(seed_seqs) == 1:   # one block (every block run here): its array as it is, no copy
        return sim(theta, np.random.default_rng(seed_seqs[0]))
    out = np.empty((theta.shape[0], sim.n_outputs))
    for k, sq in enumerate(seed_seqs):
        a = k * block_size
        out[a:a + block_size] = sim(theta[a:a + block_size], np.random.default_rng(sq))
    return out


def _run_blocks(simulator, theta, seed_seqs, block_size):
    """Run consecutive seed blocks in a worker; counts come back as compact integers.

    Returns ``(counts, seconds)``: the blocks side by side, in the smallest
    unsigned integer type that holds them exactly (Poisson counts are whole
    numbers; uint16 is a quarter of float64's bytes, and moving the result
    between processes is what made the pool lose to one process on cheap
    spectra), and the seconds the work took, which the parent's cost estimate
    uses.
    """
    sim = simulator if simulator is not None else installed_simulator()
    if sim is None:
        raise RuntimeError("worker has no simulator installed")
    t0 = time.perf_counter()
    return _compact(_blocks(sim, theta, seed_seqs, block_size)), time.perf_counter() - t0


def _compact(counts: np.ndarray) -> np.ndarray:
    """``counts`` in uint16 or uint32 when that holds every value exactly, else as they are."""
    top = counts.max(initial=0.0)
    for kind in (np.uint16, np.uint32):
        if top <= np.iinfo(kind).max and counts.min(initial=0.0) >= 0:
            packed = counts.astype(kind)
            # whole numbers survive the cast exactly; anything else is sent as it is
            if np.array_equal(packed, counts):
                return packed
            break
    return counts


def simulate(simulator: Simulator, theta, seed, executor: cf.Executor | None = None,
             chunk_size: int = 256, progress: bool = False, desc: str = "simulating"):
    """Fake spectra for many parameter vectors, optionally in parallel.

    Parameters
    ----------
    simulator : Simulator
    theta : array_like (n, n_free)
    seed : int or numpy.random.SeedSequence
    executor : concurrent.futures.Executor, optional
        None runs in this process. A pool from :func:`make_pool` already holds
        the simulator; any other executor (threads excepted: XSPEC is not
        thread-safe) gets it with each task.
    chunk_size : int
        Spectra per seed block; fixed so results do not depend on the executor.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray (n, simulator.n_outputs), counts

    Raises
    ------
    WorkerDied
        A worker process of ``executor`` ended (a model that aborts the process).

    Notes
    -----
    The seed blocks are the units of
    :func:`~xspec_sbi.forward.schedule.evaluate_units`, which decides where
    each runs: the cost of a spectrum (s) is measured on the first block,
    run here, unless known; a run under
    :data:`~xspec_sbi.forward.schedule.IN_PROCESS_SECONDS` stays here; a task
    carries about :data:`~xspec_sbi.forward.schedule.TASK_SECONDS` of blocks;
    a pool whose first wave (or last run) went slower than this process has
    its queued blocks taken back. A :class:`SimulatorPool` keeps these costs
    between runs in its ``cost``; another executor's ``seconds_per_spectrum``,
    ``here_seconds_per_spectrum`` and ``wall_seconds_per_spectrum``, where it
    has them, are read (the last two also written). None of these choices
    changes a number: each block has its own generator.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    if isinstance(executor, cf.ThreadPoolExecutor):
        raise ValueError("executor: XSPEC's model library is not thread-safe; "
                         "use a process pool (make_pool) or a Dask client")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size}: must be a positive number of spectra")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    n = theta.shape[0]
    starts = range(0, n, chunk_size)
    seeds = ss.spawn(len(starts))
    rows = lambda u0, u1: slice(starts[u0], min(starts[u1 - 1] + chunk_size, n))

    def here(u0, u1):
        return _blocks(simulator, theta[rows(u0, u1)], seeds[u0:u1], chunk_size)

    pool = isinstance(executor, SimulatorPool)
    payload = None if pool and executor.simulator is simulator else simulator   # else: sent along

    def task(u0, u1):
        return _run_blocks, (payload, theta[rows(u0, u1)], seeds[u0:u1], chunk_size)

    cost = executor.cost if pool else RowCost(
        here=getattr(executor, "here_seconds_per_spectrum", None),
        wall=getattr(executor, "wall_seconds_per_spectrum", None),
        task=getattr(executor, "seconds_per_spectrum", None))
    what = f"the simulations of model {getattr(simulator.model, 'expression', simulator.model)}"
    bar = _bar(n, progress, desc)
    try:
        out = evaluate_units(executor, [min(chunk_size, n - s) for s in starts], here, task, cost,
                             what, width=simulator.n_outputs, timed=True, on_rows=bar.update)
    finally:
        bar.close()
    if not pool:   # an executor that keeps its costs (a test's stand-in, say) gets them back
        for name, value in (("here_seconds_per_spectrum", cost.here),
                            ("wall_seconds_per_spectrum", cost.wall)):
            if hasattr(executor, name):
                setattr(executor, name, value)
    return out


def _bar(total, enabled, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc=desc, unit="spec", leave=False)
