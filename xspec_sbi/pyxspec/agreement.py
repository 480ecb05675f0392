"""Check that the embedded engine folds the model as XSPEC does, bin by bin.

``Model.folded(n)`` [PyXspec Model page] returns the model folded through
spectrum ``n``'s response for its noticed channels (grouped bins), a rate:
counts s^-1 per bin, before exposure and AREASCAL. XSPEC's statistics use
``folded * exposure * AREASCAL`` as the expected counts (C-stat's
``t_s = exposure * areaScale`` in XSPEC's ``Cstat``), and so does this check.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import xslibrary
from ..folding import Folder
from ..xsmodels import Model
from ._access import PyXspecError, xspec_module
from .reader import XspecModel, read_parameters, read_spectra_records

__all__ = ["AgreementError", "Agreement", "check_agreement", "xspec_expected_counts"]


class AgreementError(AssertionError):
    """The engine's folded model differs from XSPEC's beyond the tolerance."""


@dataclass(frozen=True)
class Agreement:
    """Largest relative difference per spectrum, engine vs XSPEC (both in counts)."""

    max_relative: tuple
    n_bins: tuple


def xspec_expected_counts(xs, number: int, group: int, areascal: np.ndarray) -> np.ndarray:
    """XSPEC's expected source counts in the noticed bins of spectrum ``number``."""
    folded = np.asarray(xs.AllModels(group).folded(number), dtype=np.float64)
    return folded * float(xs.AllData(number).exposure) * areascal


def _current_model(model: Model, xs) -> Model:
    """The session's model with XSPEC's current parameter values."""
    now = read_parameters(xs.AllModels(1), 1)
    if [p.name.lower() for p in now] != [p.name.lower() for p in model.parameters]:
        raise PyXspecError("the XSPEC model changed since the session was read: "
                           f"{xs.AllModels(1).expression!r} vs {model.expression!r}")
    params = [replace(p, value=q.value) for p, q in zip(model.parameters, now)]
    return Model(model.expression, params)


def check_agreement(session, xspec=None, rtol: float = 1e-6) -> Agreement:
    """Compare the engine's expected counts with XSPEC's, for the current parameters.

    Parameters
    ----------
    session : Session
        From :func:`~xspec_sbi.pyxspec.read_session` on the same PyXspec session.
    xspec : module, optional
    rtol : float
        Relative tolerance per bin; bins below ``rtol * max`` of XSPEC's counts
        are compared with that absolute floor instead.

    Returns
    -------
    Agreement

    Raises
    ------
    AgreementError
        Naming the spectrum and the first bins that differ, with both values.
    """
    xs = xspec_module(xspec)
    if isinstance(session.model, XspecModel):
        raise PyXspecError(f"model {session.model.expression!r} is evaluated by XSPEC only; "
                           "there is no engine result to compare")
    records = read_spectra_records(xs)
    if len(records) != len(session.spectra):
        raise AgreementError(f"XSPEC has {len(records)} spectra, the session "
                             f"{len(session.spectra)}")
    xslibrary.configure(session.settings)
    model = _current_model(session.model, xs)
    theta = model.free_values()[None, :]
    worst, sizes = [], []
    for record, spectrum in zip(records, session.spectra):
        engine = Folder(spectrum, model).expected_counts(theta)[0]
        ours = xspec_expected_counts(xs, record.number, record.group,
                                     spectrum.binned_areascal())
        label = f"spectrum {record.number} ({record.file_name})"
        if ours.shape != engine.shape:
            raise AgreementError(f"{label}: XSPEC folds {ours.size} noticed bins, the engine "
                                 f"{engine.size}: notice states or grouping differ")
        floor = rtol * max(float(np.max(np.abs(ours))), 1e-300)
        diff = np.abs(engine - ours)
        bad = np.flatnonzero(diff > rtol * np.maximum(np.abs(engine), np.abs(ours)) + floor)
        if bad.size:
            lo, hi = spectrum.bin_energies()
            rows = "; ".join(
                f"bin {b} ({lo[b]:.4g}-{hi[b]:.4g} keV): engine {engine[b]:.10g}, "
                f"XSPEC {ours[b]:.10g}" for b in bad[:5])
            raise AgreementError(f"{label}: {bad.size} of {ours.size} bins differ beyond "
                                 f"rtol={rtol:g} (counts = folded x exposure x AREASCAL). "
                                 f"First: {rows}")
        scale = np.maximum(np.abs(ours), floor)
        worst.append(float(np.max(diff / scale)) if diff.size else 0.0)
        sizes.append(int(ours.size))
    return Agreement(tuple(worst), tuple(sizes))
