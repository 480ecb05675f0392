"""Many rows of an exact statistic across a process pool, with the numbers of one process.

The exact statistic (cstat/wstat) is evaluated for every network draw, every
Metropolis move and every spectrum of an amortized application: tens of
thousands of parameter rows, each costing the model evaluation and the
folding (40-100 us on the paper's set-ups). The rows are cut into *units*
that the caller defines as whole blocks of its own in-process evaluation
(``PoissonStatistic.BLOCK_ROWS`` rows, or a whole spectrum), and consecutive
units travel to the pool's workers as one task. A worker evaluates each unit
exactly as the calling process would, so every row's arithmetic, and hence
every bit, is the same whatever the pool, its size or the task sizes.

The rules are :func:`~xspec_sbi.forward.simulate.simulate`'s: the cost of a
row is measured here first; work under ``IN_PROCESS_SECONDS`` stays here; a
task carries about ``TASK_SECONDS`` of work but at most a quarter of each
worker's share; a pool measured slower than this process (its cores busy
elsewhere) has its queued tasks taken back and is not used again for that
work. Only parameter rows (and the data a task needs) go out and one float
per row comes back. A worker that dies raises :class:`WorkerDied`, naming
what was evaluated, instead of leaving the caller waiting; an interrupt
cancels the queued tasks and reaches the pool's owner, whose ``stop`` ends
the workers.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from xspec_sbi.forward.simulate import IN_PROCESS_SECONDS, TASK_SECONDS, SimulatorPool

__all__ = ["RowCost", "WorkerDied", "evaluate_units", "pool_of", "worth_a_pool", "POOL_START_SECONDS"]

#: Seconds to start a pool of spawned workers (each imports the package and loads XSPEC's
#: library): measured 2-3 s for 2 workers on the 2-core test machine.
POOL_START_SECONDS = 3.0


class WorkerDied(RuntimeError):
    """A worker process ended while evaluating (a model that aborts the process, say)."""


@dataclass
class RowCost:
    """What the scheduler measured for one kind of work, s per row.

    Attributes
    ----------
    here : float or None
        Seconds per row in the calling process.
    wall : float or None
        The pool's wall-clock seconds per row over its last run: once it is
        not below ``here`` the work stays in the calling process.
    """

    here: float | None = None
    wall: float | None = None

    @property
    def pool_slower(self) -> bool:
        return self.here is not None and self.wall is not None and self.wall >= self.here


def pool_of(executor):
    """``executor`` when the statistic may use it (a :class:`SimulatorPool`), else None.

    Only this package's process pools qualify: their workers run on this
    machine with XSPEC set up as here. A Dask client or another executor
    runs the simulations only (the statistic's tasks are short and a remote
    cluster's round trips would cost more than the work).
    """
    return executor if isinstance(executor, SimulatorPool) else None


def worth_a_pool(seconds_here: float, workers: int) -> bool:
    """Whether starting a pool of ``workers`` for ``seconds_here`` of work (s) saves time."""
    return workers > 1 and seconds_here * (1.0 - 1.0 / workers) > POOL_START_SECONDS


def evaluate_units(executor, sizes, here: Callable[[int, int], np.ndarray],
                   task: Callable[[int, int], tuple], cost: RowCost, what: str) -> np.ndarray:
    """Values of every row, units ``[u0, u1)`` evaluated here or in the pool.

    Parameters
    ----------
    executor : SimulatorPool or None
        None evaluates everything here.
    sizes : sequence of int
        Rows of each unit, in order.
    here : callable
        ``here(u0, u1) -> (rows,)``: units ``u0 .. u1-1`` evaluated in this process.
    task : callable
        ``task(u0, u1) -> (function, args)``: the same as a picklable call
        returning the values (rows,).
    cost : RowCost
        Kept by the caller between calls (one per kind of work); updated here.
    what : str
        Named in the error when a worker dies ("the cstat of model tbabs*powerlaw").

    Returns
    -------
    ndarray (sum(sizes),)
    """
    sizes = np.asarray(sizes, dtype=int)
    n_units = len(sizes)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty(int(edges[-1]))

    def run_here(u0, u1):
        if u1 > u0:
            out[edges[u0]:edges[u1]] = here(u0, u1)

    if executor is None or n_units < 2 or cost.pool_slower:
        run_here(0, n_units)
        return out
    first = 0
    if cost.here is None:
        t0 = time.perf_counter()
        run_here(0, 1)
        cost.here = (time.perf_counter() - t0) / max(int(sizes[0]), 1)
        first = 1
    left = int(edges[-1] - edges[first])
    if first >= n_units or cost.here * left < IN_PROCESS_SECONDS:
        run_here(first, n_units)
        return out
    workers = getattr(executor, "workers", None) or os.cpu_count() or 1
    mean_rows = left / (n_units - first)
    per_task = int(np.clip(np.ceil(TASK_SECONDS / (cost.here * mean_rows)), 1,
                           max(1, (n_units - first) // (4 * workers))))
    futures = {}
    t_submit = time.perf_counter()
    taken_back = []
    try:
        for u in range(first, n_units, per_task):
            u1 = min(u + per_task, n_units)
            fn, args = task(u, u1)
            futures[executor.submit(fn, *args)] = (u, u1)
        pending = set(futures)
        pooled = finished = 0
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                u0, u1 = futures[fut]
                out[edges[u0]:edges[u1]] = fut.result()
                pooled += int(edges[u1] - edges[u0])
                finished += 1
            if finished >= workers and pending and not taken_back \
                    and (time.perf_counter() - t_submit) / pooled >= cost.here:
                # a first wave done, slower than this process alone: queued tasks come back
                for fut in list(pending):
                    if fut.cancel():
                        taken_back.append(futures[fut])
                        pending.discard(fut)
        if pooled:
            cost.wall = (time.perf_counter() - t_submit) / pooled
    except cf.process.BrokenProcessPool as exc:
        raise WorkerDied(f"a worker process died while evaluating {what} (a model that aborts "
                         "the process?); its pool cannot be used any more") from exc
    finally:
        for fut in futures:   # an error or an interrupt: nothing queued keeps the workers busy
            fut.cancel()
    for u0, u1 in taken_back:
        run_here(u0, u1)
    return out
