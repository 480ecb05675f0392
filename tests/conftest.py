"""Shared pytest fixtures."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``<repo>/../shared/data`` (real OGIP data sets); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a clone without ../shared)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Small networks: a second torch thread only adds synchronisation, and on a
    busy 2-core machine it spins and slows training tenfold."""
    try:
        import torch
    except ImportError:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# --- PyXspec (the live suite, tests/test_pyxspec_live*.py) -------------------

# XSPEC writes $HOME/.xspec (Xspec.init, the command history) when PyXspec is imported: two
# pytest-xdist workers of the live suite sharing one HOME would write the same files at once.
# Each worker gets its own, set here because conftest.py is imported before any test module
# (tests/pyxspec_live_support.py imports xspec); the engine run (HEADAS unset) keeps HOME.
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("HEADAS"):
    _home = tempfile.mkdtemp(prefix=f"xspec_sbi_home_{os.environ['PYTEST_XDIST_WORKER']}_")
    os.environ["HOME"] = _home
    atexit.register(shutil.rmtree, _home, ignore_errors=True)

#: Set by tests/run_pyxspec_live.sh when the shared PyXspec is unpacked: a
#: live test that skips there is a failure (it would hide a broken set-up).
REQUIRE_PYXSPEC = os.environ.get("REQUIRE_PYXSPEC") == "1"
PYXSPEC_TREE = Path(__file__).resolve().parent.parent / ".pyxspec" / "heasoft"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_PYXSPEC and report.skipped and item.get_closest_marker("requires_pyxspec"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"REQUIRE_PYXSPEC=1 (the shared PyXspec is unpacked) but this live "
                           f"test skipped: {reason}")


@pytest.fixture(scope="session")
def pyxspec_tree() -> Path:
    """The unpacked HEASoft 6.20 / XSPEC 12.9.1 tree (``.pyxspec/heasoft``); skip when absent."""
    if not (PYXSPEC_TREE / "env.sh").is_file():
        pytest.skip(f"{PYXSPEC_TREE} is not unpacked (make test unpacks ../shared/pyxspec)")
    return PYXSPEC_TREE


@pytest.fixture
def pn(xspec_clean, shared_data, monkeypatch):
    """PyXspec with the XMM-pn spectrum loaded, 0.3-10 keV noticed, in its folder."""
    monkeypatch.chdir(shared_data / "xmm_pn_ngc7793_ulx4")
    xspec_clean.Spectrum("PN.pha").ignore("**-0.3 10.-**")
    return xspec_clean


@pytest.fixture
def workdir(xspec_clean, shared_data, tmp_path, monkeypatch):
    """PyXspec in a folder holding the XMM-pn and Swift XRT data sets (headers name files beside
    the spectra)."""
    for folder in ("xmm_pn_ngc7793_ulx4", "swift_xrt_grb110731a"):
        for f in (shared_data / folder).iterdir():
            (tmp_path / f.name).symlink_to(f)
    monkeypatch.chdir(tmp_path)
    return xspec_clean


@pytest.fixture
def xspec_clean():
    """PyXspec with empty AllData/AllModels, angr, cstat; emptied again afterwards."""
    from pyxspec_live_support import XSPEC, SKIP_REASON  # noqa: PLC0415 - live suite only
    if XSPEC is None:
        pytest.skip(SKIP_REASON)
    xs = XSPEC
    xs.AllChains.clear()
    xs.AllData.clear()
    xs.AllModels.clear()
    xs.Xset.chatter = 0
    xs.Xset.logChatter = 0
    xs.Xset.abund = "angr"
    xs.Fit.statMethod = "cstat"
    xs.Fit.query = "yes"
    yield xs
    xs.AllChains.clear()
    xs.AllData.clear()
    xs.AllModels.clear()
    xs.Xset.abund = "angr"
