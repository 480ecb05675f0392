"""Which XSPEC model library this process uses, and loading it.

Two libraries can serve the engine: the one of the user's HEASoft
(``$HEADAS/lib``) and the one bundled with the ``xspectrampoline`` wheel
(XSPEC 12.15). The environment variable ``XSPEC_SBI_LIBRARY`` chooses:

``auto`` (or unset)
    ``$HEADAS``'s library when ``HEADAS`` is set, else the bundled one.
``headas``
    ``$HEADAS``'s library; an error when ``HEADAS`` is unset.
``bundled``
    The bundled library, whatever ``HEADAS`` says (for a HEASoft whose
    libraries cannot be loaded; the PyXspec agreement check then shows
    whether it folds as the user's XSPEC does).

The three shared libraries are opened here, in xspectrampoline's order and
with its ``RTLD_GLOBAL`` mode (libXSFunctions of XSPEC 12.9.1 does not
record its own dependencies, so they must already be global), and every
failure names the file or the symbol at fault. The wheel's own import is not
used: it hides the loader's message behind ``NoLibXSPEC()``.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV_VAR", "CHOICES", "XspecLibraryError", "LibrarySource", "LoadedLibrary",
           "bundled_headas", "choose_source", "load", "quiet_stdout"]

ENV_VAR = "XSPEC_SBI_LIBRARY"
CHOICES = ("auto", "headas", "bundled")
# xspectrampoline's order: libXS first, whose symbols the others use.
LIBRARY_FILES = ("libXS", "libXSFunctions", "libXSUtil")
# Functions the engine needs beyond the models (initialisation and settings).
REQUIRED_SYMBOLS = ("FNINIT", "FGABND", "FGSOLR", "FGXSCT", "FGDATD", "FPSOLR", "FPXSCT")


class XspecLibraryError(RuntimeError):
    """The XSPEC library cannot be loaded or is set up wrongly."""


@dataclass(frozen=True)
class LibrarySource:
    """Where the model library comes from.

    Attributes
    ----------
    headas : Path
        The HEASoft tree: libraries in ``headas/lib``, data in ``spectral/``.
    origin : str
        ``"headas"`` ($HEADAS) or ``"bundled"`` (the xspectrampoline wheel).
    """

    headas: Path
    origin: str

    def __str__(self) -> str:
        if self.origin == "bundled":
            return f"the library bundled with xspectrampoline ({self.headas})"
        return f"$HEADAS's library (HEADAS={self.headas})"


def bundled_headas() -> Path:
    """The HEASoft-like tree inside the installed xspectrampoline wheel.

    Found without importing the wheel: its import loads libraries from
    ``$HEADAS`` at once.
    """
    spec = importlib.util.find_spec("xspectrampoline")
    if spec is None or not spec.submodule_search_locations:
        raise XspecLibraryError("the xspectrampoline package (XSPEC's bundled library) is not "
                                "installed; install it or point $HEADAS at a HEASoft "
                                f"installation and set {ENV_VAR}=headas")
    package = Path(list(spec.submodule_search_locations)[0])
    trees = sorted(p for p in package.glob("LibXSPEC_v*") if (p / "lib").is_dir())
    if not trees:
        raise XspecLibraryError(f"no LibXSPEC_v*/lib folder inside {package}: the "
                                "xspectrampoline installation is incomplete")
    return trees[-1]


def choose_source(environ=None) -> LibrarySource:
    """The library :data:`ENV_VAR` and ``HEADAS`` select (see the module docstring)."""
    environ = os.environ if environ is None else environ
    choice = (environ.get(ENV_VAR) or "auto").strip().lower()
    if choice not in CHOICES:
        raise XspecLibraryError(f"{ENV_VAR}={environ.get(ENV_VAR)!r}: expected one of "
                                + ", ".join(CHOICES))
    headas = (environ.get("HEADAS") or "").strip()
    if choice == "headas" and not headas:
        raise XspecLibraryError(f"{ENV_VAR}=headas but HEADAS is not set")
    if choice == "bundled" or not headas:
        return LibrarySource(bundled_headas(), "bundled")
    return LibrarySource(Path(headas), "headas")


@dataclass(frozen=True, eq=False)
class LoadedLibrary:
    """The opened libraries of one :class:`LibrarySource`.

    Attributes
    ----------
    source : LibrarySource
    handles : tuple of (Path, ctypes.CDLL)
        In loading order; :meth:`find` searches libXSFunctions first.
    shared : bool
        libXSFunctions was already loaded in this process (by PyXspec): it
        was initialised there, and its abundance and cross-section tables are
        XSPEC's own, which a second ``FNINIT`` would reset to angr/vern.
    """

    source: LibrarySource
    handles: tuple
    shared: bool = False

    @property
    def functions(self) -> ctypes.CDLL:
        """libXSFunctions (the model functions)."""
        return self.handles[1][1]

    def find(self, symbol: str):
        """A ctypes function for ``symbol`` from the first library that exports it.

        Raises
        ------
        AttributeError
            None of the libraries exports it.
        """
        order = (self.handles[1], self.handles[2], self.handles[0])
        for _path, handle in order:
            try:
                return getattr(handle, symbol)
            except AttributeError:
                continue
        raise AttributeError(symbol)


def _shadowing(source: LibrarySource) -> list:
    """Folders of ``LD_LIBRARY_PATH`` with XSPEC libraries of another installation.

    The wheel's libraries find each other through ``RUNPATH=$ORIGIN``, which
    the dynamic loader consults only after ``LD_LIBRARY_PATH``: another
    XSPEC's ``libXSUtil.so`` there is loaded in place of the wheel's.
    """
    own = (source.headas / "lib").resolve()
    out = []
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if folder and Path(folder).is_dir() and Path(folder).resolve() != own and any(
                (Path(folder) / f"{stem}.so").exists()
                for stem in LIBRARY_FILES + ("libXSModel",)):
            out.append(folder)
    return out


def _hint(source: LibrarySource) -> str:
    if source.origin == "bundled":
        shadow = _shadowing(source)
        if shadow:
            return (" LD_LIBRARY_PATH lists " + ", ".join(shadow) + ", whose XSPEC libraries "
                    "the dynamic loader takes in place of the wheel's (it reads LD_LIBRARY_PATH "
                    "before their RUNPATH): start Python without those folders in "
                    "LD_LIBRARY_PATH to use the bundled library.")
        return " Reinstall xspectrampoline."
    return (f" Point $HEADAS at a HEASoft installation whose XSPEC shared libraries load, or "
            f"set {ENV_VAR}=bundled to use the library bundled with xspectrampoline (the "
            "PyXspec agreement check then tells whether it folds as your XSPEC).")


@contextlib.contextmanager
def quiet_stdout():
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


def load(source: LibrarySource) -> LoadedLibrary:
    """Open the three libraries of ``source`` and run XSPEC's ``FNINIT``.

    Raises
    ------
    XspecLibraryError
        Naming the missing file, the loader's message (an unresolved
        dependency or symbol), or the missing function.
    """
    ext = "dylib" if sys.platform == "darwin" else "so"
    lib_dir = source.headas / "lib"
    shared = _already_loaded(lib_dir / f"libXSFunctions.{ext}")
    handles = []
    for stem in LIBRARY_FILES:
        path = lib_dir / f"{stem}.{ext}"
        if not path.is_file():
            static = lib_dir / f"{stem}.a"
            why = (f" (only the static archive {static.name} is there: XSPEC 12.9 and older "
                   "install libXS that way, which cannot be loaded at run time)"
                   if static.is_file() else "")
            raise XspecLibraryError(f"cannot load {source}: {path} is missing{why}."
                                    + _hint(source))
        try:
            handles.append((path, ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)))
        except OSError as exc:  # names the unresolved library or symbol
            raise XspecLibraryError(f"cannot load {source}: {path} fails to load: {exc}."
                                    + _hint(source)) from exc
    loaded = LoadedLibrary(source, tuple(handles), shared)
    missing = []
    for symbol in REQUIRED_SYMBOLS:
        try:
            loaded.find(symbol)
        except AttributeError:
            missing.append(symbol)
    if missing:
        raise XspecLibraryError(f"cannot use {source}: function(s) {', '.join(missing)} are in "
                                "none of " + ", ".join(str(p) for p, _ in handles) + "."
                                + _hint(source))
    if not shared:
        _initialise(loaded)
    return loaded


def _already_loaded(path: Path) -> bool:
    """True when ``path`` is loaded in this process already (PyXspec loaded it)."""
    if not path.is_file():
        return False
    try:
        ctypes.CDLL(str(path), mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def _initialise(loaded: LoadedLibrary) -> None:
    """``FNINIT`` with ``HEADAS`` naming the library's own tree.

    XSPEC finds its data (``spectral/manager``) through ``$HEADAS`` when it
    initialises. A user's HEADAS is put back afterwards (PyXspec needs it);
    an unset one stays set to the bundled tree, as xspectrampoline leaves
    it, so that spawned workers and XSPEC's later look-ups agree.
    """
    before = os.environ.get("HEADAS")
    os.environ["HEADAS"] = str(loaded.source.headas)
    try:
        with quiet_stdout():  # FNINIT announces the default tables
            loaded.find("FNINIT")()
    finally:
        if before is not None:
            os.environ["HEADAS"] = before
