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
    model : Model
        Shared by all spectra (one data group, as XSPEC's joint fit).
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
    """

    spectra: tuple
    model: Model
    settings: xslibrary.XspecSettings = field(default_factory=xslibrary.XspecSettings)
    statistic: str = "cstat"
    origin: str = "files"
    simulator_factory: Callable | None = field(default=None, repr=False, compare=False)
    xspec: XspecLink | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "spectra", tuple(self.spectra))
        if not self.spectra:
            raise SessionError("a session needs at least one spectrum")
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

    @classmethod
    def from_files(cls, spectra: str | Sequence[str], model: str | Model, *,
                   ignore: str | None = None, notice: str | None = None,
                   respfile=None, ancrfile=None, backfile=None, response=None,
                   abund: str = xslibrary.DEFAULT_ABUND, xsect: str = xslibrary.DEFAULT_XSECT,
                   statistic: str = "cstat") -> "Session":
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
        m = model if isinstance(model, Model) else Model(model)
        return cls(tuple(loaded), m, xslibrary.XspecSettings(abund, xsect), statistic)

    # -- derived pieces ---------------------------------------------------------
    def with_model(self, model: Model) -> "Session":
        # The factory simulates the model XSPEC holds: it cannot stand for an engine model.
        factory = None if isinstance(model, Model) else self.simulator_factory
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
        parts = tuple(Simulator.from_spectrum(s, self.model, self.settings, use_background)
                      for s in self.spectra)
        return parts[0] if len(parts) == 1 else JointSimulator(parts)

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
        tables = [c.info.table.digest() for c in getattr(self.model, "components", ())
                  if getattr(c.info, "table", None) is not None]
        # Only with table models: fingerprints of networks saved before stay as they were.
        extra = {"tables": ",".join(tables)} if tables else {}
        return {**extra,
            "model": self.model.expression,
            "parameters": repr(params),
            "free_parameters": ",".join(self.model.free_names),
            "abund": self.settings.abund,
            "xsect": self.settings.xsect,
            "statistic": self.statistic,
            "spectra_setup": ",".join(digests),
            "xspec_sbi": __version__,
        }


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
