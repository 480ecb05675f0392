"""Simulations on a Dask cluster equal those of the process pool and of this process, seed for seed."""
from __future__ import annotations

import os

import numpy as np
import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask[distributed] is not installed (pip install 'xspec_sbi[dask]')")


@pytest.fixture(scope="module")
def simulator():
    from xspec_sbi.demo import reference_session
    session, _ = reference_session(counts=2000.0, seed=3)
    return session.simulator()


@pytest.fixture(scope="module")
def theta(simulator):
    rng = np.random.default_rng(7)
    n = 700        # three chunks of 256, the last one short
    return np.column_stack([rng.uniform(0.1, 0.4, n), rng.uniform(1.2, 2.2, n),
                            10 ** rng.uniform(-0.5, 0.5, n)])


def test_dask_cluster_gives_the_process_pool_result(simulator, theta):
    from xspec_sbi.forward.simulate import make_pool, simulate

    # XSPEC's library is not thread-safe: one thread per worker process
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            executor = client.get_executor()
            # as if costly: one seed block per task, none kept here (a run this cheap would
            # otherwise stay in this process; see simulate's Notes)
            executor.seconds_per_spectrum = 1.0
            on_dask = simulate(simulator, theta, seed=123, executor=executor)
        workers = client.run(os.getpid)
    with make_pool(simulator, workers=2) as pool:
        on_pool = simulate(simulator, theta, seed=123, executor=pool)
    here = simulate(simulator, theta, seed=123)

    # every seed block ran on the cluster's worker processes, not here (the spectra do not
    # depend on how the run is cut into tasks)
    n_blocks = -(-theta.shape[0] // 256)
    assert len(stream.data) == n_blocks and {t["worker"] for t in stream.data} <= set(workers)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()
    np.testing.assert_array_equal(on_dask, on_pool)
    np.testing.assert_array_equal(on_dask, here)
    # a different seed gives different spectra, and the mean follows the model
    other = simulate(simulator, theta[:50], seed=124)
    assert not np.array_equal(other, here[:50])
    assert on_dask.shape == (theta.shape[0], simulator.n_outputs)
    ratio = on_dask.sum() / simulator.expected(theta).sum()
    assert abs(ratio - 1) < 5 / np.sqrt(simulator.expected(theta).sum())


def test_cli_executor_option_reaches_the_cluster(simulator, theta):
    from xspec_sbi.cli.executors import executor as cli_executor
    from xspec_sbi.forward.simulate import simulate

    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        with cli_executor(address) as executor:
            got = simulate(simulator, theta[:300], seed=5, executor=executor)
    np.testing.assert_array_equal(got, simulate(simulator, theta[:300], seed=5))
