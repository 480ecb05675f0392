"""The PyXspec plugin: the only code of xspec_sbi that talks to PyXspec.

Read a live session into a plain :class:`~xspec_sbi.session.Session`
(:func:`read_session`), check the engine folds as XSPEC does
(:func:`check_agreement`), compare with XSPEC's own fit, chain and statistic,
simulate through XSPEC when the engine cannot evaluate a model, and hand SBI
samples back to XSPEC as a chain (:func:`compare_with_xspec`, called at the
end of :func:`xspec_sbi.sbi_fit` for a PyXspec session). Every function takes an optional ``xspec``
module (default ``import xspec``) and leaves the user's session as it was.
See ``docs/PYXSPEC.md`` for the PyXspec calls used.
"""
from xspec_sbi.pyxspec._access import (JointGroupsError, PyXspecError, PyXspecUnavailableError, available,
                      xspec_module)
from xspec_sbi.pyxspec.agreement import Agreement, AgreementError, check_agreement
from xspec_sbi.pyxspec.compare import XspecComparison, compare_with_xspec
from xspec_sbi.pyxspec.fluxes import xspec_fluxes
from xspec_sbi.pyxspec.native import (export_samples, free_parameters, load_chain, xspec_chain, xspec_fit,
                     xspec_statistic, xspec_statistics)
from xspec_sbi.pyxspec.live import read_session
from xspec_sbi.pyxspec.reader import XspecModel
from xspec_sbi.pyxspec.state import XspecState, preserved_state, snapshot
from xspec_sbi.pyxspec.xspec_path import (XspecPathFactory, XspecPathSimulator, choose_simulator,
                         xspec_path_simulator)

__all__ = [
    "available", "xspec_module", "read_session", "check_agreement", "Agreement",
    "AgreementError", "PyXspecError", "PyXspecUnavailableError", "JointGroupsError",
    "XspecModel", "preserved_state", "snapshot", "XspecState", "xspec_fit", "xspec_chain",
    "xspec_statistic", "xspec_statistics", "free_parameters", "load_chain", "export_samples",
    "XspecPathSimulator", "XspecPathFactory", "xspec_path_simulator", "choose_simulator",
    "compare_with_xspec", "XspecComparison", "xspec_fluxes",
]
