"""Check that the embedded engine folds the model as XSPEC does, bin by bin.

``Model.folded(n)`` [PyXspec Model page] returns the model folded through
spectrum ``n``'s response for its noticed channels (grouped bins), a rate:
counts s^-1 per bin, before exposure and AREASCAL. XSPEC's statistics use
``folded * exposure * AREASCAL`` as the expected counts (C-stat's
``t_s = exposure * areaScale`` in XSPEC's ``Cstat``), and so does this check.

A model only XSPEC evaluates (:class:`~xspec_sbi.pyxspec.XspecModel`) has no
engine result to compare: the check then confirms what the XSPEC-path
simulator relies on (same model, same noticed bins, finite non-negative
folded counts) and says so in :attr:`Agreement.path`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.forward.folding import Folder
from xspec_sbi.model.convolution import extended_grid
from xspec_sbi.model.evaluation import Evaluator
from xspec_sbi.model.expression import Model
from xspec_sbi.model.groups import GroupedModel
from xspec_sbi.pyxspec._access import PyXspecError, xspec_module
from xspec_sbi.pyxspec.reader import XspecModel, grouped_parameters, read_parameters, read_spectra_records
from xspec_sbi.pyxspec.state import model_groups, preserved_state

__all__ = ["AgreementError", "Agreement", "check_agreement", "xspec_expected_counts"]


class AgreementError(AssertionError):
    """The engine's folded model differs from XSPEC's beyond the tolerance."""


@dataclass(frozen=True)
class Agreement:
    """Largest relative difference per spectrum, engine vs XSPEC (both in counts).

    Attributes
    ----------
    max_relative : tuple of float
        Per spectrum; empty when ``path == "xspec"``.
    n_bins : tuple of int
        Noticed bins per spectrum (the same on both sides).
    path : str
        ``"engine"``: the engine's folded counts were compared bin by bin;
        ``"xspec"``: XSPEC alone folds the model, only bins and values checked.
    """

    max_relative: tuple
    n_bins: tuple
    path: str = "engine"

    def __str__(self) -> str:
        if self.path == "xspec":
            return (f"model folded by XSPEC only (XSPEC-path simulator); noticed bins "
                    f"{self.n_bins} agree")
        worst = max(self.max_relative) if self.max_relative else 0.0
        return f"engine folds as XSPEC: largest relative difference {worst:.2g}"


def xspec_expected_counts(xs, number: int, group: int, areascal: np.ndarray) -> np.ndarray:
    """XSPEC's expected source counts in the noticed bins of spectrum ``number``."""
    folded = np.asarray(xs.AllModels(group).folded(number), dtype=np.float64)
    areascal = np.asarray(areascal, dtype=np.float64)
    if areascal.size != folded.size:
        raise AgreementError(f"spectrum {number} ({xs.AllData(number).fileName}): XSPEC folds "
                             f"{folded.size} noticed bins, the session {areascal.size}: notice "
                             "states or grouping differ")
    return folded * float(xs.AllData(number).exposure) * areascal


def _xspec_parameters(model, xs) -> tuple:
    """XSPEC's current parameters of data group 1, refused if not those of ``model``."""
    now = read_parameters(xs.AllModels(1), 1)
    if [p.name.lower() for p in now] != [p.name.lower() for p in model.parameters]:
        raise PyXspecError("the XSPEC model changed since the session was read: "
                           f"{xs.AllModels(1).expression!r} vs {model.expression!r}")
    return now


def _current_model(model: Model, xs) -> Model:
    """The session's model with XSPEC's current parameter values (every data group's)."""
    if isinstance(model, GroupedModel):
        _xspec_parameters(model.base, xs)
        now = grouped_parameters({g: read_parameters(m, g) for g, m in model_groups(xs)})
        if len(now) != len(model.parameters):
            raise PyXspecError(f"XSPEC has {len(now) // model.n_per_group} data groups, the "
                               f"session's model {model.n_groups}")
        params = [replace(p, value=q.value) for p, q in zip(model.parameters, now)]
        return GroupedModel(model.base_with(params[:model.n_per_group]), model.n_groups, params)
    now = _xspec_parameters(model, xs)
    params = [replace(p, value=q.value) for p, q in zip(model.parameters, now)]
    return Model(model.expression, params)


def _check_xspec_only(session, xs, records) -> Agreement:
    """For a model only XSPEC evaluates: same model, same bins, usable folded counts."""
    _xspec_parameters(session.model, xs)
    sizes = []
    for record, spectrum in zip(records, session.spectra):
        label = f"spectrum {record.number} ({record.file_name})"
        ours = xspec_expected_counts(xs, record.number, record.group,
                                     spectrum.binned_areascal())
        bad = np.flatnonzero(~np.isfinite(ours) | (ours < 0))
        if bad.size:
            raise AgreementError(f"{label}: XSPEC's folded model of {session.model.expression!r} "
                                 f"is negative or not finite in {bad.size} bins (first: bin "
                                 f"{bad[0]}, {ours[bad[0]]!r}) at the current parameters")
        sizes.append(int(ours.size))
    return Agreement((), tuple(sizes), path="xspec")


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
        ``path="xspec"`` for a model only XSPEC evaluates: then XSPEC's
        folded counts are only checked for the session's noticed bins and
        for finite, non-negative values (there is no engine result).

    Raises
    ------
    AgreementError
        Naming the spectrum and the first bins that differ, with both values.
    PyXspecError
        XSPEC's model is no longer the session's.
    """
    xs = xspec_module(xspec)
    records = read_spectra_records(xs)
    if len(records) != len(session.spectra):
        raise AgreementError(f"XSPEC has {len(records)} spectra, the session "
                             f"{len(session.spectra)}")
    if isinstance(session.model, XspecModel):
        return _check_xspec_only(session, xs, records)
    # PyXspec and the engine share XSPEC's library (and its tables) in this
    # process: put XSPEC's Xset.abund/xsect back whatever the session says.
    with preserved_state(xs, quiet=False):
        return _check_engine(session, xs, records, rtol)


def _extension_hint(model, spectrum, theta) -> str:
    """How to give XSPEC the grid the engine extends for a convolution, or ''."""
    if model.bin_local or spectrum.response is None:
        return ""
    edges = np.asarray(spectrum.response.energy_edges, dtype=np.float64)
    below, above = Evaluator(model, edges).extension(model.all_values(theta))
    grid = extended_grid(edges, below, above)
    commands = ([f'AllModels.setEnergies("extend", "low,{grid[0]:.15g},{below} log")']
                if below else [])
    if above:
        commands.append(f'AllModels.setEnergies("extend", "high,{grid[-1]:.15g},{above} log")')
    if not commands:
        return ""
    return (". The engine evaluates this convolution on the response grid extended by "
            f"{below} bins below and {above} above (xspec_sbi.model.convolution); XSPEC "
            "does so after " + " and ".join(commands))


def _check_engine(session, xs, records, rtol) -> Agreement:
    xslibrary.configure(session.settings)
    model = _current_model(session.model, xs)
    theta = model.free_values()[None, :]
    worst, sizes = [], []
    grouped = isinstance(model, GroupedModel)
    for record, spectrum in zip(records, session.spectra):
        # each spectrum through its own data group's parameters
        folded_with = model.for_group(record.group) if grouped else model
        engine = Folder(spectrum, folded_with).expected_counts(theta)[0]
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
                                 f"First: {rows}" + _extension_hint(model, spectrum, theta))
        scale = np.maximum(np.abs(ours), floor)
        worst.append(float(np.max(diff / scale)) if diff.size else 0.0)
        sizes.append(int(ours.size))
    return Agreement(tuple(worst), tuple(sizes))
