"""``import xspec`` for the live suite, guarded: it kills the process when HEADAS is unset.

``XSPEC`` is the PyXspec module or None; ``SKIP_REASON`` says why it is None.
"""
from __future__ import annotations

import os

XSPEC = None
SKIP_REASON = ""
if not os.environ.get("HEADAS"):
    SKIP_REASON = ("PyXspec not set up here (HEADAS unset; make test runs the live suite with "
                   "../shared/pyxspec's XSPEC 12.9.1 when it exists)")
else:
    try:
        import xspec as XSPEC  # noqa: N812
    except Exception as exc:  # PyXspec raises more than ImportError without HEASoft
        XSPEC = None
        SKIP_REASON = f"PyXspec not importable here: {exc!r}"
