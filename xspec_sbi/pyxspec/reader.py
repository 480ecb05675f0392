"""Copy a live PyXspec session into a plain :class:`~xspec_sbi.session.Session`.

What is read (PyXspec manual pages in brackets):

* every spectrum of ``AllData`` [DataManager, Spectrum]: ``fileName``
  (``file{N}`` for a type II row in newer XSPEC; XSPEC 12.9.1 drops the
  ``{N}``, and the row is then the one whose counts are XSPEC's ``values``
  times ``exposure``), ``response.rmf``, ``response.arf``
  [Response], ``background.fileName`` [Background], ``dataGroup`` and
  ``noticed``;
* ``Xset.abund``, ``Xset.xsect`` [XspecSettings] and ``Fit.statMethod``
  [FitManager];
* the model of each data group, ``AllModels(g)`` [ModelManager, Model]:
  ``expression``, ``componentNames``, each Component's ``parameterNames``
  [Component] and each Parameter's ``values``, ``frozen``, ``link``,
  ``unit`` [Parameter].

The spectra are then loaded with our own reader on the same files, and given
XSPEC's notice state. ``Spectrum.noticed`` lists "the currently noticed
(1-based) channel numbers"; for grouped data XSPEC's channels are the grouped
bins (``Spectrum.values`` holds one rate per grouped bin and is indexed by
these numbers), which is also what
:attr:`xspec_sbi.data.spectrum.Spectrum.noticed` indexes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

import numpy as np

from xspec_sbi.data.ogip import OGIPError, split_row_suffix
from xspec_sbi.data.ogip_pha import is_type2, read_pha
from xspec_sbi.data.spectrum import load_spectrum
from xspec_sbi.model.expression import Model, ModelError
from xspec_sbi.model.groups import GroupedModel, group_name
from xspec_sbi.model.library import ModelUnavailableError
from xspec_sbi.model.parameters import ParameterSpec, parameter_index
from xspec_sbi.pyxspec._access import JointGroupsError, PyXspecError

__all__ = ["XspecModel", "SpectrumRecord", "read_spectra_records", "check_groups", "load_record",
           "engine_or_xspec_model", "untied_parameters", "grouped_parameters",
           "read_parameters", "parse_link"]

_LINK = re.compile(r"^=?\s*(?:(?P<fa>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*\*\s*)?p(?P<n>\d+)"
                   r"(?:\s*\*\s*(?P<fb>[-+]?[0-9.]+(?:[eE][-+]?\d+)?))?\s*$", re.IGNORECASE)


def parse_link(text: str, where: str) -> tuple[float, int] | None:
    """``(factor, global parameter number)`` of an XSPEC link, None when not linked.

    Accepts ``"= p1"``, ``"= 2.0*p1"``, ``"= p1*2.0"``; any other expression
    (sums, functions, another model's ``name:pN``) is refused naming ``where``.
    """
    text = str(text or "").strip()
    if not text:
        return None
    m = _LINK.match(text)
    if m is None:
        raise PyXspecError(f"parameter {where}: link {text!r} is not of the form '= pN' or "
                           "'= a*pN'; other link expressions are not supported")
    factor = float(m.group("fa") or m.group("fb") or 1.0)
    return factor, int(m.group("n"))


@dataclass(frozen=True)
class XspecModel:
    """A model only XSPEC can evaluate (local, table, mixing, convolution...).

    It carries what inference needs (parameter specs) but no evaluation:
    simulate it with :class:`~xspec_sbi.pyxspec.xspec_path.XspecPathSimulator`.
    """

    expression: str
    parameters: tuple
    reason: str = ""

    @property
    def free_parameters(self) -> tuple:
        return tuple(p for p in self.parameters if p.free)

    @property
    def free_names(self) -> tuple:
        return tuple(p.name for p in self.free_parameters)

    def free_values(self) -> np.ndarray:
        return np.array([p.value for p in self.free_parameters])

    def index_of(self, name) -> int:
        """0-based position of a parameter by name (case-insensitive) or 1-based number."""
        return parameter_index(self.parameters, name, self.expression, ModelError)

    def __getitem__(self, name) -> ParameterSpec:
        return self.parameters[self.index_of(name)]

    def probe(self, settings=None) -> None:
        """Nothing to probe: XSPEC evaluates this model, not the embedded library."""

    def evaluate(self, energy_edges, theta):
        raise ModelError(f"model {self.expression!r} is evaluated by XSPEC only ({self.reason}); "
                         "use xspec_sbi.pyxspec.choose_simulator(session) to simulate it")


@dataclass(frozen=True)
class SpectrumRecord:
    """One ``AllData(n)`` entry, copied."""

    number: int
    group: int
    file_name: str
    rmf: str | None
    arf: str | None
    background: str | None
    exposure: float
    noticed: tuple
    values: tuple = ()        # XSPEC's rates (counts/s) of the noticed bins


def _blank(name) -> str | None:
    text = str(name or "").strip()
    return None if not text or text.lower() == "none" else text


def read_spectra_records(xs) -> tuple:
    """Copy every spectrum of ``AllData`` into :class:`SpectrumRecord`."""
    records = []
    for n in range(1, int(xs.AllData.nSpectra) + 1):
        s = xs.AllData(n)
        try:
            response = s.response
            rmf, arf = _blank(response.rmf), _blank(response.arf)
        except Exception:  # PyXspec raises when no response is assigned
            rmf = arf = None
        try:
            background = _blank(s.background.fileName)
        except Exception:  # ... and when there is no background
            background = None
        records.append(SpectrumRecord(
            number=n, group=int(s.dataGroup), file_name=str(s.fileName), rmf=rmf, arf=arf,
            background=background, exposure=float(s.exposure),
            noticed=tuple(int(c) for c in s.noticed),
            values=tuple(float(v) for v in s.values)))
    return tuple(records)


def _resolve(path: str | None, spectrum_file: str, what: str) -> str:
    """XSPEC's file name, found from the working directory or the spectrum's folder."""
    if path is None:
        return "none"
    bare, row = split_row_suffix(path)
    candidates = [bare, os.path.join(os.path.dirname(spectrum_file), bare)]
    for c in candidates:
        if os.path.isfile(c):
            return c if row is None else f"{c}{{{row}}}"
    raise FileNotFoundError(f"{what} {path!r} of spectrum {spectrum_file} not found (looked at "
                            + ", ".join(candidates) + ")")


def _with_notice(record: SpectrumRecord, spectrum):
    """``spectrum`` with XSPEC's noticed channels of ``record``."""
    channels = np.asarray(record.noticed, dtype=np.int64)
    if channels.size and (channels.min() < 1 or channels.max() > spectrum.n_bins_all):
        raise PyXspecError(
            f"spectrum {record.number} ({record.file_name}): XSPEC notices channel "
            f"{int(channels.max())} but the file has {spectrum.n_bins_all} grouped bins; "
            "XSPEC and our reader group this spectrum differently")
    noticed = np.zeros(spectrum.n_bins_all, dtype=bool)
    noticed[channels - 1] = True
    return replace(spectrum, noticed=noticed)


def _load_row(record: SpectrumRecord, bare: str, row, files: dict):
    """Our reader's spectrum ``bare`` (row ``row``) with ``files`` and XSPEC's notice state."""
    return _with_notice(record, load_spectrum(bare, row=row, **files))


def _type_ii_row(record: SpectrumRecord, bare: str, files: dict) -> int:
    """The row of type II file ``bare`` XSPEC loaded, found by its counts.

    XSPEC 12.9.1's ``Spectrum.fileName`` has no ``{N}``: the row is the one
    whose noticed counts are XSPEC's ``values x exposure`` (1e-6 relative)
    with XSPEC's exposure; exactly one row must match.
    """
    xspec_counts = np.asarray(record.values, dtype=np.float64) * record.exposure
    matches, row = [], 1
    while True:
        try:
            pha = read_pha(bare, row=row)
        except OGIPError:   # past the last row
            break
        if pha.exposure is not None and np.isclose(pha.exposure, record.exposure, rtol=1e-6):
            counts = _load_row(record, bare, row, files).binned_counts()
            if counts.shape == xspec_counts.shape and np.allclose(counts, xspec_counts,
                                                                  rtol=1e-6, atol=1e-6):
                matches.append(row)
        row += 1
    if len(matches) != 1:
        raise PyXspecError(
            f"spectrum {record.number}: {bare} is a type II file and XSPEC's Spectrum.fileName "
            f"does not say which row it loaded; {len(matches)} rows have its exposure and "
            "counts (load it with the {N} suffix of a single matching row)")
    return matches[0]


def load_record(record: SpectrumRecord):
    bare, row = split_row_suffix(record.file_name)
    if not os.path.isfile(bare):
        raise FileNotFoundError(f"spectrum {record.number}: file {bare} (Spectrum.fileName) "
                                "not found from this working directory")
    if record.rmf is None:
        raise PyXspecError(f"spectrum {record.number} ({record.file_name}) has no response; "
                           "assign one (Spectrum.response = 'file.rmf')")
    files = dict(respfile=_resolve(record.rmf, bare, "response"),
                 ancrfile=_resolve(record.arf, bare, "arf"),
                 backfile=_resolve(record.background, bare, "background"))
    if row is None and is_type2(bare):
        row = _type_ii_row(record, bare, files)
    return _load_row(record, bare, row, files)


def read_parameters(model, group: int) -> tuple:
    """ParameterSpecs of ``AllModels(group)``, links as ``"= pN"`` local to the model."""
    start = int(model.startParIndex)
    specs, i = [], 0
    for comp_name in model.componentNames:
        component = getattr(model, comp_name)
        for par_name in component.parameterNames:
            i += 1
            p = getattr(component, par_name)
            values = [float(v) for v in p.values]
            name = f"{comp_name}.{par_name}"
            link = parse_link(p.link, f"{name} (data group {group})")
            link_text = None
            if link is not None:
                factor, number = link
                local = number - start + 1 if group == 1 else number
                link_text = f"= p{local}" if factor == 1.0 else f"= {factor!r}*p{local}"
            specs.append(ParameterSpec(
                name=name, index=i, unit=str(p.unit or ""), value=values[0],
                delta=abs(values[1]), min=values[2], bot=values[3], top=values[4],
                max=values[5], frozen=bool(p.frozen) and link is None, link=link_text))
    if i != int(model.nParameters):
        raise PyXspecError(f"data group {group}: components list {i} parameters, the model "
                           f"{model.nParameters}")
    return tuple(specs)


def untied_parameters(groups: dict) -> list:
    """Names ``"<name> (data group g)"`` of the parameters of groups > 1 not tied to group 1.

    A copy linked to group 1's parameter (``= pk``), or frozen at group 1's
    frozen value, is tied.
    """
    first = groups[1]
    differ = []
    for g, params in sorted(groups.items()):
        if g == 1:
            continue
        for p, q in zip(first, params):
            tied = q.link == f"= p{p.index}"
            same_frozen = q.frozen and p.frozen and q.value == p.value
            if not (tied or same_frozen):
                differ.append(f"{q.name} (data group {g})")
    return differ


def check_groups(groups: dict) -> None:
    """Refuse groups > 1 that are not tied to group 1 parameter by parameter.

    For models only XSPEC evaluates (the XSPEC-path simulator folds data
    group 1's free parameters); the engine takes untied groups as a
    :class:`~xspec_sbi.model.groups.GroupedModel` (:func:`grouped_parameters`).
    """
    differ = untied_parameters(groups)
    if differ:
        raise JointGroupsError(
            "data groups with their own parameters need a model the engine evaluates (the "
            "XSPEC path folds data group 1's parameters only); these parameters are not tied "
            "to data group 1: " + ", ".join(differ))


def grouped_parameters(groups: dict) -> tuple:
    """Every group's ParameterSpecs in XSPEC's global order, named ``name[g]`` above group 1.

    ``groups`` maps data group to :func:`read_parameters`' specs; group ``g``'s
    parameter ``k`` becomes XSPEC's number ``(g - 1) * n + k`` (its links are
    already global numbers).
    """
    n = len(groups[1])
    if sorted(groups) != list(range(1, len(groups) + 1)):
        raise PyXspecError(f"data groups {sorted(groups)}: expected 1..{len(groups)}")
    out = []
    for g in sorted(groups):
        if len(groups[g]) != n:
            raise PyXspecError(f"data group {g} has {len(groups[g])} parameters, group 1 {n}")
        out += [replace(p, name=group_name(p.name, g), index=(g - 1) * n + p.index)
                for p in groups[g]]
    return tuple(out)


def engine_or_xspec_model(expression: str, params: tuple, settings, groups: dict | None = None):
    """The engine's Model, or an :class:`XspecModel` when the engine refuses or cannot run it.

    With ``groups`` (data group -> its specs) whose parameters are not all
    tied to group 1, the engine's :class:`~xspec_sbi.model.groups.GroupedModel`;
    such groups are refused (:class:`JointGroupsError`) for a model only
    XSPEC evaluates.
    """
    try:
        model = Model(expression, params)
        model.probe(settings)   # a component whose data files are missing here
    except (ModelError, ModelUnavailableError) as exc:
        if groups is not None:
            check_groups(groups)
        return XspecModel(expression, params, reason=str(exc))
    if groups is None or len(groups) == 1 or not untied_parameters(groups):
        return model   # tied groups: one model shared by all spectra, as before
    return GroupedModel(model, len(groups), grouped_parameters(groups))
