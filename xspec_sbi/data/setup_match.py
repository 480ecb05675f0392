"""How a spectrum's set-up differs from a network's training spectrum: accepted, listed or refused.

A network trained on one spectrum reads any spectrum with the same noticed
bins; its exposure, ARF, RMF values and background scaling may differ (each
spectrum's own set-up then gives its likelihood), and the differences are
listed in words and numbers. Other bins, or a background where there was
none, are refused with the property and the file named.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SetupError", "setup_differences", "exposure_note"]


class SetupError(ValueError):
    """A spectrum the trained network cannot read (other channels, bins or background layout)."""


def _max_rel(reference, other) -> float:
    """Largest ``|other - reference| / |reference|`` (where the reference is not 0)."""
    a, b = np.asarray(reference, float), np.asarray(other, float)
    scale = np.abs(a)
    d = np.where(scale > 0, np.abs(b - a) / np.where(scale > 0, scale, 1.0), np.abs(b - a) > 0)
    return float(d.max()) if d.size else 0.0


def setup_differences(template, spectrum) -> list[str]:
    """How ``spectrum``'s set-up differs from the training spectrum's, in words and numbers.

    Parameters
    ----------
    template, spectrum : Spectrum
        The network's training spectrum, and one to apply it to.

    Returns
    -------
    list of str
        One entry per property that differs (empty: the same set-up).

    Raises
    ------
    SetupError
        The network cannot read the spectrum: a different number of noticed
        bins, other bin edges, or a background where there was none (or the
        reverse). The message names the property and the file.
    """
    where = spectrum.label
    if spectrum.n_bins != template.n_bins:
        raise SetupError(f"{where}: {spectrum.n_bins} noticed bins, the network reads {template.n_bins} "
                         "(use the same grouping and ignore/notice as the training spectrum)")
    lo_t, hi_t = template.bin_energies()
    lo_s, hi_s = spectrum.bin_energies()
    if _max_rel(lo_t, lo_s) > 1e-3 or _max_rel(hi_t, hi_s) > 1e-3:
        raise SetupError(f"{where}: the noticed bins cover other energies than the training "
                         "spectrum's (another response's channels, or another grouping)")
    if (spectrum.background is None) != (template.background is None):
        has = "has a background" if spectrum.background is not None else "has no background"
        raise SetupError(f"{where}: {has}, the training spectrum "
                         f"{'has none' if template.background is None else 'has one'}")
    out = []
    if not np.isclose(spectrum.exposure, template.exposure, rtol=1e-9):
        out.append(f"exposure x {spectrum.exposure / template.exposure:.3g} "
                   f"({spectrum.exposure:g} s against {template.exposure:g} s)")
    rt, rs = template.response, spectrum.response
    if rt.arf is not None and rs.arf is not None and rt.arf.shape == rs.arf.shape:
        d = _max_rel(rt.arf, rs.arf)
        if d > 0:
            out.append(f"ARF differs by at most {100 * d:.2g} %")
    elif (rt.arf is None) != (rs.arf is None) or (rt.arf is not None and rt.arf.shape != rs.arf.shape):
        out.append("another ARF (other energy grid)")
    mt, ms = rt.matrix, rs.matrix
    if mt.shape != ms.shape:
        out.append("another RMF (other energy grid)")
    else:
        d = abs(mt - ms).max() if hasattr(mt, "toarray") else np.abs(mt - ms).max()
        if d > 1e-9:
            out.append(f"RMF differs by at most {float(d):.2g} (probability per channel)")
    if spectrum.background is not None:
        d = _max_rel(template.background_scale(), spectrum.background_scale())
        if d > 1e-9:
            out.append(f"background scaling differs by at most {100 * d:.2g} %")
    return out


def exposure_note(config, factor: float) -> str:
    """What an exposure factor means for this network: read as an input, or judged only.

    Returns '' for a factor the network was trained for (or 1), else a short note.
    """
    rng_ = getattr(config, "exposure_range", None)
    if np.isclose(factor, 1.0, rtol=1e-9):
        return ""
    if rng_ is None:
        return "network trained at one exposure: judged by the exact likelihood alone"
    lo, hi = rng_
    if not lo * (1 - 1e-9) <= factor <= hi * (1 + 1e-9):
        return (f"outside the network's exposure range {lo:g}-{hi:g} (an extrapolation, "
                "judged by the exact likelihood)")
    return f"read by the network (trained over exposure x {lo:g}-{hi:g})"
