"""Real signals to a real ``xspec-sbi fit`` (issue 15, W4 and U9): no orphan, no partial folder.

Each case starts the command in its own session with two simulation
workers, waits until it trains (the pool is alive then), signals it, and
checks: the exit status (130 for SIGINT, 143 for SIGTERM), one line
"interrupted" and no traceback on stderr, every child process (workers,
multiprocessing's resource tracker) gone within seconds, and nothing left
beside the --out folder. Children are found through /proc (psutil is not a
dependency). Every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ogip_testfiles import write_pha, write_toy_response

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
REPO = Path(__file__).resolve().parent.parent


def _children(pid: int) -> set[int]:
    """Live (not zombie) children of ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def interruptible():
    """``preexec_fn``: SIGINT back to its default in the child.

    A shell without job control starts background commands with SIGINT
    ignored, and the child inherits that; the CLI then keeps it ignored on
    purpose (``nohup``-style runs), so a test started that way would see no
    Ctrl-C. A terminal's Ctrl-C reaches a foreground command with SIGINT at
    its default, which is what these tests stand for.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def spectrum(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sig")
    write_toy_response(folder)
    counts = np.random.default_rng(0).poisson(50, 12)
    return write_pha(folder / "src.pha", counts, exposure=100.0,
                     keywords={"RESPFILE": "toy.rmf", "ANCRFILE": "toy.arf"})


class Run:
    """``python -m xspec_sbi.cli fit`` in its own session, stderr collected by a thread."""

    def __init__(self, spectrum, out: Path):
        argv = [sys.executable, "-m", "xspec_sbi.cli", "fit", str(spectrum), "--model",
                "tbabs*powerlaw", "--freeze", "TBabs.nH=0.5", "--prior", "powerlaw.norm=log:0.1:10",
                "--prior", "powerlaw.PhoIndex=uniform:1:3", "--sims", "20000", "--samples", "200",
                "--no-mcmc", "--restrict", "none", "--workers", "2", "--out", str(out)]
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env, start_new_session=True,
                                     preexec_fn=interruptible)
        self.err: list[str] = []
        self.children: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.children |= _children(self.proc.pid)
            if any(text in ln for ln in self.err):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"exited {self.proc.returncode} before {text!r}: {''.join(self.err)}")
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"no {text!r} within {timeout} s: {''.join(self.err)}")

    def kill(self):
        for pid in self.children | {self.proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def finish(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout} s after the signal: {''.join(self.err)}")

    def survivors(self, timeout: float = 10.0) -> set[int]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            alive = {p for p in self.children if _alive(p)}
            if not alive:
                return set()
            time.sleep(0.2)
        for pid in alive:                 # do not leave them to the next test
            os.kill(pid, signal.SIGKILL)
        return alive


@pytest.mark.parametrize("signum,group,status", [
    (signal.SIGINT, True, 130),        # Ctrl-C: the whole process group gets SIGINT
    (signal.SIGTERM, False, 143),      # kill PID: the main process only
])
def test_signal_stops_the_pool_and_leaves_nothing(spectrum, tmp_path, signum, group, status):
    out = tmp_path / "rep"
    run = Run(spectrum, out)
    run.wait_for("[xspec_sbi] training")
    time.sleep(1.0)
    run.children |= _children(run.proc.pid)
    assert len(run.children) >= 2, run.children       # the two workers (and the tracker)
    if group:
        os.killpg(run.proc.pid, signum)
    else:
        os.kill(run.proc.pid, signum)
    code = run.finish()
    err = "".join(run.err)
    assert code == status, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [ln.strip() for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.startswith("[xspec_sbi]") and "%|" not in ln]
    assert len(lines) == 1 and "interrupted" in lines[0], lines
    assert run.survivors() == set()
    assert os.listdir(tmp_path) == []                   # no report, no partial folder, no lock


def test_workers_exit_when_the_main_process_is_killed(spectrum, tmp_path):
    # SIGKILL cannot be handled: the workers notice their parent is gone and exit, and the
    # next run into the same --out takes over the dead run's lock and removes its partial folder
    out = tmp_path / "rep"
    run = Run(spectrum, out)
    run.wait_for("[xspec_sbi] training")
    run.children |= _children(run.proc.pid)
    assert len(run.children) >= 2, run.children
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    assert run.survivors() == set()
    leftovers = sorted(os.listdir(tmp_path))
    assert leftovers and all(n.startswith(".rep.") for n in leftovers)   # lock + partial
    from xspec_sbi.files import atomic_folder
    with atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == ["rep"]


def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(spectrum, tmp_path):
    # two real processes: the second is refused at once, the first is then stopped cleanly
    out = tmp_path / "rep"
    first = Run(spectrum, out)
    first.wait_for("[xspec_sbi] training")
    second = Run(spectrum, out)
    assert second.finish(timeout=120) == 1
    err = "".join(second.err)
    assert "--out" in err and "another run is writing it now" in err and "training" not in err
    os.kill(first.proc.pid, signal.SIGTERM)
    assert first.finish() == 143
    assert first.survivors() == set() and second.survivors() == set()
    assert os.listdir(tmp_path) == []
