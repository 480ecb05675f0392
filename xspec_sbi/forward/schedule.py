"""Rows of work cut into units, run here or across an executor, with the numbers of one process.

The simulations (:func:`~xspec_sbi.forward.simulate.simulate`) and the exact
statistic (:mod:`~xspec_sbi.forward.pooled`) both evaluate many rows that the
caller cuts into *units* (a seed block of spectra, a block of folded rows, a
spectrum); a unit is computed the same way wherever it runs, so where it runs
never changes a bit. :func:`evaluate_units` decides where: the cost of a row
is measured here first (unless already known); work under
:data:`IN_PROCESS_SECONDS` stays here; consecutive units travel as one task of
about :data:`TASK_SECONDS`, but at most a quarter of each worker's share (so
the workers finish together); an executor whose first wave ran slower than
this process alone (its cores busy elsewhere) has its queued tasks taken back
and is not used again for that work. A worker process that dies raises
:class:`WorkerDied`, naming what was evaluated, instead of leaving the caller
waiting; an error or interrupt cancels every queued task.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["RowCost", "WorkerDied", "evaluate_units", "TASK_SECONDS", "IN_PROCESS_SECONDS"]

#: Work per pooled task, s: long enough that a task's fixed cost (submitting,
#: pickling, collecting: ~1 ms) stays near 1 %, short enough for the progress
#: bar and for the workers to finish together.
TASK_SECONDS = 0.1
#: Work below which a pool is not used, s: the tasks would cost more than they save.
IN_PROCESS_SECONDS = 0.05


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
    task : float or None
        Seconds per row inside a worker, a running mean over finished tasks
        that report their time (see :meth:`record`); sizes the tasks when
        known, else ``here`` does.
    """

    here: float | None = None
    wall: float | None = None
    task: float | None = None

    @property
    def pool_slower(self) -> bool:
        return self.here is not None and self.wall is not None and self.wall >= self.here

    def record(self, seconds: float, rows: int) -> None:
        """Fold a finished task's cost (``seconds`` s in a worker, ``rows`` rows) into :attr:`task`."""
        if rows <= 0:
            return
        c = seconds / rows
        # a running mean that follows the machine's load without jumping on one slow task
        self.task = c if self.task is None else 0.8 * self.task + 0.2 * c


def evaluate_units(executor, sizes, here: Callable[[int, int], np.ndarray],
                   task: Callable[[int, int], tuple], cost: RowCost, what: str,
                   width: int | None = None, timed: bool = False,
                   on_rows: Callable[[int], object] | None = None) -> np.ndarray:
    """Values of every row, units ``[u0, u1)`` evaluated here or by ``executor``.

    Parameters
    ----------
    executor : concurrent.futures.Executor or None
        None evaluates everything here; so does one unit alone (a single task
        cannot gain from a pool).
    sizes : sequence of int
        Rows of each unit, in order.
    here : callable
        ``here(u0, u1) -> (rows,)`` or ``(rows, width)``: units ``u0 .. u1-1``
        evaluated in this process.
    task : callable
        ``task(u0, u1) -> (function, args)``: the same as a picklable call
        returning those values (with ``timed``, ``(values, seconds)``).
    cost : RowCost
        Kept by the caller between calls (one per kind of work); updated here.
    what : str
        Named in the error when a worker dies ("the cstat of model tbabs*powerlaw").
    width : int, optional
        Values per row; None: one value per row.
    timed : bool
        Tasks return ``(values, seconds)``: the seconds their work took in
        the worker, folded into ``cost.task``.
    on_rows : callable, optional
        ``on_rows(n)`` after every ``n`` rows done (a progress bar); with it,
        the units kept here are evaluated one at a time.

    Returns
    -------
    ndarray (sum(sizes),) or (sum(sizes), width)
    """
    sizes = np.asarray(sizes, dtype=int)
    n_units = len(sizes)
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    out = np.empty((int(edges[-1]),) if width is None else (int(edges[-1]), int(width)))

    def run_here(u0, u1):
        step = 1 if on_rows is not None else max(u1 - u0, 1)
        for u in range(u0, u1, step):
            v = min(u + step, u1)
            out[edges[u]:edges[v]] = here(u, v)
            if on_rows is not None:
                on_rows(int(edges[v] - edges[u]))

    if executor is None or n_units < 2 or cost.pool_slower:
        run_here(0, n_units)
        return out
    first = 0
    if cost.task is None and cost.here is None:
        t0 = time.perf_counter()
        run_here(0, 1)
        cost.here = (time.perf_counter() - t0) / max(int(sizes[0]), 1)
        first = 1
    per_row = cost.task if cost.task is not None else cost.here
    left = int(edges[-1] - edges[first])
    if first >= n_units or per_row * left < IN_PROCESS_SECONDS:
        run_here(first, n_units)
        return out
    workers = getattr(executor, "workers", None) or os.cpu_count() or 1
    mean_rows = left / (n_units - first)
    per_task = int(np.clip(np.ceil(TASK_SECONDS / (per_row * mean_rows)), 1,
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
                rows = int(edges[u1] - edges[u0])
                values = fut.result()
                if timed:
                    values, seconds = values
                    cost.record(seconds, rows)
                out[edges[u0]:edges[u1]] = values
                pooled += rows
                finished += 1
                if on_rows is not None:
                    on_rows(rows)
            if finished >= workers and pending and not taken_back and cost.here is not None \
                    and (time.perf_counter() - t_submit) / pooled >= cost.here:
                # a first wave done, slower than this process alone: queued tasks come back
                # (a cancelled future is not waited for: only a pool's own thread reports it)
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
