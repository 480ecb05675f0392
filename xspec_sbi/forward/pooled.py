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

The scheduler is :func:`~xspec_sbi.forward.schedule.evaluate_units`, the
simulations' too (its rules are written there: small work and a pool
measured slower stay here; a worker that dies raises :class:`WorkerDied`,
naming what was evaluated). Only parameter rows (and the data a task needs)
go out and one float per row comes back; an interrupt cancels the queued
tasks and reaches the pool's owner, whose ``stop`` ends the workers. This
module adds which executors the statistic may use and when a pool of its
own is worth starting.
"""
from __future__ import annotations

from xspec_sbi.forward.pool import SimulatorPool
# the scheduler, shared with the simulations; its names are read from here too
from xspec_sbi.forward.schedule import RowCost, WorkerDied, evaluate_units

__all__ = ["RowCost", "WorkerDied", "evaluate_units", "pool_of", "worth_a_pool", "POOL_START_SECONDS"]

#: Seconds to start a pool of spawned workers (each imports the package and loads XSPEC's
#: library): measured 2-3 s for 2 workers on the 2-core test machine.
POOL_START_SECONDS = 3.0


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
