"""Copies of a HEASoft tree with a part missing, and a child process that loads the library.

The copies are folders of symbolic links (the trees are tens of MB), the
library under test is loaded in a child process (a process loads it once).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOAD_CODE = r"""
import json
import numpy as np
from xspec_sbi.model import library as L
try:
    lib = L.library()
except L.XspecLibraryError as exc:
    print("RESULT " + json.dumps({"refused": str(exc)}))
else:
    edges = np.geomspace(0.3, 10.0, 41)
    print("RESULT " + json.dumps({"origin": lib.source.origin, "headas": str(lib.headas),
          "tbabs": L.call_model("C_tbabs", edges, np.array([0.5])).tolist(),
          "phabs": L.call_model("xsphab", edges, np.array([0.5])).tolist()}))
"""


def linked_copy(headas: Path, dest: Path, leave_out: tuple = ()) -> Path:
    """``dest``: a HEADAS whose ``lib/`` links every file of ``headas/lib`` but ``leave_out``.

    ``spectral/`` is linked where XSPEC looks for it (inside HEADAS for the
    wheel's tree, beside it for a HEASoft installation).
    """
    target = dest / headas.name
    (target / "lib").mkdir(parents=True)
    for item in (headas / "lib").iterdir():
        if item.name not in leave_out:
            (target / "lib" / item.name).symlink_to(item)
    for where in (headas, headas.parent):
        if (where / "spectral").is_dir():
            (dest if where == headas.parent else target).joinpath("spectral").symlink_to(
                where / "spectral")
    return target


def load_in_child(headas: Path | None, choice: str | None, ld_library_path=None) -> dict:
    """Load the library in a child process with ``HEADAS`` and ``XSPEC_SBI_LIBRARY`` given.

    ``ld_library_path``: the child's ``LD_LIBRARY_PATH`` (default: this process's).
    """
    env = dict(os.environ)
    if ld_library_path is not None:
        env["LD_LIBRARY_PATH"] = ld_library_path
    for key, value in (("HEADAS", headas), ("XSPEC_SBI_LIBRARY", choice)):
        env.pop(key, None)
        if value is not None:
            env[key] = str(value)
    out = subprocess.run([sys.executable, "-c", LOAD_CODE], env=env, capture_output=True,
                         text=True, timeout=300, stdin=subprocess.DEVNULL)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"child exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return json.loads(lines[-1][len("RESULT "):])
