"""The shared scheduler: rows of 2-D values, timed tasks and progress, the same bits as one
process; a simulation whose worker dies names its model."""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import time

import numpy as np
import pytest

from xspec_sbi.forward.schedule import RowCost, WorkerDied, evaluate_units
from xspec_sbi.forward.simulate import Simulator, make_pool, simulate
from xspec_sbi.model.expression import Model
from xspec_sbi.presets.nicer import builtin_nicer_response, reference_spectrum

SIZES = [100] * 9 + [37]          # the last unit short, as a run's last seed block


def _unit(u):
    """Unit ``u``'s values, (rows, 3): drawn from its own generator, as a seed block is."""
    return np.random.default_rng([7, u]).normal(size=(SIZES[u], 3))


def _here(u0, u1):
    return np.concatenate([_unit(u) for u in range(u0, u1)])


def _timed(u0, u1):
    return _here(u0, u1), 0.5 * sum(SIZES[u0:u1])     # 0.5 s per row "in the worker"


class Counting(cf.ThreadPoolExecutor):
    """Two threads that count the submitted tasks (evaluate_units itself needs no processes)."""

    workers = 2

    def __init__(self):
        super().__init__(2)
        self.submitted = 0

    def submit(self, fn, *args):
        self.submitted += 1
        return super().submit(fn, *args)


def test_two_dimensional_rows_across_an_executor_equal_one_process_bit_for_bit():
    alone = evaluate_units(None, SIZES, _here, None, RowCost(), "test", width=3)
    assert alone.shape == (sum(SIZES), 3)
    with Counting() as ex:
        cost = RowCost(task=1.0)                      # as if costly: every unit its own task
        done = []
        got = evaluate_units(ex, SIZES, _here, lambda u0, u1: (_timed, (u0, u1)), cost, "test",
                             width=3, timed=True, on_rows=done.append)
    assert ex.submitted == len(SIZES)
    np.testing.assert_array_equal(got, alone)
    assert sorted(done) == sorted(SIZES)              # each task's rows reported once
    # ten tasks of 0.5 s per row folded into the running mean from 1.0: 1 - 0.5 (1 - 0.8^10)
    assert abs(cost.task - (1 - 0.5 * (1 - 0.8 ** 10))) < 1e-12
    assert cost.wall is not None and cost.here is None


def test_progress_here_comes_one_unit_at_a_time():
    calls, done = [], []

    def here(u0, u1):
        calls.append((u0, u1))
        return _here(u0, u1)

    got = evaluate_units(None, SIZES, here, None, RowCost(), "test", width=3, on_rows=done.append)
    np.testing.assert_array_equal(got, _here(0, len(SIZES)))
    assert calls == [(u, u + 1) for u in range(len(SIZES))] and done == SIZES
    calls.clear()
    evaluate_units(None, SIZES, here, None, RowCost(), "test", width=3)
    assert calls == [(0, len(SIZES))]                 # without a progress callback: one call


class Aborting(Simulator):
    """A simulator whose model kills any process but the one that built it (a model abort)."""

    def expected_source(self, theta):
        if os.getpid() != self.settings_pid:
            os._exit(134)
        return super().expected_source(theta)


def test_a_worker_that_dies_while_simulating_names_the_model():
    base = Simulator.from_spectrum(reference_spectrum(2000, response=builtin_nicer_response()),
                                   Model("tbabs*powerlaw"))
    sim = Aborting(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    object.__setattr__(sim, "settings_pid", os.getpid())
    theta = np.repeat([[0.2, 1.7, 1.0]], 2048, axis=0)
    with make_pool(base, workers=2) as pool:
        pool.seconds_per_spectrum = 1.0      # as if costly: every seed block goes to the workers
        t0 = time.perf_counter()
        with pytest.raises(WorkerDied, match="simulations of model tbabs\\*powerlaw"):
            simulate(sim, theta, seed=1, executor=pool)
        assert time.perf_counter() - t0 < 60
