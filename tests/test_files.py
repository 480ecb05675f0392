"""files.py: atomic files and folders (refusals, lock, leftovers, modes) and folder manifests."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from xspec_sbi.files import (MANIFEST_NAME, ManifestError, OutputExistsError, atomic_folder,
                             atomic_write, atomic_write_text, verify_manifest, write_manifest)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _expected_file_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_atomic_write_refuses_existing_and_gives_ordinary_mode(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "one")
    assert p.read_text() == "one"
    assert _mode(p) == _expected_file_mode()      # not mkstemp's 0600
    with pytest.raises(OutputExistsError, match="a.txt.*overwrite"):
        atomic_write_text(p, "two")
    assert p.read_text() == "one"
    atomic_write_text(p, "two", overwrite=True)
    assert p.read_text() == "two"
    assert os.listdir(tmp_path) == ["a.txt"]        # no temporary left


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "b.fits", broken)
    assert os.listdir(tmp_path) == []


def test_atomic_write_does_not_clobber_a_file_that_appears_meanwhile(tmp_path):
    target = tmp_path / "c.txt"

    def racing(tmp):
        tmp.write_text("mine")
        target.write_text("theirs")               # another writer got there first
    with pytest.raises(OutputExistsError, match="appeared"):
        atomic_write(target, racing)
    assert target.read_text() == "theirs"


def test_atomic_folder_all_or_nothing(tmp_path):
    out = tmp_path / "rep"
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(out) as tmp:
            (tmp / "summary.json").write_text("{}")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []              # no target, no partial, no lock
    with atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text("{}")
        assert not out.exists()                   # appears only when complete
    assert os.listdir(out) == ["summary.json"]
    assert _mode(out / "summary.json") == _expected_file_mode()
    assert sorted(os.listdir(tmp_path)) == ["rep"]


def test_atomic_folder_refuses_up_front_and_replaces_as_a_whole(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "mcmc_chain.fits").write_text("stale")
    entered = []
    with pytest.raises(OutputExistsError, match="rep: folder exists.*overwrite"):
        with atomic_folder(out):
            entered.append(True)
    assert not entered                            # refused before the body ran
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "summary.json").write_text("{}")
    assert os.listdir(out) == ["summary.json"]    # the stale chain file is gone


@pytest.mark.parametrize("case", ["file", "under_a_file", "proc"])
def test_atomic_folder_refuses_unwritable_targets_with_a_clean_message(tmp_path, case):
    (tmp_path / "f").write_text("x")
    target = {"file": tmp_path / "f", "under_a_file": tmp_path / "f" / "rep",
              "proc": "/proc/xspec_sbi_test/rep"}[case]
    with pytest.raises(OSError) as exc:
        with atomic_folder(target):
            pytest.fail("body ran")
    assert str(target) in str(exc.value) and "[Errno" not in str(exc.value)


def test_atomic_folder_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(tmp_path):
    out = tmp_path / "rep"
    with atomic_folder(out) as tmp:
        with pytest.raises(OutputExistsError, match=f"another run is writing it now \\(process {os.getpid()}"):
            with atomic_folder(out):
                pass
        (tmp / "a").write_text("1")
    assert os.listdir(out) == ["a"]
    # a lock and a partial folder left by a run killed with SIGKILL (its process is gone)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / ".new.lock").write_text(f"{socket.gethostname()} {dead}")
    (tmp_path / ".new.partial-abc123").mkdir()
    with atomic_folder(tmp_path / "new") as tmp:
        (tmp / "b").write_text("2")
    assert sorted(os.listdir(tmp_path)) == ["new", "rep"]


def test_manifest_names_the_file_that_differs(tmp_path):
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"z_mean": [0.5, 1.0]}))
    (folder / "weights.pt").write_bytes(b"\0" * 1000)
    write_manifest(folder)
    assert verify_manifest(folder) is True
    assert _mode(folder / MANIFEST_NAME) == _expected_file_mode()

    (folder / "config.json").write_text(json.dumps({"z_mean": [0.6, 1.0]}))      # same size
    with pytest.raises(ManifestError, match=r"config.json: content differs"):
        verify_manifest(folder)
    write_manifest(folder)
    with open(folder / "weights.pt", "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(ManifestError, match=r"weights.pt: 10 bytes, 1000 when saved"):
        verify_manifest(folder)
    write_manifest(folder)
    (folder / "extra.npz").write_bytes(b"1")
    with pytest.raises(ManifestError, match=r"extra.npz: not part of the saved folder"):
        verify_manifest(folder)
    (folder / "extra.npz").unlink()
    (folder / "weights.pt").unlink()
    with pytest.raises(ManifestError, match=r"weights.pt: listed .* but missing"):
        verify_manifest(folder)


def test_manifest_missing_or_unreadable(tmp_path):
    assert verify_manifest(tmp_path, required=False) is False
    with pytest.raises(ManifestError, match="manifest.json: not found"):
        verify_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="manifest.json: unreadable"):
        verify_manifest(tmp_path)
