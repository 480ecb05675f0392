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


def check_statistic(session, theta, rel=1e-6):
    """XSPEC's ``Fit.statistic`` at ``theta`` equals the session's own statistic; returns ours."""
    import numpy as np
    import pytest
    from xspec_sbi import pyxspec as px
    ours = float(session.statistic_function()(np.atleast_2d(theta))[0])
    assert px.xspec_statistic(theta) == pytest.approx(ours, rel=rel)
    return ours
