"""A fitting session: spectra, model, XSPEC settings and statistic, as plain records.

A :class:`Session` is what every inference needs from XSPEC's state, copied
once: it is built from files here (:meth:`Session.from_files`), or from a live
PyXspec session by :mod:`xspec_sbi.pyxspec`. Nothing downstream talks to
PyXspec.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol, Sequence

import numpy as np

from xspec_sbi._version import __version__
from xspec_sbi.data.doubtful import warn_doubtful
from xspec_sbi.data.spectrum import Spectrum, load_spectrum
from xspec_sbi.forward.objective import PoissonStatistic
from xspec_sbi.forward.simulate import JointSimulator, Simulator, SpectralSimulator
from xspec_sbi.model import library as xslibrary
from xspec_sbi.model.expression import Model
from xspec_sbi.model.groups import GroupedModel
from xspec_sbi.model.groups import free_per_group as free_per_group_model

__all__ = ["Session", "SessionError", "XspecLink"]


class XspecLink(Protocol):
    """What the pipeline asks of the live XSPEC session a :class:`Session` was read from.

    :mod:`xspec_sbi.pyxspec` implements it (``pyxspec.link.XspecLink``); the
    core never imports PyXspec.
    """

    def check_agreement(self, session: "Session"):
        """Raise unless the engine folds the model as XSPEC does; return the agreement record."""

    def compare(self, *, names, samples, median, chain, chain_length, chain_burn, walkers,
                load_chain, progress, stat, prior):
        """XSPEC's own fit, chain and statistic beside the SBI samples."""

#: Statistics the method accepts: Poisson ones (cstat becomes wstat with a background).
POISSON_STATISTICS = ("cstat",)


class SessionError(ValueError):
    """A session that inference cannot use (statistic, missing response, ...)."""


@dataclass(frozen=True)
class Session:
    """Spectra fitted jointly with one model.

    Parameters
    ----------
    spectra : tuple of Spectrum
        Each with its response, background and notice state.
    model : Model or GroupedModel
        A :class:`Model` is shared by all spectra (XSPEC's joint fit with
        every group tied to group 1); a :class:`~xspec_sbi.model.groups.GroupedModel`
        gives each data group its own copy of the parameters.
    settings : XspecSettings
        Abundance and cross-section tables (``Xset.abund``, ``Xset.xsect``).
    statistic : str
        ``"cstat"`` (XSPEC's ``Fit.statMethod``); with a background file XSPEC
        evaluates it as W-stat, and so does the engine.
    origin : str
        Where the session came from: ``"files"`` or ``"pyxspec"``.
    simulator_factory : callable, optional
        ``(session, use_background) -> simulator`` for a model the engine
        cannot evaluate (set by :func:`xspec_sbi.pyxspec.read_session`: XSPEC
        folds the model). None: the engine's :class:`~xspec_sbi.forward.simulate.Simulator`.
    xspec : XspecLink, optional
        The live XSPEC session this one was read from (PyXspec sessions).
    groups : tuple of int, optional
        XSPEC's data group of each spectrum (1-based, every group from 1 to
        the largest holding a spectrum). None: all in group 1, unless the
        model is a ``GroupedModel`` with one group per spectrum.
    """

    spectra: tuple
    model: Model
    settings: xslibrary.XspecSettings = field(default_factory=xslibrary.XspecSettings)
    statistic: str = "cstat"
    origin: str = "files"
    simulator_factory: Callable | None = field(default=None, repr=False, compare=False)
    xspec: XspecLink | None = field(default=None, repr=False, compare=False)
    groups: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "spectra", tuple(self.spectra))
        if not self.spectra:
            raise SessionError("a session needs at least one spectrum")
        self._check_groups()
        if self.statistic.lower() not in POISSON_STATISTICS:
            raise SessionError(
                f"statistic {self.statistic!r}: simulation-based inference here models Poisson "
                "counts; set Fit.statMethod = 'cstat' (W-stat is used automatically with a "
                "background). Chi-square statistics are not supported.")
        for s in self.spectra:
            if s.response is None:
                raise SessionError(f"spectrum {s.label} has no response: give its RMF (respfile=)")
            if s.n_bins == 0:
                raise SessionError(f"spectrum {s.label} has no noticed bins")

    def _check_groups(self):
        grouped = isinstance(self.model, GroupedModel)
        groups = self.groups
        if groups is None:
            if not grouped or self.model.n_groups == 1:
                return
            if self.model.n_groups != len(self.spectra):
                raise SessionError(f"the model has {self.model.n_groups} data groups and the "
                                   f"session {len(self.spectra)} spectra: give groups= (the data "
                                   "group of each spectrum)")
            groups = tuple(range(1, len(self.spectra) + 1))
        groups = tuple(int(g) for g in groups)
        if len(groups) != len(self.spectra):
            raise SessionError(f"groups={groups}: one data group per spectrum "
                               f"({len(self.spectra)} spectra)")
        n = max(groups)
        if min(groups) < 1 or set(groups) != set(range(1, n + 1)):
            raise SessionError(f"groups={groups}: XSPEC numbers data groups 1, 2, ... with "
                               "none empty")
        if grouped and self.model.n_groups != n:
            raise SessionError(f"groups={groups} has {n} data groups, the model "
                               f"{self.model.n_groups}")
        if not grouped and n > 1 and isinstance(self.model, Model):
            # XSPEC's default: every group's copy tied to group 1 (numbers unchanged)
            object.__setattr__(self, "model", GroupedModel(self.model, n))
        object.__setattr__(self, "groups", groups)

    @property
    def group_of_spectrum(self) -> tuple:
        """Data group (1-based) of each spectrum."""
        return self.groups or (1,) * len(self.spectra)

    @classmethod
    def from_files(cls, spectra: str | Sequence[str], model: str | Model, *,
                   ignore: str | None = None, notice: str | None = None,
                   respfile=None, ancrfile=None, backfile=None, response=None,
                   abund: str = xslibrary.DEFAULT_ABUND, xsect: str = xslibrary.DEFAULT_XSECT,
                   statistic: str = "cstat", groups=None,
                   free_per_group: Sequence[str] = ()) -> "Session":
        """Load spectra as XSPEC's ``data`` does and attach a model.

        Parameters
        ----------
        spectra : str or sequence of str
            PHA files (``file.pha{N}`` for a type II row).
        model : str or Model
            XSPEC expression, e.g. ``"tbabs*powerlaw"``.
        ignore, notice : str, optional
            XSPEC channel selections applied to every spectrum, e.g. ``"**-0.3 10.-**"``.
        respfile, ancrfile, backfile : str, optional
            Overrides of the header keywords (``"none"`` for no file).
        response : Response, optional
            A response object to use instead of any RMF (e.g. the NICER-like one).
        abund, xsect : str
            XSPEC's ``abund`` and ``xsect`` tables.
        groups : "per-file" or sequence of int, optional
            XSPEC's data groups: ``"per-file"`` puts each file in its own
            group (``data 1:1 a.pha 2:2 b.pha``), a sequence gives each file's
            group. Default: all in group 1, or one per file when
            ``free_per_group`` is given.
        free_per_group : sequence of str
            Group 1's parameters whose copy is free in every other group
            (XSPEC's ``untie`` and ``thaw``), e.g. ``["constant.factor"]``;
            a ``constant`` component's factor named here is frozen in group 1
            (the cross-normalisation is relative to group 1, XSPEC's usage).

        Examples
        --------
        >>> s = Session.from_files(["pn.pha", "xrt.pha"], "constant*tbabs*powerlaw",
        ...                        free_per_group=["constant.factor"])
        >>> s.model.free_names
        ('TBabs.nH', 'powerlaw.PhoIndex', 'powerlaw.norm', 'constant.factor[2]')
        """
        paths = [spectra] if isinstance(spectra, (str, bytes)) or hasattr(spectra, "__fspath__") \
            else list(spectra)
        loaded = []
        for p in paths:
            kw = dict(respfile=respfile, ancrfile=ancrfile, backfile=backfile)
            if response is not None:
                kw.update(respfile="none", ancrfile="none")
            s = load_spectrum(p, **kw)
            if response is not None:
                s = s.with_response(response)
            if ignore:
                s = s.ignore(ignore)
            if notice:
                s = s.notice(notice)
            loaded.append(s)
        warn_doubtful(loaded)
        m = model if isinstance(model, (Model, GroupedModel)) else Model(model)
        assigned = _file_groups(groups, free_per_group, len(loaded))
        if assigned is not None:
            try:
                m = free_per_group_model(m, max(assigned), free_per_group)
            except ValueError as exc:
                raise SessionError(f"free_per_group={list(free_per_group)}: {exc}") from None
        return cls(tuple(loaded), m, xslibrary.XspecSettings(abund, xsect), statistic,
                   groups=assigned)

    # -- derived pieces ---------------------------------------------------------
    def with_model(self, model: Model) -> "Session":
        # The factory simulates the model XSPEC holds: it cannot stand for an engine model.
        factory = None if isinstance(model, (Model, GroupedModel)) else self.simulator_factory
        return replace(self, model=model, simulator_factory=factory)

    def with_xspec(self, link: XspecLink) -> "Session":
        """The same session with the live XSPEC session it was read from attached."""
        return replace(self, xspec=link)

    def simulator(self, use_background: bool = True) -> SpectralSimulator:
        """The fakeit simulator of this session (joint over spectra when several).

        The engine's, or the one ``simulator_factory`` builds (XSPEC folding
        a model the engine cannot evaluate); both share one interface.
        """
        xslibrary.configure(self.settings)
        if self.simulator_factory is not None:
            return self.simulator_factory(self, use_background)
        parts = tuple(Simulator.from_spectrum(s, m, self.settings, use_background)
                      for s, m in zip(self.spectra, self.spectrum_models()))
        return parts[0] if len(parts) == 1 else JointSimulator(parts)

    def spectrum_models(self) -> tuple:
        """The model each spectrum is folded with: its data group's (all the same in one group)."""
        if not isinstance(self.model, GroupedModel):
            return (self.model,) * len(self.spectra)
        return tuple(self.model.for_group(g) for g in self.group_of_spectrum)

    def observed(self, use_background: bool = True) -> np.ndarray:
        """Observed data in the simulator's layout (n_outputs,), counts."""
        blocks = []
        for s in self.spectra:
            blocks.append(s.binned_counts())
            if use_background and s.background is not None:
                blocks.append(s.binned_background_counts())
        return np.concatenate(blocks).astype(np.float64)

    def statistic_function(self, simulator=None) -> PoissonStatistic:
        """XSPEC's fit statistic of the observed data as a function of the free parameters."""
        sim = simulator or self.simulator()
        return PoissonStatistic(sim, self.observed(use_background=sim_has_background(sim)))

    def fingerprint(self) -> dict:
        """What a trained network depends on, for refusing a mismatched set-up.

        Model expression and parameter set-up, XSPEC settings, and a digest of
        each spectrum's response, exposure, scales, grouping and notice state.
        """
        digests = []
        for s, p in zip(self.spectra, self.simulator().parts):
            h = hashlib.sha256()
            transfer = getattr(p, "transfer", None)
            if transfer is not None:
                h.update(np.ascontiguousarray(transfer.energy_edges).tobytes())
                mat = transfer.matrix
                dense = mat if isinstance(mat, np.ndarray) else mat.toarray()
                h.update(np.round(dense, 12).tobytes())
            else:
                _digest_folding(h, s)
            if p.has_background:
                h.update(np.ascontiguousarray(p.background_counts).tobytes())
                h.update(np.ascontiguousarray(p.background_scale).tobytes())
            digests.append(h.hexdigest()[:16])
        params = [(p.name, p.value if not p.free else None, p.frozen, p.link)
                  for p in self.model.parameters]
        out = {
            "model": self.model.expression,
            "parameters": repr(params),
            "free_parameters": ",".join(self.model.free_names),
            "abund": self.settings.abund,
            "xsect": self.settings.xsect,
            "statistic": self.statistic,
            "spectra_setup": ",".join(digests),
            "xspec_sbi": __version__,
        }
        if self.groups is not None:
            # only grouped sessions carry it: single-group fingerprints stay as they were
            out["groups"] = ",".join(str(g) for g in self.groups)
        tables = [c.info.table.digest() for c in getattr(self.model, "components", ())
                  if getattr(c.info, "table", None) is not None]
        if tables:
            # Only with table models, for the same reason: the content, not only the file name.
            out["tables"] = ",".join(tables)
        return out


def _file_groups(groups, free_per_group, n_files):
    """Data group of each file from ``from_files``' ``groups=`` (None: one group, no change)."""
    if groups is None:
        groups = "per-file" if free_per_group else None
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups.strip().lower() != "per-file":
            raise SessionError(f"groups={groups!r}: expected 'per-file' or one data group "
                               "number per file")
        return tuple(range(1, n_files + 1))
    return tuple(int(g) for g in groups)


def _digest_folding(h, spectrum: Spectrum) -> None:
    """Add what XSPEC folds a model through (no engine transfer matrix) to digest ``h``.

    Response grid and matrix (kept sparse: a dense PN matrix is ~100 MB),
    grouping, notice state, exposure and AREASCAL.
    """
    r = spectrum.response
    h.update(np.ascontiguousarray(r.energy_edges, dtype=np.float64).tobytes())
    m = r.effective_matrix().tocsr()
    for part in (np.round(m.data, 12), m.indices, m.indptr):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(np.ascontiguousarray(spectrum.grouping).tobytes())
    h.update(np.ascontiguousarray(spectrum.noticed).tobytes())
    h.update(np.float64(spectrum.exposure).tobytes())
    h.update(np.ascontiguousarray(spectrum.binned_areascal(), dtype=np.float64).tobytes())


def sim_has_background(sim: SpectralSimulator) -> bool:
    return any(p.has_background for p in sim.parts)
