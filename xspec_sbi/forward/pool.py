"""The process pool whose workers each hold one simulator, XSPEC set up alike.

Workers are spawned (not forked), started at construction, ignore Ctrl-C
(the parent decides), run one BLAS thread each and exit when their parent
is gone. The pool keeps the scheduler's measured costs (a
:class:`~xspec_sbi.forward.schedule.RowCost`) between runs.
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

from xspec_sbi.model import library as xslibrary
from xspec_sbi.forward.schedule import RowCost

__all__ = ["SimulatorPool", "make_pool", "installed_simulator"]

#: The simulator this worker process holds (set by :func:`_install`; None in the parent).
_installed = None


def _install(simulator, parent: int | None = None) -> None:
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


@contextlib.contextmanager
def _main_module_hidden():
    """Keep spawned workers from re-running the user's script.

    A spawned child imports the parent's ``__main__`` file; a PyXspec script
    without an ``if __name__ == "__main__"`` guard would then run again in
    every worker. The workers need nothing from ``__main__`` (they run this
    package's functions on pickled engine objects), so the reference to it is
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

    def __init__(self, simulator, workers: int | None = None):
        self.simulator = simulator
        n = workers or os.cpu_count() or 1
        self.workers = n
        #: What :func:`~xspec_sbi.forward.simulate.simulate` measured for this simulator's
        #: spectra, s per spectrum: in a worker, here, and the pool's wall clock.
        self.cost = RowCost()
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

    @property
    def seconds_per_spectrum(self) -> float | None:
        """Measured seconds per spectrum in a worker (None until a task has run); sizes tasks."""
        return self.cost.task

    @seconds_per_spectrum.setter
    def seconds_per_spectrum(self, value: float | None) -> None:
        self.cost.task = value


def make_pool(simulator, workers: int | None = None) -> SimulatorPool:
    """A :class:`SimulatorPool` for ``simulator`` with ``workers`` processes (default: all cores)."""
    return SimulatorPool(simulator, workers)

