"""xspec_sbi: simulation-based inference for X-ray spectral fitting.

>>> import xspec_sbi
>>> result = xspec_sbi.sbi_fit(spectra="src.pha", model="tbabs*powerlaw", ignore="**-0.3 10.-**",
...                            prior={"powerlaw.norm": ("log", 0.01, 100)})
>>> print(result.table())
"""
from xspec_sbi._version import __version__

# The option records of sbi_fit live in xspec_sbi.options; the root stays small.
__all__ = ["sbi_fit", "Session", "SBIResult", "__version__"]

#: Where each public name lives. They are imported on first use: sbi_fit brings torch
#: and sbi, Session astropy and scipy, and a process that needs only the model library
#: (a pool worker, the child that probes a model) imports this package first: 0.55 s of
#: each such start-up went on imports it did not use.
_PUBLIC = {"sbi_fit": "xspec_sbi.api", "Session": "xspec_sbi.session", "SBIResult": "xspec_sbi.result"}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xspec_sbi' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
