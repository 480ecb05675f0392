"""Output folders of the commands: taken before any work, all there or not at all.

:func:`output_folder` enters :func:`xspec_sbi.files.atomic_folder` for an
``--out`` or ``--save-network`` folder: refused at once when it exists
(without ``--overwrite``), is a file, cannot be written, or another run is
writing it; the command then writes into the temporary folder it yields,
and the folder appears under its name only when the command succeeds.
:func:`check_network` checks a saved network's files against its manifest.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from xspec_sbi.cli.errors import CommandError, UsageError
from xspec_sbi.files import ManifestError, atomic_folder, verify_manifest

__all__ = ["output_folder", "refuse_existing", "check_network", "distinct_folders"]

log = logging.getLogger("xspec_sbi")


@contextlib.contextmanager
def output_folder(path, option: str, overwrite: bool):
    """Take the folder named by ``option`` (``--out``, ``--save-network``); yields the one to fill.

    Raises
    ------
    CommandError
        Naming the option and the folder: exists (and what it holds), is a
        file, cannot be written, or is being written by another run.
    """
    path = Path(path)
    refuse_existing(path, option, overwrite)
    stack = contextlib.ExitStack()
    try:
        tmp = stack.enter_context(atomic_folder(path, overwrite=overwrite))
    except OSError as exc:
        raise CommandError(f"{option} {exc}") from None
    with stack:
        yield tmp


def refuse_existing(path, option: str, overwrite: bool) -> None:
    """The first check of :func:`output_folder`, without touching anything (for use before work).

    Raises
    ------
    CommandError
        ``path`` is a file, or an existing folder and not ``overwrite`` (its content named).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path}: exists and is a file, not a folder; choose another "
                           "name")
    if path.is_dir() and not overwrite:
        held = sorted(p.name for p in path.iterdir())
        shown = ", ".join(held[:12]) + (", ..." if len(held) > 12 else "")
        raise CommandError(f"{option} {path}: folder exists" + (f" (holds {shown})" if held else "")
                           + "; pass --overwrite to replace it as a whole, or choose another folder")


def check_network(folder, option: str | None = None) -> None:
    """Refuse a saved network whose files differ from its manifest (the file named).

    ``option`` (``--network``) prefixes the message when the folder came from one.
    """
    try:
        if not verify_manifest(folder, required=False):
            log.warning("%s: no manifest.json (saved by an older version): its files cannot be "
                        "checked; save it again to have them checked", folder)
    except ManifestError as exc:
        raise CommandError(f"{option} {exc}" if option else str(exc)) from None


def distinct_folders(*named) -> None:
    """Refuse two output folders (``(option, path)`` pairs) that coincide or nest."""
    items = [(opt, Path(os.path.abspath(p))) for opt, p in named if p]
    for i, (a, pa) in enumerate(items):
        for b, pb in items[i + 1:]:
            if pa == pb or pa in pb.parents or pb in pa.parents:
                raise UsageError(f"{a} {pa} and {b} {pb} overlap: give them separate folders")
