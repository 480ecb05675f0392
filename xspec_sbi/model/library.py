"""XSPEC's model library: settings, one model call, and probing models.

This module is the only place that calls the C library: it loads it (which
library, and how, is :mod:`xspec_sbi.model.loading`), checks that its data
tree is usable, sets XSPEC's abundance and cross-section tables, calls one
model function on one energy grid (by the interface ``model.dat`` names,
:mod:`xspec_sbi.model.functions`), and probes in a child process whether a
model can run at all.

The library is not thread-safe (``tbabs`` crashed under threads): run
models from one thread per process, and parallelise with processes that are
each set up with :func:`configure` (XSPEC's settings are per process).
"""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from xspec_sbi.model import loading
from xspec_sbi.model.functions import ModelFunction, bind, bind_rows, model_function
from xspec_sbi.model.loading import XspecLibraryError, quiet_stdout

__all__ = [
    "XspecLibraryError",
    "ModelUnavailableError",
    "XspecSettings",
    "library",
    "model_dat_path",
    "configure",
    "current_settings",
    "call_model",
    "call_model_rows",
    "probe_models",
]

# XSPEC's start-up defaults (Xset.abund, Xset.xsect).
DEFAULT_ABUND = "angr"
DEFAULT_XSECT = "vern"


class ModelUnavailableError(XspecLibraryError):
    """A model cannot be evaluated here (missing data files, crash, zeros)."""


@dataclass(frozen=True)
class XspecSettings:
    """XSPEC settings that change model values and are kept per process.

    Parameters
    ----------
    abund : str
        Solar abundance table, as ``Xset.abund`` (``"angr"``, ``"wilm"``, ...).
    xsect : str
        Photoelectric cross-section table, as ``Xset.xsect`` (``"vern"``, ...).
    """

    abund: str = DEFAULT_ABUND
    xsect: str = DEFAULT_XSECT


class _Library:
    """Handles to the loaded library, its settings functions and its model callers."""

    def __init__(self, source: loading.LibrarySource | None = None):
        self.loaded = loading.load(source or loading.choose_source())
        self.source = self.loaded.source
        self.headas = self.source.headas
        self.functions = self.loaded.functions
        find = self.loaded.find
        self.FGABND, self.FGSOLR, self.FGXSCT, self.FGDATD, self.FPSOLR, self.FPXSCT = (
            find(n) for n in ("FGABND", "FGSOLR", "FGXSCT", "FGDATD", "FPSOLR", "FPXSCT"))
        self.FGABND.restype = ctypes.c_float
        self.FGABND.argtypes = [ctypes.c_char_p]
        self.FGSOLR.restype = ctypes.c_char_p
        self.FGXSCT.restype = ctypes.c_char_p
        self.FGDATD.restype = ctypes.c_char_p
        self.FPSOLR.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        self.FPXSCT.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        self._callers: dict[ModelFunction, object] = {}
        self._row_callers: dict[ModelFunction, object] = {}
        self._check_data_tree()

    def _check_data_tree(self):
        # A $HEADAS without spectral/ loads fine but every abundance reads 0,
        # and tbabs then silently absorbs with hydrogen only.
        if self.FGABND(b"He") <= 0.0 or self.FGABND(b"Fe") <= 0.0:
            raise XspecLibraryError(
                f"XSPEC's data tree under HEADAS={self.headas} is unusable: the "
                "abundance of He/Fe reads 0, so absorption models would be wrong. "
                "Point $HEADAS at a HEASoft installation with spectral/manager, or "
                f"set {loading.ENV_VAR}=bundled (or unset HEADAS) to use the library "
                "bundled with xspectrampoline."
            )

    def caller(self, function: ModelFunction):
        """Python caller of one model function (see :func:`xspec_sbi.model.functions.bind`)."""
        try:
            return self._callers[function]
        except KeyError:
            pass
        try:
            fn = self.loaded.find(function.symbol)
        except AttributeError:
            raise ModelUnavailableError(
                f"symbol {function.symbol!r} ({function.interface} interface of model.dat's "
                f"{function.listed!r}) is not in {self.source}"
            ) from None
        self._callers[function] = bind(fn, function.interface)
        return self._callers[function]

    def rows_caller(self, function: ModelFunction):
        """Caller of one model function for many parameter rows (:func:`~xspec_sbi.model.functions.bind_rows`)."""
        if function not in self._row_callers:
            self.caller(function)          # finds the symbol, or names the missing one
            self._row_callers[function] = bind_rows(self.loaded.find(function.symbol), function.interface)
        return self._row_callers[function]


@lru_cache(maxsize=1)
def library() -> _Library:
    """The process's loaded library (loaded and checked on first use)."""
    lib = _Library()
    # XSPEC starts at angr/vern; a child process must not inherit another
    # table silently, so make the default explicit. Not when PyXspec loaded
    # the library first: its tables are then the user's Xset.abund/xsect.
    if not lib.loaded.shared:
        _apply(lib, XspecSettings())
    return lib


def model_dat_path() -> Path:
    """Path of XSPEC's ``model.dat`` for the loaded library."""
    lib = library()
    candidates = [
        Path(lib.FGDATD().decode()) / "model.dat",
        lib.headas / "spectral" / "manager" / "model.dat",
        lib.headas / ".." / "spectral" / "manager" / "model.dat",
    ]
    for p in candidates:
        if p.is_file():
            return p.resolve()
    raise XspecLibraryError(
        f"model.dat not found under HEADAS={lib.headas} (looked in "
        + ", ".join(str(c) for c in candidates) + ")"
    )


def _apply(lib: _Library, settings: XspecSettings) -> None:
    with quiet_stdout():
        _apply_loud(lib, settings)


def _apply_loud(lib: _Library, settings: XspecSettings) -> None:
    ierr = ctypes.c_int(0)
    lib.FPSOLR(settings.abund.encode(), ctypes.byref(ierr))
    if ierr.value != 0:
        raise XspecLibraryError(
            f"abundance table {settings.abund!r} (Xset.abund) is not known to XSPEC"
        )
    lib.FPXSCT(settings.xsect.encode(), ctypes.byref(ierr))
    if ierr.value != 0:
        raise XspecLibraryError(
            f"cross-section table {settings.xsect!r} (Xset.xsect) is not known to XSPEC"
        )


def configure(settings: XspecSettings) -> None:
    """Set XSPEC's abundance and cross-section tables in this process.

    Call it in every worker process (it is the pool initializer of
    :mod:`xspec_sbi.forward.simulate`): a spawned child starts at angr/vern.
    """
    lib = library()
    if current_settings() != settings:
        _apply(lib, settings)


def current_settings() -> XspecSettings:
    """The abundance and cross-section tables XSPEC uses in this process."""
    lib = library()
    return XspecSettings(abund=lib.FGSOLR().decode().strip(), xsect=lib.FGXSCT().decode().strip())


def call_model(function: str | ModelFunction, energy_edges: np.ndarray, params: np.ndarray,
               spectrum: int = 1, init: str = "", flux: np.ndarray | None = None) -> np.ndarray:
    """Evaluate one XSPEC model function once.

    Parameters
    ----------
    function : str or ModelFunction
        The function as ``model.dat`` lists it (``"C_powerLaw"``, ``"xsphab"``,
        ``"c_xszbabs"``, ``"F_ismabs"``): its prefix says the interface
        (:func:`xspec_sbi.model.functions.model_function`).
    energy_edges : ndarray (n_e + 1,), keV
    params : ndarray (n_par,)
        Parameter values without the additive norm, in ``model.dat`` order.
    spectrum : int
        XSPEC's spectrum number (``ifl``), passed through.
    init : str
        Initialisation string (C and C++ interfaces only).
    flux : ndarray (n_e,), optional
        The input of a convolution (``con``) model: photons cm^-2 s^-1 per
        bin (or the factor of a multiplicative operand); XSPEC's function
        modifies it in place, here a copy. Zeros when not given.

    Returns
    -------
    flux : ndarray (n_e,), float64
        Photons cm^-2 s^-1 per bin for additive models (norm 1), or the
        dimensionless factor for multiplicative ones.
    """
    if not isinstance(function, ModelFunction):
        function = model_function(function)
    lib = library()
    first = function not in lib._callers
    caller = lib.caller(function)
    if first:  # first calls print banners (tbabs's reference text)
        with quiet_stdout():
            return caller(energy_edges, params, spectrum, init, flux)
    return caller(energy_edges, params, spectrum, init, flux)



def call_model_rows(function: str | ModelFunction, energy_edges: np.ndarray,
                    params: np.ndarray, spectrum: int = 1, init: str = "") -> np.ndarray:
    """Evaluate one XSPEC model function for many parameter rows on one grid.

    The same numbers as :func:`call_model` row by row, without its per-call
    set-up (:func:`xspec_sbi.model.functions.bind_rows`).

    Parameters
    ----------
    function : str or ModelFunction
    energy_edges : ndarray (n_e + 1,), keV
    params : ndarray (n_rows, n_par)
        Parameter values without the additive norm, in ``model.dat`` order.
    spectrum : int
    init : str

    Returns
    -------
    flux : ndarray (n_rows, n_e), float64
        Photons cm^-2 s^-1 per bin (norm 1), or the multiplicative factor.
    """
    if not isinstance(function, ModelFunction):
        function = model_function(function)
    params = np.asarray(params, dtype=np.float64)
    if len(params) and function not in library()._callers:
        # the first call prints banners (tbabs's reference text): made by call_model, quietly
        first = call_model(function, energy_edges, params[0], spectrum, init)[None]
        return np.concatenate([first, call_model_rows(function, energy_edges, params[1:],
                                                      spectrum, init)])
    return library().rows_caller(function)(energy_edges, params, spectrum, init)


_PROBE_CODE = r"""
import json, sys, os
import numpy as np
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # models chatter on stdout
from xspec_sbi.model import library as xslibrary
req = json.loads(sys.argv[1])
xslibrary.configure(xslibrary.XspecSettings(**req["settings"]))
edges = np.geomspace(0.1, 20.0, 401)
out = {}
for name, function, kind, params in req["models"]:
    # A convolution gets a flat input: XSPEC 12.9.1's cflux divides by its sum.
    given = np.ones(edges.size - 1) if kind == "con" else None
    flux = xslibrary.call_model(function, edges, np.asarray(params, float), flux=given)
    finite = bool(np.all(np.isfinite(flux)))
    out[name] = {"finite": finite, "all_zero": bool(np.all(flux == 0.0))}
sys.stderr.write("PROBE-RESULT " + json.dumps(out) + "\n")
"""

_probed: dict[tuple, dict] = {}


def probe_models(models, settings: XspecSettings | None = None, timeout: float = 120.0) -> None:
    """Check in a child process that each model evaluates to usable numbers.

    Models whose data files are absent return zeros (the apec family) or
    abort the whole process; neither may reach a user's fit or a worker pool.

    Parameters
    ----------
    models : iterable of (name, function, kind, default_params)
        ``function`` as ``model.dat`` lists it; ``kind`` is ``"add"``, ``"mul"``
        or ``"con"`` (a convolution, probed on a flat input flux).
    settings : XspecSettings, optional

    Raises
    ------
    ModelUnavailableError
        Naming the model that crashed, returned non-finite values or, for an
        additive model, only zeros.
    """
    settings = settings or current_settings()
    todo = [m for m in models if (m[0], settings) not in _probed]
    if todo:
        req = {"settings": {"abund": settings.abund, "xsect": settings.xsect},
               "models": [[n, s, k, list(map(float, p))] for n, s, k, p in todo]}
        proc = subprocess.run([sys.executable, "-c", _PROBE_CODE, json.dumps(req)],
                              capture_output=True, text=True, timeout=timeout)
        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE-RESULT ")]
        if proc.returncode != 0 or not line:
            names = ", ".join(m[0] for m in todo)
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            raise ModelUnavailableError(
                f"evaluating model component(s) {names} killed a test process "
                f"(exit code {proc.returncode}); their data files are probably missing "
                f"from HEADAS={library().headas}. Last messages:\n{tail}"
            )
        result = json.loads(line[-1][len("PROBE-RESULT "):])
        for name, *_ in todo:
            _probed[(name, settings)] = result[name]
    for name, _function, kind, _params in models:
        r = _probed[(name, settings)]
        if not r["finite"]:
            raise ModelUnavailableError(f"model {name!r} returns non-finite values here")
        if kind == "add" and r["all_zero"]:
            raise ModelUnavailableError(
                f"model {name!r} returns only zeros: the data files it needs are "
                f"not in XSPEC's data tree at {library().headas} (set $HEADAS to a "
                "full HEASoft installation to use it)"
            )
