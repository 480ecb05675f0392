"""The records of fluxes over posterior draws: what was asked, what came out (:mod:`xspec_sbi.model.flux`).

``Interval`` (median, 68 % and 90 % central intervals), ``FluxRequest`` (a
band, with a redshift for a luminosity), ``BandFlux`` (erg and photons
cm^-2 s^-1) and ``BandLuminosity`` (erg s^-1); each prints as the table does
and has a ``to_dict`` for summary.json (keys in docs/REPORT.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xspec_sbi.model.cosmology import Cosmology

__all__ = ["FluxError", "Interval", "FluxRequest", "BandFlux", "BandLuminosity", "check_band",
           "band_text"]


class FluxError(ValueError):
    """A band, redshift or component list that a flux cannot be computed for."""


# -- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """Median and central 68 % / 90 % intervals of a quantity over posterior draws (its unit)."""

    median: float
    lo68: float
    hi68: float
    lo90: float
    hi90: float

    @classmethod
    def of(cls, values: np.ndarray) -> "Interval":
        q = np.quantile(np.asarray(values, dtype=np.float64), [0.5, 0.16, 0.84, 0.05, 0.95])
        return cls(*map(float, q))

    def __str__(self) -> str:
        return (f"{self.median:.4g} (68 %: {self.lo68:.4g} - {self.hi68:.4g}; "
                f"90 %: {self.lo90:.4g} - {self.hi90:.4g})")

    def to_dict(self) -> dict:
        return {"median": self.median, "lo68": self.lo68, "hi68": self.hi68,
                "lo90": self.lo90, "hi90": self.hi90}


@dataclass(frozen=True)
class FluxRequest:
    """One flux (``redshift`` None) or luminosity over a band, as asked for up front.

    Parameters
    ----------
    lo, hi : float
        Band, keV (source frame for a luminosity).
    redshift : float or None
        None: a flux; a number: a luminosity at that redshift.
    unabsorbed : bool
        Set the absorbers to 1 (:data:`ABSORBERS`).
    cosmology : Cosmology, optional
        For a luminosity; default XSPEC's ``cosmo 70 0 0.73``.
    """

    lo: float
    hi: float
    redshift: float | None = None
    unabsorbed: bool = False
    cosmology: Cosmology | None = None

    def __post_init__(self):
        check_band(self.lo, self.hi, f"{self.kind} band")
        if self.redshift is not None and not (np.isfinite(self.redshift) and self.redshift > 0):
            raise FluxError(f"lumin redshift {self.redshift}: must be > 0 (at z = 0 the "
                            "luminosity distance is 0)")

    @classmethod
    def parse(cls, item) -> "FluxRequest":
        """A request from itself, ``(lo, hi)`` (flux) or ``(lo, hi, z)`` (luminosity)."""
        if isinstance(item, cls):
            return item
        try:
            values = [float(v) for v in item]
        except (TypeError, ValueError):
            raise FluxError(f"flux request {item!r}: give (lo, hi) in keV for a flux or "
                            "(lo, hi, redshift) for a luminosity") from None
        if len(values) not in (2, 3):
            raise FluxError(f"flux request {item!r}: give (lo, hi) in keV for a flux or "
                            "(lo, hi, redshift) for a luminosity")
        return cls(values[0], values[1], values[2] if len(values) == 3 else None)

    @property
    def kind(self) -> str:
        return "flux" if self.redshift is None else "lumin"


def band_text(lo, hi) -> str:
    """``"0.5-2 keV"``."""
    return f"{lo:g}-{hi:g} keV"


@dataclass(frozen=True)
class BandFlux:
    """Energy and photon flux over a band, over posterior draws (``flux lo hi err``).

    Attributes
    ----------
    band : (float, float)
        Band asked for, keV.
    covered : (float, float)
        Band integrated, keV: ``band`` cut to the model's energy grid.
    unabsorbed : bool
    absorbers : tuple of str
        Components set to 1 (labels), empty unless ``unabsorbed``.
    energy : Interval
        erg cm^-2 s^-1.
    photon : Interval
        photons cm^-2 s^-1.
    n_draws : int
    energy_draws, photon_draws : ndarray (n_draws,)
        The draws' fluxes (XSPEC's ``tclout flux errsims``).
    """

    band: tuple
    covered: tuple
    unabsorbed: bool
    absorbers: tuple
    energy: Interval
    photon: Interval
    n_draws: int
    energy_draws: np.ndarray = field(repr=False, compare=False, default=None)
    photon_draws: np.ndarray = field(repr=False, compare=False, default=None)

    @property
    def label(self) -> str:
        return f"{'unabsorbed ' if self.unabsorbed else ''}flux {band_text(*self.band)}"

    def lines(self) -> list[str]:
        out = [f"{self.label}: {self.energy} erg/cm^2/s",
               f"{' ' * len(self.label)}  {self.photon} photons/cm^2/s"]
        if tuple(self.covered) != tuple(self.band):
            out.append(f"  (integrated over {band_text(*self.covered)}: the model's energy grid)")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        return {"kind": "flux", "band_keV": list(self.band), "covered_keV": list(self.covered),
                "unabsorbed": self.unabsorbed, "absorbers": list(self.absorbers),
                "energy_flux_erg_cm2_s": self.energy.to_dict(),
                "photon_flux_ph_cm2_s": self.photon.to_dict(), "n_draws": self.n_draws}


@dataclass(frozen=True)
class BandLuminosity:
    """Luminosity over a source-frame band at a redshift, over posterior draws (``lumin lo hi z err``).

    Attributes
    ----------
    band : (float, float)
        Source-frame band, keV.
    redshift : float
    cosmology : Cosmology
    covered : (float, float)
        Observed-frame band integrated, keV: ``band / (1 + z)`` cut to the grid.
    unabsorbed : bool
    absorbers : tuple of str
    luminosity : Interval
        erg s^-1.
    distance : float
        Luminosity distance, cm.
    n_draws : int
    draws : ndarray (n_draws,)
        The draws' luminosities, erg s^-1.
    """

    band: tuple
    redshift: float
    cosmology: Cosmology
    covered: tuple
    unabsorbed: bool
    absorbers: tuple
    luminosity: Interval
    distance: float
    n_draws: int
    draws: np.ndarray = field(repr=False, compare=False, default=None)

    @property
    def label(self) -> str:
        return (f"{'unabsorbed ' if self.unabsorbed else ''}lumin {band_text(*self.band)} "
                f"(source frame) at z = {self.redshift:g}")

    def lines(self) -> list[str]:
        z = 1.0 + self.redshift
        out = [f"{self.label}: {self.luminosity} erg/s"]
        if abs(self.covered[0] * z - self.band[0]) > 1e-9 * self.band[0] \
                or abs(self.covered[1] * z - self.band[1]) > 1e-9 * self.band[1]:
            out.append(f"  (integrated over {band_text(*self.covered)} observed: the model's "
                       "energy grid)")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        return {"kind": "lumin", "band_keV": list(self.band), "redshift": self.redshift,
                "cosmology": self.cosmology.to_dict(), "covered_observed_keV": list(self.covered),
                "unabsorbed": self.unabsorbed, "absorbers": list(self.absorbers),
                "luminosity_erg_s": self.luminosity.to_dict(),
                "luminosity_distance_cm": self.distance, "n_draws": self.n_draws}


def check_band(lo, hi, what="band") -> tuple[float, float]:
    """``(lo, hi)`` as floats, keV; :class:`FluxError` naming ``what`` unless 0 <= lo < hi."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi <= lo:
        raise FluxError(f"{what} {lo:g}-{hi:g} keV: needs 0 <= low < high")
    return lo, hi
