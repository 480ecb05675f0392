"""The exact statistic across a real process pool of 2: the same bits as one process.

One pool serves the module (starting one costs ~2-3 s): a joint fit of two
real spectra with their backgrounds (XMM-pn and Swift XRT, W-stat, two data
groups with group 2's norm untied) is installed in its workers; a C-stat
set-up travels with the tasks. The scheduler's rules (small work here, a
slower pool left alone) are checked on a recording executor.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest

from xspec_sbi.amortized import amortized_posteriors
from xspec_sbi.data.spectrum import load_spectrum
from xspec_sbi.forward.objective import PoissonStatistic, statistics_of_spectra
from xspec_sbi.forward.pooled import RowCost, WorkerDied, evaluate_units
from xspec_sbi.forward.simulate import Simulator, make_pool
from xspec_sbi.model.expression import Model
from xspec_sbi.model.groups import GroupedModel
from xspec_sbi.session import Session


def _theta(n, seed, groups=2):
    rng = np.random.default_rng(seed)
    cols = [rng.uniform(0.05, 1.0, n), rng.uniform(1.2, 2.8, n), 10 ** rng.uniform(-5, -3, n)]
    if groups == 2:
        cols.append(10 ** rng.uniform(-5, -3, n))
    return np.column_stack(cols)


@pytest.fixture(scope="module")
def joint_session(shared_data):
    pn = load_spectrum(shared_data / "xmm_pn_ngc7793_ulx4/PN.pha").ignore("**-0.5 8.-**")
    xrt = load_spectrum(shared_data / "swift_xrt_grb110731a/grb110731a_src.pha").ignore("bad")
    model = GroupedModel(Model("tbabs*powerlaw"), 2).thaw("powerlaw.norm[2]")
    session = Session((pn, xrt), model)
    assert all(s.background is not None for s in session.spectra)
    return session


@pytest.fixture(scope="module")
def pool(joint_session):
    with make_pool(joint_session.simulator(), workers=2) as p:
        yield p


def test_pooled_wstat_of_two_groups_equals_one_process_bit_for_bit(joint_session, pool):
    sim = pool.simulator                      # installed in the workers: only rows travel
    obs = sim(_theta(1, 0), np.random.default_rng(1))[0]
    here = PoissonStatistic(sim, obs)
    assert here.name == "wstat" and len(sim.parts) == 2
    theta = _theta(3000, 2)                   # 12 blocks of 256 (the last one 184 rows)
    pooled = here.using(pool)
    got = pooled(theta)
    assert pooled._cost.wall is not None      # the workers did evaluate
    np.testing.assert_array_equal(got, here(theta))
    np.testing.assert_array_equal(pooled(theta[:300]), here(theta[:300]))   # small: here


def test_pooled_cstat_with_the_set_up_sent_along_equals_one_process(joint_session, pool):
    pn = joint_session.spectra[0].with_background(None)
    sim = Simulator.from_spectrum(pn, Model("tbabs*powerlaw"))      # not the workers' simulator
    obs = sim(_theta(1, 3, groups=1), np.random.default_rng(4))[0]
    here = PoissonStatistic(sim, obs)
    assert here.name == "cstat"
    theta = _theta(6000, 5, groups=1)
    pooled = here.using(pool)
    np.testing.assert_array_equal(pooled(theta), here(theta))
    assert pooled._cost.wall is not None


@pytest.mark.parametrize("m,own", [(3, False), (3, True), (9, True)])
def test_statistics_of_spectra_pooled_equal_one_process(joint_session, pool, m, own):
    # 9 spectra with their own set-ups: whole spectra per task; 3: block-aligned pieces
    sim = pool.simulator
    raw = _theta(m * 700, 6).reshape(m, 700, -1)
    x = sim(raw[:, 0], np.random.default_rng(7))
    sims = [sim] * m if own else None
    if own:   # another exposure per spectrum: other set-ups than the workers'
        pn, xrt = joint_session.spectra
        sims = [Session((dataclasses.replace(pn, exposure=pn.exposure * f), xrt),
                        joint_session.model).simulator() for f in np.geomspace(0.5, 2, m)]
    want = statistics_of_spectra(sim, sims, x, raw, 256)
    cost = RowCost()
    got = statistics_of_spectra(sim, sims, x, raw, 256, executor=pool, cost=cost)
    assert cost.wall is not None
    np.testing.assert_array_equal(got, want)


def test_amortized_draws_identical_with_and_without_a_pool(joint_session, pool, caplog, monkeypatch):
    sim = pool.simulator
    from xspec_sbi.inference.priors import build_prior
    box = build_prior(sim.model.parameters, {"powerlaw.norm": ("log", 1e-5, 1e-3),
                                             "powerlaw.norm[2]": ("log", 1e-5, 1e-3)})

    class PriorAsNetwork:
        def sample(self, x, n, rng):
            return box.sample(len(x) * n, rng=np.random.default_rng(rng)).reshape(len(x), n, -1)

        def log_prob(self, theta, x):
            return box.log_prob(theta)

    x = sim(box.sample(3, rng=np.random.default_rng(8)), np.random.default_rng(9))
    a = amortized_posteriors(PriorAsNetwork(), sim, box, x, n_samples=1000, seed=4, workers=1)
    b = amortized_posteriors(PriorAsNetwork(), sim, box, x, n_samples=1000, seed=4, executor=pool)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.ess_fraction, b.ess_fraction)
    # workers=2 on work far below a pool's start-up starts none, with the same numbers ...
    caplog.set_level("INFO", logger="xspec_sbi")
    c = amortized_posteriors(PriorAsNetwork(), sim, box, x, n_samples=1000, seed=4, workers=2)
    assert "processes" not in caplog.text
    np.testing.assert_array_equal(a.samples, c.samples)
    # ... and where a start-up costs nothing, one of its own, again with the same numbers
    from xspec_sbi.forward import pooled
    monkeypatch.setattr(pooled, "POOL_START_SECONDS", 0.0)
    d = amortized_posteriors(PriorAsNetwork(), sim, box, x, n_samples=1000, seed=4, workers=2)
    assert "on 2 processes" in caplog.text
    np.testing.assert_array_equal(a.samples, d.samples)


class Recording:
    """An executor of 2 threads whose tasks each wait ``delay`` s first; counts what ran."""

    workers = 2

    def __init__(self, delay=0.0):
        import concurrent.futures as cf
        self.delay, self.submitted, self.ran = delay, 0, 0
        self._threads = cf.ThreadPoolExecutor(2)

    def submit(self, fn, *args):
        self.submitted += 1

        def run():
            self.ran += 1
            time.sleep(self.delay)
            return fn(*args)
        return self._threads.submit(run)


def _units(n_units, seconds_per_row):
    def here(u0, u1):
        time.sleep(seconds_per_row * 100 * (u1 - u0))
        return np.arange(100 * u0, 100 * u1, dtype=float)

    def task(u0, u1):
        return (lambda: here(u0, u1)), ()
    return [100] * n_units, here, task


def test_small_work_stays_in_this_process():
    ex = Recording()
    # 200 rows, ~0.2 ms of work: the first unit is timed and the one left stays here unless
    # that sleep of 0.1 ms took over 50 ms (with 9 units left, as once, 5.6 ms on a busy
    # machine sent them to the pool)
    sizes, here, task = _units(2, 1e-6)
    out = evaluate_units(ex, sizes, here, task, RowCost(), "test")
    assert ex.submitted == 0
    np.testing.assert_array_equal(out, np.arange(200.0))


def test_a_pool_measured_slower_is_left_alone():
    sizes, here, task = _units(40, 2e-5)          # 4,000 rows, ~80 ms of work
    # each task (400 rows) waits 0.2 s: ~2.6e-4 s a row on the 2 threads, above the 2e-5 s a row
    # here even when a loaded machine stretches that sleep 10x (at 0.05 s, 8e-5 against 8.2e-5 once)
    ex = Recording(delay=0.2)
    cost = RowCost()
    out = evaluate_units(ex, sizes, here, task, cost, "test")
    np.testing.assert_array_equal(out, np.arange(4000.0))
    assert 0 < ex.ran < ex.submitted              # after the first wave, queued tasks came back
    assert cost.pool_slower
    submitted = ex.submitted
    again = evaluate_units(ex, sizes, here, task, cost, "test")
    assert ex.submitted == submitted              # and the next run stays here
    np.testing.assert_array_equal(again, out)
    fast = Recording()
    evaluate_units(fast, sizes, here, task, RowCost(), "test")
    assert fast.ran > 0                           # the same work does go to a pool that is not slower


class Aborting(Simulator):
    """A simulator whose model kills any process but the one that built it (a model abort)."""

    def expected_source(self, theta):
        if os.getpid() != self.settings_pid:
            os._exit(134)
        return super().expected_source(theta)


def test_a_worker_that_dies_names_the_model_and_does_not_hang(joint_session):
    pn = joint_session.spectra[0].with_background(None)
    base = Simulator.from_spectrum(pn, Model("tbabs*powerlaw"))
    sim = Aborting(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    object.__setattr__(sim, "settings_pid", os.getpid())
    obs = base(_theta(1, 3, groups=1), np.random.default_rng(4))[0]
    with make_pool(base, workers=2) as p:
        t0 = time.perf_counter()
        with pytest.raises(WorkerDied, match="cstat of model tbabs\\*powerlaw"):
            PoissonStatistic(sim, obs, executor=p)(_theta(6000, 5, groups=1))
        assert time.perf_counter() - t0 < 60


class Slow(Simulator):
    """A simulator whose model takes 0.5 ms per row (a slow model, for the interrupt)."""

    def expected_source(self, theta):
        time.sleep(5e-4 * len(np.atleast_2d(theta)))
        return super().expected_source(theta)


_INTERRUPTED_SCRIPT = """
import sys, time
import numpy as np
from test_amortized_statistics import _simulator
from test_pooled_statistic import Slow
from xspec_sbi.forward.objective import PoissonStatistic
from xspec_sbi.forward.simulate import make_pool
import dataclasses
base = _simulator()
sim = Slow(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
theta = np.tile([[1.7, 0.1, 1.0, 10.0]], (400000, 1))   # ~100 s of work
try:
    with make_pool(sim, 2) as pool:
        stat = PoissonStatistic(sim, np.zeros(sim.n_outputs)).using(pool)
        print("evaluating", flush=True)
        stat(theta)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_an_interrupt_stops_the_pooled_statistic_and_its_workers(tmp_path):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from test_interrupts import _alive, _children, interruptible
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=f"{tests.parent}{os.pathsep}{tests}", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=interruptible)
    try:
        assert proc.stdout.readline().strip() == "evaluating"     # the pool has started
        time.sleep(1.5)
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
        os.killpg(proc.pid, signal.SIGINT)        # Ctrl-C: the whole group (workers ignore it)
        # done within 30 s of ~100 s of work, "interrupted" with status 130: the rows left
        # were not evaluated
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "interrupted" in out, (out, err)
        end = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < end:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_sbi_fit_gives_the_same_numbers_with_its_pool_serving_the_statistic(monkeypatch):
    # the fit's simulation pool also evaluates the likelihood check and the moves
    from xspec_sbi.api import sbi_fit
    from xspec_sbi.demo import reference_session
    from xspec_sbi.forward import objective
    from xspec_sbi.inference.config import NPEConfig
    from xspec_sbi.presets.table1 import table1_prior
    pooled_runs = []

    def spy(executor, *args, **kw):
        out = objective_evaluate(executor, *args, **kw)
        pooled_runs.append(executor is not None and args[3].wall is not None)
        return out

    objective_evaluate = objective.evaluate_units
    monkeypatch.setattr(objective, "evaluate_units", spy)
    session = reference_session(2000, seed=5)[0]
    fits = [sbi_fit(session, prior=table1_prior(1), restrict="none", n_simulations=1000,
                    n_samples=4000, chain=False, seed=3, workers=w, refine=False,
                    config=NPEConfig(max_epochs=3, min_epochs=1), progress=False) for w in (1, 2)]
    assert any(pooled_runs)
    np.testing.assert_array_equal(fits[0].samples, fits[1].samples)
    np.testing.assert_array_equal(fits[0].correction.weights, fits[1].correction.weights)


def test_apply_takes_the_number_of_statistic_processes():
    from xspec_sbi.cli.parser import build_parser
    parse = build_parser().parse_args
    assert parse(["apply", "net", "a.pha", "--workers", "1"]).workers == 1
    assert parse(["apply", "net", "a.pha"]).workers is None      # all cores, when worth it


def test_a_pooled_statistic_pickles_without_its_pool(pool):
    import pickle
    sim = pool.simulator
    obs = sim(_theta(1, 0), np.random.default_rng(1))[0]
    stat = PoissonStatistic(sim, obs).using(pool)
    assert stat.executor is pool
    copy = pickle.loads(pickle.dumps(stat))
    assert copy.executor is None
    np.testing.assert_array_equal(copy(_theta(5, 1)), stat(_theta(5, 1)))
