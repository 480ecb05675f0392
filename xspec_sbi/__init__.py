"""xspec_sbi: simulation-based inference for X-ray spectral fitting.

>>> import xspec_sbi
>>> result = xspec_sbi.sbi_fit(spectra="src.pha", model="tbabs*powerlaw", ignore="**-0.3 10.-**")
>>> print(result.table())
"""
__version__ = "0.1.0"

from .session import Session  # noqa: E402
from .result import SBIResult  # noqa: E402
from .api import sbi_fit  # noqa: E402

__all__ = ["sbi_fit", "Session", "SBIResult", "__version__"]
