"""Where the PyXspec module comes from, and the adapter's errors.

Every function of :mod:`xspec_sbi.pyxspec` takes an optional ``xspec``
argument: the PyXspec module (default: ``import xspec``) or an object with
the same documented attributes (the test double of ``tests/``).
"""
from __future__ import annotations

import importlib

__all__ = ["PyXspecError", "PyXspecUnavailableError", "JointGroupsError",
           "xspec_module", "available", "backend_name", "resolve_backend"]


class PyXspecError(ValueError):
    """A PyXspec session that the adapter cannot turn into a Session."""


class PyXspecUnavailableError(ImportError):
    """``import xspec`` failed: PyXspec (HEASoft) is not installed or set up."""


class JointGroupsError(NotImplementedError):
    """Data groups whose models are not all tied to group 1 (future work)."""


def xspec_module(xspec=None):
    """The PyXspec module to use: ``xspec`` if given, else ``import xspec``."""
    if xspec is not None:
        return xspec
    try:
        import xspec as module  # noqa: PLC0415 - the only import of PyXspec
    except Exception as exc:  # PyXspec raises more than ImportError without HEADAS
        raise PyXspecUnavailableError(
            f"PyXspec is not importable here ({exc!r}); install HEASoft with PyXspec "
            "and initialise it (source $HEADAS/headas-init.sh)") from exc
    return module


def available() -> bool:
    """True when ``import xspec`` (PyXspec) works in this process."""
    try:
        xspec_module()
    except PyXspecUnavailableError:
        return False
    return True


def backend_name(xs) -> str:
    """Import path (``"module"`` or ``"module:attribute"``) that gives ``xs`` back.

    Worker processes import PyXspec anew from this name. A module gives its
    ``__name__``; another object must carry an ``import_path`` attribute.
    """
    import types
    if isinstance(xs, types.ModuleType):
        return xs.__name__
    path = getattr(xs, "import_path", None)
    if not isinstance(path, str):
        raise PyXspecError(f"{type(xs).__name__} is not a module and has no 'import_path'; "
                           "worker processes cannot import it")
    return path


def resolve_backend(name: str):
    """Import a backend named by :func:`backend_name`."""
    module_name, _, attribute = name.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module
