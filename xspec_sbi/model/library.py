"""XSPEC's model library, loaded through the ``xspectrampoline`` wheel.

This module is the only place that talks to the C library: it loads it,
checks that its data tree is usable, sets XSPEC's abundance and
cross-section tables, calls one model function on one energy grid, and
probes in a child process whether a model can run at all.

The library is not thread-safe (``tbabs`` crashed under threads): run
models from one thread per process, and parallelise with processes that are
each set up with :func:`configure` (XSPEC's settings are per process).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "XspecLibraryError",
    "ModelUnavailableError",
    "XspecSettings",
    "library",
    "model_dat_path",
    "configure",
    "current_settings",
    "call_model",
    "probe_models",
]

# XSPEC's start-up defaults (Xset.abund, Xset.xsect).
DEFAULT_ABUND = "angr"
DEFAULT_XSECT = "vern"


class XspecLibraryError(RuntimeError):
    """The XSPEC library cannot be loaded or is set up wrongly."""


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
    """Handles to the loaded library and its settings functions."""

    def __init__(self):
        try:
            with _quiet_stdout():  # FNINIT announces the default tables
                import xspectrampoline
        except Exception as exc:  # the wheel raises its own NoLibXSPEC
            raise XspecLibraryError(
                "could not load XSPEC's model library through xspectrampoline "
                f"(HEADAS={os.environ.get('HEADAS')!r}): {exc!r}. If $HEADAS is set, "
                "check it points at a HEASoft installation, or unset it to use the "
                "bundled library."
            ) from exc
        self.headas = Path(xspectrampoline.get_HEADAS())
        self.functions = xspectrampoline.get_libraries().lib_xs_functions
        f = self.functions
        f.FGABND.restype = ctypes.c_float
        f.FGABND.argtypes = [ctypes.c_char_p]
        f.FGSOLR.restype = ctypes.c_char_p
        f.FGXSCT.restype = ctypes.c_char_p
        f.FGDATD.restype = ctypes.c_char_p
        f.FPSOLR.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        f.FPXSCT.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        self._symbols: dict[str, object] = {}
        self._check_data_tree()

    def _check_data_tree(self):
        # A $HEADAS without spectral/ loads fine but every abundance reads 0,
        # and tbabs then silently absorbs with hydrogen only.
        if self.functions.FGABND(b"He") <= 0.0 or self.functions.FGABND(b"Fe") <= 0.0:
            raise XspecLibraryError(
                f"XSPEC's data tree under HEADAS={self.headas} is unusable: the "
                "abundance of He/Fe reads 0, so absorption models would be wrong. "
                "Point $HEADAS at a HEASoft installation with spectral/manager, or "
                "unset it to use the library bundled with xspectrampoline."
            )

    def symbol(self, name: str):
        """ctypes function for a C-interface model symbol (``C_...``)."""
        try:
            return self._symbols[name]
        except KeyError:
            pass
        try:
            fn = getattr(self.functions, name)
        except AttributeError:
            raise ModelUnavailableError(
                f"symbol {name!r} is not in XSPEC's library at {self.headas}"
            ) from None
        fn.argtypes = [
            ctypes.POINTER(ctypes.c_double), ctypes.c_int,
            ctypes.POINTER(ctypes.c_double), ctypes.c_int,
            ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
            ctypes.c_char_p,
        ]
        fn.restype = None
        self._symbols[name] = fn
        return fn


@lru_cache(maxsize=1)
def library() -> _Library:
    """The process's loaded library (loaded and checked on first use)."""
    lib = _Library()
    # XSPEC starts at angr/vern; a child process must not inherit another
    # table silently, so make the default explicit.
    _apply(lib, XspecSettings())
    return lib


def model_dat_path() -> Path:
    """Path of XSPEC's ``model.dat`` for the loaded library."""
    lib = library()
    candidates = [
        Path(lib.functions.FGDATD().decode()) / "model.dat",
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


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level stdout: the library prints banners on first use."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable fd 1 (embedded interpreters): nothing to silence
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _apply(lib: _Library, settings: XspecSettings) -> None:
    with _quiet_stdout():
        _apply_loud(lib, settings)


def _apply_loud(lib: _Library, settings: XspecSettings) -> None:
    ierr = ctypes.c_int(0)
    lib.functions.FPSOLR(settings.abund.encode(), ctypes.byref(ierr))
    if ierr.value != 0:
        raise XspecLibraryError(
            f"abundance table {settings.abund!r} (Xset.abund) is not known to XSPEC"
        )
    lib.functions.FPXSCT(settings.xsect.encode(), ctypes.byref(ierr))
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
    f = library().functions
    return XspecSettings(abund=f.FGSOLR().decode().strip(), xsect=f.FGXSCT().decode().strip())


def call_model(symbol: str, energy_edges: np.ndarray, params: np.ndarray,
               spectrum: int = 1, init: str = "") -> np.ndarray:
    """Evaluate one XSPEC C-interface model function once.

    Parameters
    ----------
    symbol : str
        C symbol, e.g. ``"C_powerLaw"``.
    energy_edges : ndarray (n_e + 1,), keV
    params : ndarray (n_par,)
        Parameter values without the additive norm, in ``model.dat`` order.

    Returns
    -------
    flux : ndarray (n_e,)
        Photons cm^-2 s^-1 per bin for additive models (norm 1), or the
        dimensionless factor for multiplicative ones.
    """
    lib = library()
    first = symbol not in lib._symbols
    fn = lib.symbol(symbol)
    # The C wrapper trusts its caller: pass contiguous float64 only.
    e = np.ascontiguousarray(energy_edges, dtype=np.float64)
    p = np.ascontiguousarray(params, dtype=np.float64)
    n = e.size - 1
    flux = np.zeros(n)
    err = np.zeros(n)
    dptr = ctypes.POINTER(ctypes.c_double)
    args = (e.ctypes.data_as(dptr), n, p.ctypes.data_as(dptr), spectrum,
            flux.ctypes.data_as(dptr), err.ctypes.data_as(dptr), init.encode("ascii"))
    if first:  # first calls print banners (tbabs's reference text)
        with _quiet_stdout():
            fn(*args)
    else:
        fn(*args)
    return flux


_PROBE_CODE = r"""
import json, sys, os
import numpy as np
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # models chatter on stdout
from xspec_sbi.model import library as xslibrary
req = json.loads(sys.argv[1])
xslibrary.configure(xslibrary.XspecSettings(**req["settings"]))
edges = np.geomspace(0.1, 20.0, 401)
out = {}
for name, symbol, kind, params in req["models"]:
    flux = xslibrary.call_model(symbol, edges, np.asarray(params, float))
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
    models : iterable of (name, symbol, kind, default_params)
        ``kind`` is ``"add"`` or ``"mul"``.
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
    for name, _symbol, kind, _params in models:
        r = _probed[(name, settings)]
        if not r["finite"]:
            raise ModelUnavailableError(f"model {name!r} returns non-finite values here")
        if kind == "add" and r["all_zero"]:
            raise ModelUnavailableError(
                f"model {name!r} returns only zeros: the data files it needs are "
                f"not in XSPEC's data tree at {library().headas} (set $HEADAS to a "
                "full HEASoft installation to use it)"
            )
