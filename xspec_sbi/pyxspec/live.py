"""The live PyXspec session read into a plain :class:`~xspec_sbi.session.Session`.

Apart from :mod:`xspec_sbi.pyxspec.reader` (which copies spectra and
parameters) because a session whose model the engine cannot evaluate gets the
XSPEC-path simulator, and that simulator is built on the reader: one module
above both keeps the imports one way.
"""
from __future__ import annotations

from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.groups import GroupedModel
from xspec_sbi.pyxspec._access import PyXspecError, xspec_module
from xspec_sbi.pyxspec.reader import (XspecModel, engine_or_xspec_model, load_record,
                                      read_parameters, read_spectra_records)
from xspec_sbi.pyxspec.state import model_groups
from xspec_sbi.pyxspec.xspec_path import XspecPathFactory
from xspec_sbi.session import Session

__all__ = ["read_session"]


def read_session(xspec=None) -> Session:
    """The current PyXspec session as a :class:`~xspec_sbi.session.Session`.

    Parameters
    ----------
    xspec : module, optional
        PyXspec (default ``import xspec``).

    Returns
    -------
    Session
        Spectra in ``AllData`` order, the model of data group 1 (a
        :class:`~xspec_sbi.model.groups.GroupedModel` over every group, and
        each spectrum's ``dataGroup`` in ``groups``, when a group has
        parameters of its own; an
        :class:`XspecModel` when the embedded engine cannot evaluate it:
        then ``session.simulator()`` lets XSPEC fold the model, see
        :class:`~xspec_sbi.pyxspec.XspecPathSimulator`),
        ``Xset.abund``/``Xset.xsect`` and the statistic; ``origin="pyxspec"``.

    Raises
    ------
    PyXspecError
        No spectra, no model, a chi-square statistic, unsupported links.
    JointGroupsError
        Data groups with parameters of their own, for a model only XSPEC evaluates.
    """
    xs = xspec_module(xspec)
    if int(xs.AllData.nSpectra) == 0:
        raise PyXspecError("no spectra are loaded in AllData")
    method = str(xs.Fit.statMethod).strip().lower()
    if not method or method.split()[0] != "cstat":
        raise PyXspecError(
            f"Fit.statMethod is {xs.Fit.statMethod!r}: simulation-based inference here models "
            "Poisson counts; set Fit.statMethod = 'cstat' (XSPEC uses W-stat itself when a "
            "background is loaded). Chi-square statistics are not supported.")
    sources = getattr(xs.AllModels, "sources", {1: ""})
    if len(sources) > 1 or any(str(v).strip() for v in sources.values()):
        raise PyXspecError(f"AllModels.sources is {dict(sources)}: only one unnamed model "
                           "(source 1) is supported")
    groups = {g: read_parameters(m, g) for g, m in model_groups(xs)}
    if not groups:
        raise PyXspecError("no model is defined (AllModels is empty)")
    expression = str(xs.AllModels(1).expression)
    records = read_spectra_records(xs)
    spectra = tuple(load_record(r) for r in records)
    settings = xslibrary.XspecSettings(str(xs.Xset.abund).strip(), str(xs.Xset.xsect).strip())
    model = engine_or_xspec_model(expression, groups[1], settings, groups)
    factory = None
    if isinstance(model, XspecModel):
        factory = XspecPathFactory(xs)
    grouped = isinstance(model, GroupedModel)
    return Session(spectra, model, settings, "cstat", origin="pyxspec", simulator_factory=factory,
                   groups=tuple(r.group for r in records) if grouped else None)
