"""Atomic writes: a file or a whole folder is all there, or not at all.

Every file the package writes for the user (reports, chains, networks, set-up
records) goes through here, so that an interrupted or failed run never leaves
a half-written file, and nothing that exists is replaced unless asked.

Files get the ordinary permissions of a new file (``0666`` less the umask,
``0644`` under the usual umask): :func:`tempfile.mkstemp` would otherwise leave
them ``0600``. A folder written with :func:`atomic_folder` can carry a
manifest (:func:`write_manifest`): the SHA-256 digest of every file in it,
checked by :func:`verify_manifest`, which names the file that differs.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["OutputExistsError", "ManifestError", "atomic_write", "atomic_write_bytes",
           "atomic_write_text", "atomic_folder", "check_folder_target", "temporary_sibling", "MANIFEST_NAME",
           "write_manifest", "verify_manifest"]

#: File name of a folder's manifest (see :func:`write_manifest`).
MANIFEST_NAME = "manifest.json"
_MANIFEST_FORMAT = "xspec_sbi.manifest/1"


class OutputExistsError(FileExistsError):
    """The target exists (or another run is writing it) and overwriting was not asked for."""


class ManifestError(ValueError):
    """A folder's files differ from its manifest: edited, truncated, added or removed."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse(path: Path, overwrite: bool, what: str = "file") -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: {what} exists; pass overwrite=True (command line: "
                                f"--overwrite) to replace it, or choose another name")


def _reason(exc: OSError) -> str:
    """``Permission denied`` rather than ``[Errno 13] Permission denied: '/x'``."""
    return exc.strerror or str(exc)


@contextlib.contextmanager
def temporary_sibling(path: str | os.PathLike, *, suffix: str = ""):
    """A temporary file name beside ``path`` (same file system), removed unless renamed.

    Yields
    ------
    Path
        Write there, then ``os.replace`` it onto ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *,
                 overwrite: bool = False) -> Path:
    """Write a file through ``write(tmp)`` on a temporary sibling, then rename it into place.

    Parameters
    ----------
    path : path-like
        The file to write.
    write : callable
        ``write(tmp_path)`` writes the whole file at ``tmp_path`` (a FITS
        ``writeto``, ``numpy.savez``, ``Figure.savefig``...). The suffix of
        ``path`` is kept, so writers that pick a format from it still do.
    overwrite : bool
        Replace an existing file; without it an existing file is refused, also
        one that appears while ``write`` runs (a hard link never clobbers).

    Returns
    -------
    Path

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    _refuse(path, overwrite)
    with temporary_sibling(path, suffix=path.suffix) as tmp:
        write(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path}: file appeared while it was written; pass "
                                        "overwrite=True (command line: --overwrite) to replace it") \
                    from None
            except OSError:       # a file system without hard links: check, then rename
                _refuse(path, overwrite)
                os.replace(tmp, path)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename.

    Parameters
    ----------
    path : path-like
    data : bytes
    overwrite : bool
        Replace an existing file; without it an existing file is refused.

    Returns
    -------
    Path
    """
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


# -- folders ---------------------------------------------------------------------
def _lock_holder(lock: Path) -> tuple[str, int] | None:
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _is_stale(lock: Path) -> bool:
    """A lock left by a run of this machine that no longer exists (killed with SIGKILL, say)."""
    holder = _lock_holder(lock)
    if holder is None or holder[0] != socket.gethostname():
        return False          # unreadable, or another machine's: cannot tell, so respect it
    try:
        os.kill(holder[1], 0)
    except ProcessLookupError:
        return True
    except PermissionError:   # alive, someone else's
        return False
    return False


def _take_lock(path: Path, parent: Path) -> Path:
    lock = parent / f".{path.name}.lock"
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if attempt == 0 and _is_stale(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            holder = _lock_holder(lock)
            who = f" (process {holder[1]} on {holder[0]})" if holder else ""
            raise OutputExistsError(f"{path}: another run is writing it now{who}, lock {lock}; "
                                    "wait for it, choose another name, or remove the lock if "
                                    "no such run exists") from None
        except OSError as exc:
            raise PermissionError(f"{path}: cannot write into {parent} ({_reason(exc)})") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{socket.gethostname()} {os.getpid()}")
        return lock
    raise AssertionError("unreachable")


def _remove_leftovers(path: Path, parent: Path) -> None:
    """Partial folders of earlier writers of ``path`` killed before they could clean up.

    Only called while holding the lock of ``path``: no live writer owns them.
    """
    for pattern in (f".{path.name}.partial-*", f".{path.name}.old-*"):
        for p in parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def check_folder_target(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse, touching nothing, a folder target :func:`atomic_folder` would refuse.

    For a check before long work (training a network that is then saved):
    the target exists (unless ``overwrite``), is a file, or a file stands where
    a parent folder should be.

    Raises
    ------
    OutputExistsError, NotADirectoryError
        As :func:`atomic_folder`.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: exists and is a file, not a folder; choose another name")
    _refuse(path, overwrite, "folder")
    parent = path.parent if str(path.parent) else Path(".")
    blocking = next((a for a in [parent, *parent.parents] if a.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise NotADirectoryError(f"{path}: {blocking} is a file, not a folder; choose another name")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False):
    """Build a folder in a temporary sibling and rename it into place when complete.

    Everything that can be refused is refused on entry, before the caller
    does any work: the target exists (unless ``overwrite``), is a file, or its
    parent cannot be created or written; or another writer holds its lock.
    The lock (``.NAME.lock`` beside the target, holding host and process id)
    is held until the folder is in place; a lock whose process is gone is
    taken over. On any error or interrupt the temporary folder is removed and
    the target is untouched; an overwritten folder is replaced as a whole, so
    no stale file of an earlier run stays beside the new ones.

    Parameters
    ----------
    path : path-like
        The folder to write.
    overwrite : bool
        Replace an existing folder.

    Yields
    ------
    Path
        The temporary folder to write into (``.NAME.partial-XXXX`` beside the target).

    Raises
    ------
    OutputExistsError
        The target exists and ``overwrite`` is False, or another run writes it.
    NotADirectoryError
        The target exists and is a file.
    PermissionError
        The parent folder cannot be created or written.
    """
    path = Path(path)
    check_folder_target(path, overwrite=overwrite)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"{path}: cannot create its parent folder {parent} "
                              f"({_reason(exc)})") from None
    if not parent.is_dir():
        raise PermissionError(f"{path}: its parent {parent} is not a folder")
    lock = _take_lock(path, parent)
    try:
        _remove_leftovers(path, parent)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=parent))
        except OSError as exc:
            raise PermissionError(f"{path}: cannot write into {parent} ({_reason(exc)})") from None
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
            if path.exists():
                _refuse(path, overwrite, "folder")   # appeared while we worked
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


# -- manifests --------------------------------------------------------------------
def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder).as_posix()) for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST_NAME)


def write_manifest(folder: str | os.PathLike) -> Path:
    """Record the SHA-256 digest and size of every file of ``folder`` in ``manifest.json``.

    Call it last, when the folder is complete (inside :func:`atomic_folder`);
    a file written afterwards is reported by :func:`verify_manifest` as added.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    Path
        The manifest file.
    """
    folder = Path(folder)
    record = {"format": _MANIFEST_FORMAT,
              "files": {name: {"sha256": _digest(folder / name), "bytes": (folder / name).stat().st_size}
                        for name in _files(folder)}}
    return atomic_write_text(folder / MANIFEST_NAME, json.dumps(record, indent=1) + "\n",
                             overwrite=True)


def verify_manifest(folder: str | os.PathLike, *, required: bool = True) -> bool:
    """Check every file of ``folder`` against its manifest.

    Parameters
    ----------
    folder : path-like
    required : bool
        Refuse a folder without a manifest; otherwise return False for one.

    Returns
    -------
    bool
        True when a manifest was found and every file matches it.

    Raises
    ------
    ManifestError
        The manifest is missing (``required``) or unreadable, or a file was
        changed, truncated, removed or added since it was written; the message
        names the file.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        if required:
            raise ManifestError(f"{manifest}: not found; the folder's files cannot be checked "
                                "(written by an older version, or not by xspec_sbi)")
        return False
    try:
        record = json.loads(manifest.read_text())
        listed = record["files"]
        if record.get("format") != _MANIFEST_FORMAT or not isinstance(listed, dict):
            raise ValueError(f"format {record.get('format')!r}")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ManifestError(f"{manifest}: unreadable ({exc}); the folder cannot be checked") from None
    for name, entry in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{path}: listed in {MANIFEST_NAME} but missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ManifestError(f"{path}: {size} bytes, {entry.get('bytes')} when saved "
                                "(truncated or edited); save the folder again")
        if _digest(path) != entry.get("sha256"):
            raise ManifestError(f"{path}: content differs from when it was saved (edited); "
                                "save the folder again")
    extra = sorted(set(_files(folder)) - set(listed))
    if extra:
        raise ManifestError(f"{folder / extra[0]}: not part of the saved folder "
                            f"({MANIFEST_NAME} does not list it); remove it or save again")
    return True
