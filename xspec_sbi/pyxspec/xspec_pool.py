"""Folding many parameter vectors through XSPEC: a worker pool, progress and a time estimate.

XSPEC folds one parameter vector per ``Model.setPars`` + ``Model.folded``
(milliseconds to tenths of a second each), so 10,000 vectors in the user's
process take minutes without a word. :func:`fold_many` measures the first
rows in this process, says how long the rest will take, and, when that is
long and the session can be rebuilt elsewhere, folds the rest on spawned
worker processes, each rebuilding the session once from ``Xset.save``'s
text (:meth:`XspecPathSimulator._restored`). Progress goes to stderr every
few seconds. A session workers cannot rebuild (a Python local model added
with ``AllModels.addPyMod`` exists only in its own process) is folded here,
and the message says so.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

__all__ = ["fold_many", "default_workers", "POOL_MIN_SECONDS"]

#: Below this estimated time for the whole batch, stay in this process:
#: starting workers (importing PyXspec, restoring the session) costs seconds.
POOL_MIN_SECONDS = 20.0
#: Rows folded here first, to measure XSPEC's cost per row.
_PROBE_ROWS = 8
_REPORT_EVERY = 5.0   # s between progress lines

_POOL: dict = {}        # (workers,) -> ProcessPoolExecutor
_UNRESTORABLE: set = set()   # session digests workers could not rebuild


def default_workers() -> int:
    """Worker processes for the XSPEC path: ``XSPEC_SBI_XSPEC_WORKERS``, else the CPUs (at most 8)."""
    text = os.environ.get("XSPEC_SBI_XSPEC_WORKERS", "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"XSPEC_SBI_XSPEC_WORKERS={text!r} is not an integer") from None
        return max(1, n)
    return max(1, min(8, os.cpu_count() or 1))


def _log(message: str) -> None:
    print(f"[xspec_sbi] {message}", file=sys.stderr, flush=True)


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _POOL:
        # spawn: a forked child would share the parent's XSPEC state mid-call.
        _POOL[workers] = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    return _POOL[workers]


@atexit.register
def _shutdown() -> None:
    for pool in _POOL.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOL.clear()


def _fold_in_worker(simulator, rows: np.ndarray) -> np.ndarray:
    """Run in a worker: the session rebuilt once per process, then folded."""
    return simulator._fold_rows(simulator._restored(), rows)


def _eta(done: int, total: int, elapsed: float) -> str:
    left = elapsed / max(done, 1) * (total - done)
    return f"{done}/{total} parameter vectors, {elapsed:.0f} s so far, about {left:.0f} s left"


def fold_many(simulator, theta: np.ndarray, fold_here, digest: str,
              workers: int | None = None, label: str = "") -> np.ndarray:
    """XSPEC's folded counts for every row of ``theta``, with progress and an estimate.

    Parameters
    ----------
    simulator : XspecPathSimulator
        Picklable; workers call its ``_fold_rows(_restored(), rows)``.
    theta : ndarray (n, n_free)
    fold_here : callable
        ``rows -> counts`` in this process (on the live session).
    digest : str
        Identifies the saved session (sessions workers could not rebuild are
        not tried again).
    workers : int, optional
        Default :func:`default_workers`.
    label : str
        Names the spectrum in messages.

    Returns
    -------
    ndarray (n, n_bins), counts
    """
    n = theta.shape[0]
    workers = default_workers() if workers is None else max(1, int(workers))
    start = time.perf_counter()
    head = fold_here(theta[:_PROBE_ROWS])
    if n <= _PROBE_ROWS:
        return head
    per_row = (time.perf_counter() - start) / head.shape[0]
    estimate = per_row * (n - head.shape[0])
    parts = [head]
    rest = theta[head.shape[0]:]
    use_pool = workers > 1 and estimate > POOL_MIN_SECONDS and digest not in _UNRESTORABLE
    where = f" on {workers} XSPEC worker processes" if use_pool else " in this process"
    if estimate > _REPORT_EVERY:
        _log(f"XSPEC path{label}: folding {n} parameter vectors one Model.setPars at a time "
             f"({per_row * 1e3:.1f} ms each here): about {estimate:.0f} s{where}")
    if use_pool:
        try:
            parts.append(_fold_on_pool(simulator, rest, workers, start, n, head.shape[0]))
            return np.concatenate(parts)
        except Exception as exc:  # noqa: BLE001 - XSPEC raises bare Exceptions in workers
            _UNRESTORABLE.add(digest)
            _log(f"XSPEC path{label}: worker processes could not fold this session ({exc}); "
                 "folding in this process instead")
    done, last = head.shape[0], time.perf_counter()
    step = max(1, int(_REPORT_EVERY / max(per_row, 1e-6)))
    for i in range(0, rest.shape[0], step):
        parts.append(fold_here(rest[i:i + step]))
        done += parts[-1].shape[0]
        if estimate > _REPORT_EVERY and time.perf_counter() - last >= _REPORT_EVERY:
            _log(f"XSPEC path{label}: {_eta(done, n, time.perf_counter() - start)}")
            last = time.perf_counter()
    return np.concatenate(parts)


def _fold_on_pool(simulator, rows, workers, start, total, done) -> np.ndarray:
    pool = _pool(workers)
    # A few chunks per worker: progress without much pickling.
    chunks = np.array_split(rows, min(rows.shape[0], workers * 4))
    futures = [pool.submit(_fold_in_worker, simulator, c) for c in chunks]
    out, last = [], time.perf_counter()
    for chunk, future in zip(chunks, futures):
        out.append(future.result())
        done += chunk.shape[0]
        if time.perf_counter() - last >= _REPORT_EVERY:
            _log(f"XSPEC path: {_eta(done, total, time.perf_counter() - start)}")
            last = time.perf_counter()
    return np.concatenate(out)
