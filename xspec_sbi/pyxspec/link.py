"""The PyXspec side of a session: what the pipeline asks of XSPEC, behind one object.

:func:`xspec_sbi.sbi_fit` attaches an :class:`XspecLink` to a session read
from PyXspec; the pipeline then calls its two methods and never imports
PyXspec itself (the :class:`~xspec_sbi.session.XspecLink` protocol).
"""
from __future__ import annotations

from xspec_sbi.pyxspec.agreement import check_agreement
from xspec_sbi.pyxspec.compare import compare_with_xspec

__all__ = ["XspecLink"]


class XspecLink:
    """The live PyXspec session a :class:`~xspec_sbi.session.Session` was read from.

    Parameters
    ----------
    xspec : module, optional
        The PyXspec module (default: ``import xspec``).
    """

    def __init__(self, xspec=None):
        self.xspec = xspec

    def check_agreement(self, session):
        """Refuse to go on unless the engine folds the model as XSPEC does (see :func:`check_agreement`)."""
        return check_agreement(session, self.xspec)

    def compare(self, **kw):
        """XSPEC's own fit, chain and statistic beside the SBI samples (see :func:`compare_with_xspec`)."""
        return compare_with_xspec(xspec=self.xspec, **kw)

    def __repr__(self) -> str:
        return f"XspecLink({getattr(self.xspec, '__name__', 'xspec')})"
