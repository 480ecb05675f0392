"""fakeit: Poisson moments, background semantics, seeds, process pools, XSPEC settings."""
import concurrent.futures as cf

import time

import numpy as np
import pytest

from xspec_sbi.forward import stats
from xspec_sbi.model import library as xslibrary
from xspec_sbi.forward.objective import PoissonStatistic
from xspec_sbi.presets.nicer import builtin_nicer_response, reference_spectrum
from xspec_sbi.forward.simulate import JointSimulator, Simulator, _compact, make_pool, simulate
from xspec_sbi.data.spectrum import Spectrum, load_spectrum
from xspec_sbi.model.expression import Model

THETA = np.array([[0.2, 1.7, 1.0], [0.3, 2.2, 0.2]])


@pytest.fixture(scope="module")
def reference():
    return reference_spectrum(2000, response=builtin_nicer_response())


@pytest.fixture(scope="module")
def simulator(reference):
    return Simulator.from_spectrum(reference, Model("tbabs*powerlaw"))


def test_reference_exposure_gives_the_requested_counts(reference, simulator):
    assert simulator.expected([[0.2, 1.7, 1.0]]).sum() == pytest.approx(2000, rel=1e-9)
    assert 180 <= reference.n_bins <= 210    # ~200 bins of 5 channels over 0.3-10 keV


def test_fakeit_moments(simulator):
    n = 4000
    theta = np.repeat(THETA[:1], n, axis=0)
    x = simulate(simulator, theta, seed=11)
    mu = simulator.expected(THETA[:1])[0]
    # mean: within 5 standard errors in every bin; variance equals the mean (Poisson)
    assert np.all(np.abs(x.mean(0) - mu) <= 5 * np.sqrt(mu / n) + 1e-12)
    big = mu > 20
    ratio = x.var(0, ddof=1)[big] / mu[big]
    assert abs(ratio.mean() - 1) < 0.02
    assert np.all(x == np.round(x)) and x.min() >= 0


def test_same_seed_same_spectra_any_executor(simulator):
    rng = np.random.default_rng(4)
    theta = np.column_stack([rng.uniform(0.1, 0.3, 700), rng.uniform(0.5, 2.5, 700),
                             10 ** rng.uniform(-1, 1, 700)])
    serial = simulate(simulator, theta, seed=123, chunk_size=128)
    assert np.array_equal(serial, simulate(simulator, theta, seed=123, chunk_size=128))
    assert not np.array_equal(serial, simulate(simulator, theta, seed=124, chunk_size=128))
    with make_pool(simulator, workers=2) as pool:
        pool.seconds_per_spectrum = 1.0      # as if costly: one seed block per task, all in workers
        pooled = simulate(simulator, theta, seed=123, executor=pool, chunk_size=128)
        # the workers' measured cost replaced part of the pretended one
        assert 0 < pool.seconds_per_spectrum < 1.0
    assert np.array_equal(serial, pooled)
    with cf.ProcessPoolExecutor(max_workers=1) as plain:   # simulator shipped with each chunk
        shipped = simulate(simulator, theta[:300], seed=123, executor=plain, chunk_size=128)
    assert np.array_equal(serial[:300], shipped)


class _InlineExecutor(cf.Executor):
    """Runs each task at once in this process and counts the tasks; its cost per spectrum is given."""

    def __init__(self, seconds_per_spectrum, workers=2):
        self.seconds_per_spectrum = seconds_per_spectrum
        self.workers = workers
        self.tasks = []

    def submit(self, fn, *args):
        fut = cf.Future()
        fut.set_result(fn(*args))
        self.tasks.append(args[1].shape[0])     # spectra in the task
        return fut


def test_task_size_never_changes_the_spectra(simulator):
    rng = np.random.default_rng(8)
    n, block = 5000, 100                         # 50 seed blocks
    theta = np.column_stack([rng.uniform(0.1, 0.3, n), rng.uniform(0.5, 2.5, n),
                             10 ** rng.uniform(-1, 1, n)])
    serial = simulate(simulator, theta, seed=9, chunk_size=block)
    # cheap: the whole run stays here, no task at all
    cheap = _InlineExecutor(1e-9)
    assert np.array_equal(simulate(simulator, theta, seed=9, executor=cheap, chunk_size=block), serial)
    assert cheap.tasks == []
    # costly: one seed block per task
    costly = _InlineExecutor(1.0)
    assert np.array_equal(simulate(simulator, theta, seed=9, executor=costly, chunk_size=block), serial)
    assert costly.tasks == [block] * 50
    # in between: TASK_SECONDS / (2e-5 s x 100) = 50 blocks, capped at a quarter of each
    # worker's share (50 // (4 x 2) = 6 blocks)
    mid = _InlineExecutor(2e-5)
    assert np.array_equal(simulate(simulator, theta, seed=9, executor=mid, chunk_size=block), serial)
    assert mid.tasks == [600] * 8 + [200]
    # no cost given (a plain executor): measured on the first block, run here
    plain = _InlineExecutor(None)
    got = simulate(simulator, theta, seed=9, executor=plain, chunk_size=block)
    assert np.array_equal(got, serial) and sum(plain.tasks) in (0, n - block)


class _SlowPool(cf.Executor):
    """A pool on a busy machine: its first wave runs slower than this process, the rest waits.

    Queued tasks stay pending; the guard must take them back (a timer cancels them after
    20 s so that a failure shows as wrong spectra rather than a hang).
    """

    def __init__(self, workers=2, delay=0.5):
        self.seconds_per_spectrum = None
        self.here_seconds_per_spectrum = None
        self.wall_seconds_per_spectrum = None
        self.workers, self.delay, self.ran = workers, delay, []

    def submit(self, fn, *args):
        import threading
        fut = cf.Future()
        if len(self.ran) < self.workers:
            time.sleep(self.delay)
            fut.set_result(fn(*args))
            self.ran.append(args[1].shape[0])
        else:
            threading.Timer(20.0, lambda: fut.cancel() and fut.set_running_or_notify_cancel()).start()
        return fut


def test_a_pool_slower_than_this_process_gives_its_work_back(simulator):
    rng = np.random.default_rng(3)
    n, block = 6000, 100
    theta = np.column_stack([rng.uniform(0.1, 0.3, n), rng.uniform(0.5, 2.5, n),
                             10 ** rng.uniform(-1, 1, n)])
    serial = simulate(simulator, theta, seed=4, chunk_size=block)
    pool = _SlowPool()
    got = simulate(simulator, theta, seed=4, executor=pool, chunk_size=block)
    assert np.array_equal(got, serial)                 # taken-back blocks keep their seeds
    assert len(pool.ran) == pool.workers and sum(pool.ran) < n - block
    assert pool.wall_seconds_per_spectrum > pool.here_seconds_per_spectrum
    # the next run knows the pool is slower here and does not use it
    pool.ran = [None] * pool.workers                   # any further task would hang pending
    again = simulate(simulator, theta, seed=4, executor=pool, chunk_size=block)
    assert np.array_equal(again, serial) and pool.ran == [None] * pool.workers


def test_counts_travel_as_compact_integers_without_loss():
    small = np.array([[0.0, 3.0, 65535.0]])
    big = np.array([[0.0, 70000.0]])
    frac = np.array([[0.5, 2.0]])
    assert _compact(small).dtype == np.uint16 and np.array_equal(_compact(small), small)
    assert _compact(big).dtype == np.uint32 and np.array_equal(_compact(big), big)
    assert _compact(frac).dtype == np.float64 and np.array_equal(_compact(frac), frac)
    assert _compact(-small).dtype == np.float64


def test_threads_are_refused(simulator):
    with cf.ThreadPoolExecutor(2) as ex, pytest.raises(ValueError, match="thread"):
        simulate(simulator, THETA, seed=1, executor=ex)


def test_abundances_reach_worker_processes(reference):
    model = Model("tbabs*powerlaw")
    before = xslibrary.current_settings()
    try:
        sims = {}
        for table in ("angr", "wilm"):
            xslibrary.configure(xslibrary.XspecSettings(table, "vern"))
            sims[table] = Simulator.from_spectrum(reference, model)
        xslibrary.configure(before)
        theta = np.repeat([[3.0, 1.7, 1.0]], 64, axis=0)   # strong absorption shows the tables
        means = {}
        for table, sim in sims.items():
            assert sim.settings.abund == table
            with make_pool(sim, workers=2) as pool:
                means[table] = simulate(sim, theta, seed=5, executor=pool).mean(0)
            # a pooled run follows the simulator's own table, not the parent's
            xslibrary.configure(xslibrary.XspecSettings(table, "vern"))
            expected = sim.expected(theta[:1])[0]
            xslibrary.configure(before)
            assert np.all(np.abs(means[table] - expected) <= 6 * np.sqrt(expected / 64) + 1e-9)
        assert means["wilm"].sum() > 1.05 * means["angr"].sum()   # wilm absorbs less
    finally:
        xslibrary.configure(before)


def test_background_semantics(shared_data):
    spec = load_spectrum(shared_data / "xmm_pn_ngc7793_ulx4/PN.pha").ignore("**-0.5 8.-**")
    model = Model("tbabs*powerlaw")
    sim = Simulator.from_spectrum(spec, model)
    assert sim.has_background and sim.n_outputs == 2 * spec.n_bins
    theta = np.repeat([[0.1, 2.0, 1e-4]], 3000, axis=0)
    x = simulate(sim, theta, seed=2)
    src, bkg = x[:, :sim.n_bins], x[:, sim.n_bins:]
    b_obs = spec.binned_background_counts()
    scale = spec.background_scale()
    mu_src = sim.expected_source(theta[:1])[0] + scale * b_obs
    tol = lambda m: 5 * np.sqrt(m / 3000) + 1e-9
    assert np.all(np.abs(src.mean(0) - mu_src) <= tol(mu_src))
    assert np.all(np.abs(bkg.mean(0) - b_obs) <= tol(b_obs))
    # without the background the source mean is the folded model alone
    bare = Simulator.from_spectrum(spec, model, use_background=False)
    assert bare.n_outputs == spec.n_bins
    np.testing.assert_allclose(bare.expected(theta[:1]), sim.expected_source(theta[:1]))


def test_joint_simulator_and_statistic(shared_data, reference):
    model = Model("tbabs*powerlaw")
    a = Simulator.from_spectrum(reference, model)
    b = Simulator.from_spectrum(reference_spectrum(20000, response=builtin_nicer_response()), model)
    joint = JointSimulator((a, b))
    x = joint(THETA, np.random.default_rng(0))
    assert x.shape == (2, a.n_outputs + b.n_outputs)
    obs = x[0]
    stat = PoissonStatistic(joint, obs)
    xa, xb = joint.split(obs)
    want = (stats.cstat(xa, a.expected(THETA)) + stats.cstat(xb, b.expected(THETA)))
    np.testing.assert_allclose(stat(THETA), want, rtol=1e-12)
    assert stat(THETA)[0] < stat(THETA)[1]     # data drawn at the first parameters fit them better
    with pytest.raises(ValueError, match="shape"):
        PoissonStatistic(joint, obs[:-1])


def test_wstat_objective_with_background(shared_data):
    spec = load_spectrum(shared_data / "swift_xrt_grb110731a/grb110731a_src.pha").ignore("bad")
    sim = Simulator.from_spectrum(spec, Model("tbabs*powerlaw"))
    obs = np.concatenate([spec.binned_counts(), spec.binned_background_counts()])
    stat = PoissonStatistic(sim, obs)
    assert stat.name == "wstat"
    theta = [[0.3, 1.8, 1.0]]
    want = stats.wstat(spec.binned_counts(), spec.binned_background_counts(),
                       sim.expected_source(theta), 1.0, 1.0 / spec.background_scale())
    np.testing.assert_allclose(stat(theta), want)


def test_statistic_of_rows_matches_one_statistic_per_row(shared_data):
    # the vectorised form used by the posterior predictive check, against one objective per row
    spec = load_spectrum(shared_data / "swift_xrt_grb110731a/grb110731a_src.pha").ignore("bad")
    sim = Simulator.from_spectrum(spec, Model("tbabs*powerlaw"))
    theta = np.array([[0.3, 1.8, 1.0], [0.5, 2.2, 0.5], [0.1, 1.5, 2.0]])
    x = sim(theta, np.random.default_rng(4))
    want = [PoissonStatistic(sim, xi)(ti[None])[0] for xi, ti in zip(x, theta)]
    np.testing.assert_allclose(PoissonStatistic.of_rows(sim, x, theta), want, rtol=1e-12)
    no_bkg = Simulator.from_spectrum(spec.with_background(None), Model("tbabs*powerlaw"))
    xs = no_bkg(theta, np.random.default_rng(5))
    want = [PoissonStatistic(no_bkg, xi)(ti[None])[0] for xi, ti in zip(xs, theta)]
    np.testing.assert_allclose(PoissonStatistic.of_rows(no_bkg, xs, theta), want, rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        PoissonStatistic.of_rows(sim, x[:2], theta)


def test_fakeit_spectrum_channels_sum_to_the_binned_expectation(reference):
    model = Model("tbabs*powerlaw")
    from xspec_sbi.forward.simulate import fakeit_spectrum
    rng = np.random.default_rng(8)
    theta = [0.2, 1.7, 1.0]
    draws = np.array([fakeit_spectrum(reference, model, theta, rng).binned_counts() for _ in range(400)])
    mu = Simulator.from_spectrum(reference, model).expected([theta])[0]
    assert np.all(np.abs(draws.mean(0) - mu) <= 5 * np.sqrt(mu / 400) + 1e-9)
    fake = fakeit_spectrum(reference, model, theta, rng, exposure=2 * reference.exposure)
    assert fake.exposure == 2 * reference.exposure and fake.path is None


def test_pool_in_a_script_without_main_guard_runs_the_script_once(tmp_path):
    # PyXspec scripts rarely have `if __name__ == "__main__"`: spawned workers
    # must not run them again.
    import subprocess
    import sys
    script = tmp_path / "user_script.py"
    script.write_text(
        "import numpy as np\n"
        "print('TOP-LEVEL', flush=True)\n"
        "from xspec_sbi.presets.nicer import reference_spectrum, builtin_nicer_response\n"
        "from xspec_sbi.forward.simulate import Simulator, make_pool, simulate\n"
        "from xspec_sbi.model.expression import Model\n"
        "sim = Simulator.from_spectrum(reference_spectrum(2000, response=builtin_nicer_response()),"
        " Model('tbabs*powerlaw'))\n"
        "with make_pool(sim, 2) as pool:\n"
        "    x = simulate(sim, np.repeat([[0.2, 1.7, 1.0]], 600, 0), seed=1, executor=pool)\n"
        "print('TOTAL', int(x.sum()))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("TOP-LEVEL") == 1
    assert "TOTAL" in out.stdout
