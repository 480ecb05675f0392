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

The module is over 400 lines because the simulator and the code that runs it
in many processes share one reproducibility contract (the seed blocks above);
keeping them together keeps that contract in one place.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.forward.folding import Transfer, build_transfer, fold_model, trimmable

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

_installed: Simulator | None = None


def _install(simulator: Simulator, parent: int | None = None) -> None:
    """Pool initializer: one simulator per worker, XSPEC set up alike.

    The parent alone decides on interrupts: Ctrl-C reaches every process of
    the terminal's group, and workers that raised their own
    ``KeyboardInterrupt`` printed one traceback each. A worker whose parent is
    gone (killed with SIGKILL, say) exits within a second instead of waiting
    forever on a queue that the other workers keep open.
    """
    global _installed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                         name="xspec_sbi-parent-watch").start()
    try:  # one BLAS thread per worker: the processes are the parallelism
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    xslibrary.configure(simulator.settings)
    _installed = simulator


def installed_simulator():
    """The simulator this worker process was started with (None outside a pool's worker)."""
    return _installed


def _exit_with_parent(parent: int, period_s: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(period_s)
    os._exit(1)


def _run_blocks(simulator, theta, seed_seqs, block_size):
    """Run consecutive seed blocks in a worker; counts come back as compact integers.

    Returns ``(counts, seconds)``: the blocks side by side, in the smallest
    unsigned integer type that holds them exactly (Poisson counts are whole
    numbers; uint16 is a quarter of float64's bytes, and moving the result
    between processes is what made the pool lose to one process on cheap
    spectra), and the seconds the work took, which the parent's cost estimate
    uses.
    """
    sim = simulator if simulator is not None else _installed
    if sim is None:
        raise RuntimeError("worker has no simulator installed")
    t0 = time.perf_counter()
    out = np.empty((theta.shape[0], sim.n_outputs))
    for k, sq in enumerate(seed_seqs):
        a = k * block_size
        out[a:a + block_size] = sim(theta[a:a + block_size], np.random.default_rng(sq))
    return _compact(out), time.perf_counter() - t0


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


@contextlib.contextmanager
def _main_module_hidden():
    """Keep spawned workers from re-running the user's script.

    A spawned child imports the parent's ``__main__`` file; a PyXspec script
    without an ``if __name__ == "__main__"`` guard would then run again in
    every worker. The workers need nothing from ``__main__`` (they run this
    module's functions on pickled engine objects), so the reference to it is
    withheld while they start.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _ready():
    return os.getpid()


class SimulatorPool(cf.ProcessPoolExecutor):
    """A process pool whose workers each hold one simulator, set up alike.

    Workers are spawned, not forked: the parent may hold torch's and BLAS's
    threads and the XSPEC library's state, none of which survive a fork
    safely. They are all started at construction (see
    :func:`_main_module_hidden` for why), which takes about a second.
    """

    def __init__(self, simulator: Simulator, workers: int | None = None):
        self.simulator = simulator
        n = workers or os.cpu_count() or 1
        self.workers = n
        #: Measured seconds per spectrum in a worker (None until a task has run); sizes tasks.
        self.seconds_per_spectrum: float | None = None
        #: Measured seconds per spectrum in the calling process, and the pool's wall-clock
        #: seconds per spectrum over its last run: the pool is left alone when it is slower.
        self.here_seconds_per_spectrum: float | None = None
        self.wall_seconds_per_spectrum: float | None = None
        super().__init__(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                         initializer=_install, initargs=(simulator, os.getpid()))
        try:
            with _main_module_hidden():
                started = [self.submit(_ready) for _ in range(n)]
            cf.wait(started)
            # one worker may have answered two of the calls: the executor's own table
            # (pid -> process; a CPython detail, hence getattr) completes the list
            self._worker_pids = sorted({f.result() for f in started}
                                       | set(getattr(self, "_processes", None) or ()))
        except BaseException:
            self._worker_pids = []
            self.stop()
            raise

    def stop(self) -> None:
        """Stop now: drop the queued chunks and end the workers (an error or interrupt unwinds).

        ``shutdown(wait=True)`` would first finish every queued chunk; this
        ends the workers (SIGTERM; they are this process's children, not yet
        reaped, so their ids are theirs) and waits only for the pool's threads.
        """
        for pid in getattr(self, "_worker_pids", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.shutdown(wait=True, cancel_futures=True)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            self.stop()
        return False


    def record_cost(self, seconds: float, n_spectra: int) -> None:
        """Fold a finished task's cost (s for ``n_spectra`` spectra) into :attr:`seconds_per_spectrum`."""
        if n_spectra <= 0:
            return
        c = seconds / n_spectra
        old = self.seconds_per_spectrum
        # a running mean that follows the machine's load without jumping on one slow task
        self.seconds_per_spectrum = c if old is None else 0.8 * old + 0.2 * c


def make_pool(simulator: Simulator, workers: int | None = None) -> SimulatorPool:
    """A :class:`SimulatorPool` for ``simulator`` with ``workers`` processes (default: all cores)."""
    return SimulatorPool(simulator, workers)


#: Work per pooled task, s: long enough that a task's fixed cost (submitting,
#: pickling, collecting: ~1 ms) stays near 1 %, short enough for the progress
#: bar and for the workers to finish together.
TASK_SECONDS = 0.1
#: Work below which a pool is not used, s: the tasks would cost more than they save.
IN_PROCESS_SECONDS = 0.05


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

    Notes
    -----
    With an executor, the cost of one spectrum (s) is measured on the first
    seed block, run here, or taken from the executor's
    ``seconds_per_spectrum`` (a :class:`SimulatorPool` keeps it from earlier
    runs, through its ``record_cost``). When the whole run would take under
    :data:`IN_PROCESS_SECONDS` it stays in this process; otherwise a task
    carries as many consecutive blocks as take :data:`TASK_SECONDS`, but at
    most a quarter of each worker's share (so the workers finish together).
    A :class:`SimulatorPool` also keeps the cost measured here and its own
    wall-clock rate: when a first wave of tasks (or its last run) went slower
    than this process alone, the queued tasks are taken back and run here, so
    the pool never loses to one process by more than one wave.
    None of these choices changes a number: each block has its own generator.
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
    out = np.empty((n, simulator.n_outputs))
    bar = _bar(n, progress, desc)

    def here(blocks):
        for k in blocks:
            s = starts[k]
            out[s:s + chunk_size] = simulator(theta[s:s + chunk_size], np.random.default_rng(seeds[k]))
            bar.update(min(chunk_size, n - s))

    try:
        if executor is None:
            here(range(len(starts)))
            return out
        # a SimulatorPool (or any executor with these attributes) knows its cost per spectrum
        cost = getattr(executor, "seconds_per_spectrum", None)
        first = 0
        if cost is None and len(starts):
            t0 = time.perf_counter()
            here([0])
            cost = (time.perf_counter() - t0) / min(chunk_size, n)
            first = 1
            if hasattr(executor, "here_seconds_per_spectrum"):
                executor.here_seconds_per_spectrum = cost
        left = n - first * chunk_size
        # the pool never loses to this process: once its wall-clock rate was measured slower
        # (a machine whose cores are busy elsewhere), the work stays here
        cost_here = getattr(executor, "here_seconds_per_spectrum", None)
        wall = getattr(executor, "wall_seconds_per_spectrum", None)
        slower = cost_here is not None and wall is not None and wall >= cost_here
        if left <= 0 or cost * left < IN_PROCESS_SECONDS or slower:
            here(range(first, len(starts)))
            return out
        workers = getattr(executor, "workers", None) or os.cpu_count() or 1
        n_left = len(starts) - first
        per_task = int(np.clip(np.ceil(TASK_SECONDS / (cost * chunk_size)), 1,
                               max(1, n_left // (4 * workers))))
        installed = isinstance(executor, SimulatorPool) and executor.simulator is simulator
        payload = None if installed else simulator
        record = getattr(executor, "record_cost", None)
        futures = {}
        t_submit = time.perf_counter()
        for k in range(first, len(starts), per_task):
            blocks = range(k, min(k + per_task, len(starts)))
            s, e = starts[blocks[0]], min(starts[blocks[-1]] + chunk_size, n)
            futures[executor.submit(_run_blocks, payload, theta[s:e],
                                    [seeds[j] for j in blocks], chunk_size)] = (s, blocks)
        pooled, finished, taken_back = 0, 0, []
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                s, _ = futures[fut]
                block, seconds = fut.result()
                out[s:s + block.shape[0]] = block
                if record is not None:
                    record(seconds, block.shape[0])
                bar.update(block.shape[0])
                pooled += block.shape[0]
                finished += 1
            if finished >= workers and cost_here is not None and not taken_back and pending \
                    and (time.perf_counter() - t_submit) / pooled >= cost_here:
                # a first wave done, slower than this process alone: queued tasks come back
                # (a cancelled future is not waited for: only a pool's own thread reports it)
                for fut in list(pending):
                    if fut.cancel():
                        taken_back.append(futures[fut][1])
                        pending.discard(fut)
        wall_rate = (time.perf_counter() - t_submit) / max(pooled, 1)
        if hasattr(executor, "wall_seconds_per_spectrum") and pooled:
            executor.wall_seconds_per_spectrum = wall_rate
        for blocks in taken_back:
            here(blocks)
        return out
    finally:
        bar.close()


def _bar(total, enabled, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc=desc, unit="spec", leave=False)
