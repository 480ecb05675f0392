"""The XSPEC path on many parameter vectors: estimate, progress, XSPEC worker processes.

Run by ``tests/run_pyxspec_live.sh`` (``make test``).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyxspec_live_support import SKIP_REASON
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.pyxspec import xspec_pool

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]


@pytest.fixture
def pn(pn):
    pn.Model("tbabs*powerlaw").setPars(0.17, 2.07, 4.7e-4)
    return pn


def _theta(n):
    rng = np.random.default_rng(2)
    return np.column_stack([rng.uniform(0.05, 0.4, n), rng.uniform(1.5, 2.5, n),
                            10 ** rng.uniform(-4, -3, n)])


def test_worker_processes_fold_as_the_live_session(pn, monkeypatch, capsys):
    monkeypatch.setattr(xspec_pool, "POOL_MIN_SECONDS", 0.0)   # use the pool for a small batch
    monkeypatch.setattr(xspec_pool, "_REPORT_EVERY", 0.0)      # and announce it
    session = px.read_session()
    before = px.snapshot()
    path = px.xspec_path_simulator(session, workers=2)
    theta = _theta(48)
    counts = path.expected_source(theta)
    err = capsys.readouterr().err
    assert "folding 48 parameter vectors" in err and "on 2 XSPEC worker processes" in err
    assert "could not fold" not in err
    engine = session.simulator(use_background=False)
    np.testing.assert_allclose(counts, engine.expected_source(theta), rtol=1e-6)
    assert px.snapshot() == before


def test_in_process_with_one_worker(pn, monkeypatch, capsys):
    monkeypatch.setattr(xspec_pool, "_REPORT_EVERY", 0.0)
    session = px.read_session()
    path = px.xspec_path_simulator(session, workers=1)
    theta = _theta(20)
    counts = path.expected_source(theta)
    assert "in this process" in capsys.readouterr().err
    np.testing.assert_allclose(counts, session.simulator(use_background=False)
                               .expected_source(theta), rtol=1e-6)
