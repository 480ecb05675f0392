"""Atomic writes: a file or a whole folder is all there, or not at all.

Every file the package writes for the user (reports, chains, networks, set-up
records) goes through here, so that an interrupted or failed run never leaves
a half-written file, and nothing that exists is replaced unless asked.

Files get the ordinary permissions of a new file (``0666`` less the umask):
:func:`tempfile.mkstemp` would otherwise leave them ``0600``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputExistsError", "atomic_write_bytes", "atomic_write_text", "atomic_folder",
           "temporary_sibling"]


class OutputExistsError(FileExistsError):
    """The target exists and overwriting was not asked for."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse(path: Path, overwrite: bool, what: str = "file") -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: {what} exists; pass overwrite=True (command line: "
                                f"--overwrite) to replace it")


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
    path = Path(path)
    _refuse(path, overwrite)
    with temporary_sibling(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = False):
    """Build a folder in a temporary sibling and rename it into place when complete.

    The target is refused up front when it exists (unless ``overwrite``) or
    when its parent cannot be written. A second writer of the same target at
    the same time is refused (a lock file beside it). On any error or
    interrupt the temporary folder is removed and the target is untouched; an
    overwritten folder is replaced as a whole, so no stale file of an earlier
    run stays beside the new ones.

    Yields
    ------
    Path
        The temporary folder to write into.
    """
    path = Path(path)
    _refuse(path, overwrite, "folder")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: exists and is not a folder")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{path}: cannot create its parent folder {parent} ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{path}: its folder {parent} is not writable")
    lock = parent / f".{path.name}.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise OutputExistsError(f"{path}: another run is writing it now (lock {lock}); if no run "
                                "is, remove the lock file") from None
    except OSError as exc:
        raise OSError(f"{path}: cannot write into {parent} ({exc.strerror or exc})") from None
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
            if path.exists():
                _refuse(path, overwrite, "folder")   # appeared while we worked
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
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
