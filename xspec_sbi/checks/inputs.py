"""What the out-of-distribution and posterior predictive checks share: their error and input check."""
from __future__ import annotations

import numpy as np

__all__ = ["TrustError", "as_spectra"]


class TrustError(ValueError):
    """Inputs that a trust check cannot use (names the argument at fault)."""


def as_spectra(x, what: str, ndim: int) -> np.ndarray:
    """Counts as a float array of ``ndim`` axes, refused (naming ``what``) if negative or not finite.

    Parameters
    ----------
    x : array_like, (n_bins,) or (n, n_bins), counts
        Spectra.
    what : str
        Argument name, for messages.
    ndim : int
        1 for one spectrum, 2 for a set.

    Returns
    -------
    numpy.ndarray, float
    """
    arr = np.asarray(x, dtype=float)
    if arr.ndim != ndim:
        shape = "(n_bins,)" if ndim == 1 else "(n, n_bins)"
        raise TrustError(f"{what} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise TrustError(f"{what} must hold finite, non-negative counts")
    return arr
