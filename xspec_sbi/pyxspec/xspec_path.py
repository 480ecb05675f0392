"""fakeit through XSPEC itself, for models the embedded engine cannot evaluate.

:class:`XspecPathSimulator` has the interface of
:class:`xspec_sbi.forward.simulate.Simulator` (``n_outputs``, ``expected_source``,
``expected``, ``__call__(theta, rng)``, ``settings``, ``model``) and is
picklable. The expected source counts are XSPEC's ``AllModels(g).folded(n)``
[PyXspec Model page] times the exposure and AREASCAL (as XSPEC's statistics
use them); the background is added and Poisson counts are drawn exactly as
the engine's fakeit does (the documented semantics of XSPEC's ``fakeit``).
``AllData.fakeit`` itself is not used: it replaces the loaded spectra.

In the process that built it, the simulator works on the live session and
restores the parameters afterwards (:func:`preserved_state`); a large batch
is timed, announced with an estimate, and folded on XSPEC worker processes
(:mod:`xspec_sbi.pyxspec.xspec_pool`). A worker
process (a spawned pool) rebuilds the session once from the text written by
``Xset.save(path, info="a")``, with ``Xset.restore(path)`` [XspecSettings],
run from the working directory the session was saved in.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

from xspec_sbi.forward.simulate import FakeitDraws, JointSimulator
from xspec_sbi.model.library import ModelUnavailableError
from xspec_sbi.model.expression import ModelError
from xspec_sbi.pyxspec._access import PyXspecError, backend_name, resolve_backend, xspec_module
from xspec_sbi.pyxspec.reader import XspecModel, read_parameters, read_spectra_records
from xspec_sbi.pyxspec.state import preserved_state
from xspec_sbi.pyxspec.xspec_pool import fold_many

__all__ = ["XspecPathSimulator", "XspecPathFactory", "xspec_path_simulator", "choose_simulator",
           "save_session_text"]

# Session restored in this (worker) process: (backend, digest) -> module.
_RESTORED: dict = {}


def save_session_text(xs) -> str:
    """The session as ``Xset.save(..., info="a")`` writes it (text of an .xcm file)."""
    with tempfile.TemporaryDirectory(prefix="xspec_sbi_") as folder:
        path = os.path.join(folder, "session.xcm")
        xs.Xset.save(path, info="a")
        with open(path) as f:
            return f.read()


class XspecPathSimulator(FakeitDraws):
    """fakeit of one spectrum with XSPEC evaluating the model: ``(theta, rng) -> counts``.

    Build it with :func:`xspec_path_simulator` or :func:`choose_simulator`.

    Parameters
    ----------
    backend : str
        Import path of PyXspec (``"xspec"``) for worker processes.
    xcm_text : str
        The session as saved by ``Xset.save(..., info="a")``.
    cwd : str
        Working directory the session was saved from (relative file names).
    settings : XspecSettings
    model : Model or XspecModel
        Parameter specs (names, limits) of the free parameters.
    number, group : int
        Spectrum number in ``AllData`` and its data group.
    free_indices : tuple of int
        XSPEC numbers of the free parameters (data group 1), theta's order.
    exposure : float
        s. areascal : ndarray (n_bins,)
    background_counts, background_scale : ndarray (n_bins,) or None
        As :class:`~xspec_sbi.forward.simulate.Simulator`.
    live : module, optional
        The PyXspec object of the building process (not pickled).
    workers : int, optional
        XSPEC worker processes for large batches (default
        :func:`~xspec_sbi.pyxspec.xspec_pool.default_workers`); 1 folds
        everything in the building process.
    """

    def __init__(self, *, backend, xcm_text, cwd, settings, model, number, group,
                 free_indices, exposure, areascal, background_counts=None,
                 background_scale=None, live=None, workers=None):
        self.backend = backend
        self.xcm_text = xcm_text
        self.cwd = cwd
        self.settings = settings
        self.model = model
        self.number = int(number)
        self.group = int(group)
        self.free_indices = tuple(int(i) for i in free_indices)
        self.exposure = float(exposure)
        self.areascal = np.asarray(areascal, dtype=np.float64)
        self.background_counts = background_counts
        self.background_scale = background_scale
        self.origin_pid = os.getpid()
        self.workers = workers
        self._live = live

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_live"] = None
        return state

    # -- the Simulator interface ------------------------------------------
    @property
    def n_bins(self) -> int:
        return int(self.areascal.size)

    def expected_source(self, theta) -> np.ndarray:
        """XSPEC's folded model counts (n_batch, n_bins), without background."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        if theta.shape[1] != len(self.free_indices):
            raise PyXspecError(f"theta has {theta.shape[1]} columns; the free parameters are "
                               f"XSPEC numbers {self.free_indices}")
        if os.getpid() == self.origin_pid:
            xs = self._live if self._live is not None else resolve_backend(self.backend)

            def fold_here(rows):
                with preserved_state(xs):
                    return self._fold_rows(xs, rows)
            # Many rows: progress, a time estimate, and XSPEC worker processes.
            return fold_many(self, theta, fold_here, self._digest(), self.workers,
                             label=f" (spectrum {self.number})")
        return self._fold_rows(self._restored(), theta)

    def _digest(self) -> str:
        return hashlib.sha256(self.xcm_text.encode()).hexdigest()

    # -- XSPEC ------------------------------------------------------------
    def _fold_rows(self, xs, theta) -> np.ndarray:
        model = xs.AllModels(1)
        folded_model = xs.AllModels(self.group)
        out = np.empty((theta.shape[0], self.n_bins))
        scale = self.exposure * self.areascal
        for k, row in enumerate(theta):
            model.setPars({i: float(v) for i, v in zip(self.free_indices, row)})
            folded = np.asarray(folded_model.folded(self.number), dtype=np.float64)
            if folded.size != self.n_bins:
                raise PyXspecError(f"spectrum {self.number}: XSPEC now folds {folded.size} "
                                   f"noticed bins, the simulator was built for {self.n_bins}")
            out[k] = folded * scale
        return out

    def _restored(self):
        key = (self.backend, self._digest())
        if key in _RESTORED:
            return _RESTORED[key]
        xs = resolve_backend(self.backend)
        xs.Xset.chatter = 0
        xs.Xset.logChatter = 0
        with tempfile.TemporaryDirectory(prefix="xspec_sbi_") as folder:
            path = os.path.join(folder, "session.xcm")
            with open(path, "w") as f:
                f.write(self.xcm_text)
            here = os.getcwd()
            os.chdir(self.cwd)
            try:
                xs.Xset.restore(path)
                restored = [p.index for p in read_parameters(xs.AllModels(1), 1) if p.free]
            except Exception as exc:  # XSPEC raises bare Exceptions
                raise PyXspecError(
                    f"a worker process could not rebuild the XSPEC session of model "
                    f"{self.model.expression!r} from Xset.save's file ({exc}). Local models "
                    "added with AllModels.addPyMod (or lmod) exist only in the process that "
                    "added them: run with workers=1 (sbi_fit(..., workers=1))") from exc
            finally:
                os.chdir(here)
        if tuple(restored) != self.free_indices:
            raise PyXspecError(f"a worker process rebuilt model {self.model.expression!r} with "
                               f"free parameters {tuple(restored)}, not {self.free_indices}; "
                               "run with workers=1")
        # The saved file should carry them; set them anyway, they change model values.
        xs.Xset.abund = self.settings.abund
        xs.Xset.xsect = self.settings.xsect
        _RESTORED.clear()
        _RESTORED[key] = xs
        return xs


class XspecPathFactory:
    """``(session, use_background) -> simulator`` through XSPEC: a Session's ``simulator_factory``.

    Parameters
    ----------
    xspec : module
        The live PyXspec module (or its test double) the session was read from.
    """

    def __init__(self, xspec):
        self.xspec = xspec

    def __call__(self, session, use_background: bool = True):
        return xspec_path_simulator(session, self.xspec, use_background)

    def __repr__(self):
        return f"XspecPathFactory({getattr(self.xspec, '__name__', type(self.xspec).__name__)})"


def xspec_path_simulator(session, xspec=None, use_background: bool = True, workers=None):
    """XSPEC-path simulator of a session read from PyXspec (joint when several spectra).

    ``workers``: XSPEC worker processes for large batches (see
    :class:`XspecPathSimulator`).
    """
    xs = xspec_module(xspec)
    records = read_spectra_records(xs)
    if len(records) != len(session.spectra):
        raise PyXspecError(f"XSPEC has {len(records)} spectra, the session {len(session.spectra)}")
    free = tuple(p.index for p in read_parameters(xs.AllModels(1), 1) if p.free)
    if len(free) != len(session.model.free_parameters):
        raise PyXspecError("the free parameters in XSPEC differ from the session's")
    text = save_session_text(xs)
    parts = []
    for record, spectrum in zip(records, session.spectra):
        bkg = scale = None
        if use_background and spectrum.background is not None:
            bkg = np.asarray(spectrum.binned_background_counts(), dtype=np.float64)
            scale = np.broadcast_to(np.asarray(spectrum.background_scale(), dtype=np.float64),
                                    bkg.shape).copy()
        parts.append(XspecPathSimulator(
            backend=backend_name(xs), xcm_text=text, cwd=os.getcwd(), settings=session.settings,
            model=session.model, number=record.number, group=record.group, free_indices=free,
            exposure=record.exposure, areascal=spectrum.binned_areascal(),
            background_counts=bkg, background_scale=scale, live=xs, workers=workers))
    return parts[0] if len(parts) == 1 else JointSimulator(tuple(parts))


def choose_simulator(session, xspec=None, prefer: str | None = None, use_background: bool = True):
    """The engine's simulator when it can evaluate the model, else the XSPEC path.

    Parameters
    ----------
    session : Session
    xspec : module, optional
        Needed for the XSPEC path only.
    prefer : {None, "engine", "xspec"}
        Force one path; None chooses (engine when the model builds and its
        components probe fine in a child process).
    """
    if prefer not in (None, "engine", "xspec"):
        raise ValueError(f"prefer={prefer!r}: expected None, 'engine' or 'xspec'")
    if prefer != "xspec" and not isinstance(session.model, XspecModel):
        try:
            session.model.probe(session.settings)
            return session.simulator(use_background)
        except (ModelError, ModelUnavailableError):
            if prefer == "engine":
                raise
    elif prefer == "engine":
        raise ModelError(f"the engine cannot evaluate {session.model.expression!r}: "
                         f"{session.model.reason}")
    if xspec is None and isinstance(session.simulator_factory, XspecPathFactory):
        xspec = session.simulator_factory.xspec   # the module the session was read from
    return xspec_path_simulator(session, xspec, use_background)
