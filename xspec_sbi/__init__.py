"""xspec_sbi: simulation-based inference for X-ray spectral fitting.

>>> import xspec_sbi
>>> result = xspec_sbi.sbi_fit(spectra="src.pha", model="tbabs*powerlaw", ignore="**-0.3 10.-**",
...                            prior={"powerlaw.norm": ("log", 0.01, 100)})
>>> print(result.table())
"""
from xspec_sbi._version import __version__
from xspec_sbi.result import SBIResult
from xspec_sbi.session import Session

# The option records of sbi_fit live in xspec_sbi.options; the root stays small.
__all__ = ["sbi_fit", "Session", "SBIResult", "__version__"]


def __getattr__(name):
    # sbi_fit brings torch and sbi; the engine (spectra, models, fakeit, fit,
    # chain) stays importable without them.
    if name == "sbi_fit":
        from xspec_sbi.api import sbi_fit
        return sbi_fit
    raise AttributeError(f"module 'xspec_sbi' has no attribute {name!r}")
