"""Spectra the Poisson statistics would mislead on, found when they are loaded.

An all-zero spectrum (after ``ignore``/``notice``) gives only upper limits;
non-integer counts are a rate-scaled or background-subtracted spectrum, which
C-stat and W-stat (Poisson counts) do not describe. Both are accepted, with a
warning that names the file, since a user may mean them.
"""
from __future__ import annotations

import logging

import numpy as np

__all__ = ["doubtful_counts", "warn_doubtful"]

log = logging.getLogger("xspec_sbi")


def doubtful_counts(spectrum) -> list[str]:
    """What is doubtful about ``spectrum``'s counts, one sentence each (empty: nothing).

    Parameters
    ----------
    spectrum : Spectrum
        With its notice state; its ``label`` names it in the sentences.
    """
    out = []
    counts = np.asarray(spectrum.binned_counts(), dtype=float)
    if counts.size and not np.any(counts):
        out.append(f"{spectrum.label}: every noticed bin has 0 counts; the posterior then shows "
                   "only upper limits (check the file, --ignore and --notice)")
    raw = np.asarray(spectrum.counts, dtype=float)
    frac = np.abs(raw - np.round(raw))
    if np.any(frac > 1e-6):
        i = int(np.argmax(frac))
        out.append(f"{spectrum.label}: counts are not integers ({raw[i]:g} in channel {i + 1}); "
                   "C-stat and W-stat assume Poisson counts: give the counts spectrum, not a "
                   "rate-scaled or background-subtracted one")
    return out


def warn_doubtful(spectra) -> None:
    """Log :func:`doubtful_counts` of each spectrum as a warning."""
    for s in spectra:
        for line in doubtful_counts(s):
            log.warning("%s", line)
