"""Fluxes and luminosities over a band, for posterior draws: XSPEC's ``flux`` and ``lumin`` with ``err``.

The model is evaluated on an energy grid (the response's energies, as XSPEC
does, or a grid given as XSPEC's ``energies`` command would) for every draw
at once, and integrated over the band as XSPEC's ``Numerics::integrationKernel``
does: the photon density is taken as flat inside each model bin, so a bin cut
by a band edge contributes its overlapping fraction, and a bin's energy flux
is its photon flux times the mean of E over the overlap. A band beyond the
grid is cut to it (XSPEC resets it to the grid's extremes; here a warning
says so and the record keeps the band integrated).

``lumin`` takes its band in the source frame: the energy flux over
``[lo, hi] / (1 + z)`` times ``4 pi D_L^2`` (:mod:`xspec_sbi.model.cosmology`).

The unabsorbed flux sets absorbers to 1: the multiplicative components that
model absorption or extinction by matter on the line of sight
(:data:`ABSORBERS`: neutral and ionised photoelectric absorbers, partial
covering, Compton scattering, dust and the IGM). Edges, absorption lines,
cut-offs, constants and instrumental components stay (a ``highecut`` or a
cross-calibration ``constant`` is not absorption); ``absorbers=`` names the
components to set to 1 instead.

Errors are the posterior's: median and central 68 % / 90 % intervals of the
draws' fluxes (XSPEC's ``err`` draws from the fit's covariance or a chain
and orders the results the same way).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from xspec_sbi.model.cosmology import Cosmology
from xspec_sbi.model.evaluation import Evaluator

__all__ = ["KEV_TO_ERG", "ABSORBERS", "FluxError", "Interval", "FluxRequest", "BandFlux",
           "BandLuminosity", "band_weights", "absorber_labels", "band_fluxes", "flux_summary",
           "lumin_summary", "check_requests", "flux_summaries"]

log = logging.getLogger("xspec_sbi")

#: One keV in erg (CODATA 2018; XSPEC 12.9.1 uses 1.602192e-9, 1e-5 relative above).
KEV_TO_ERG = 1.602176634e-9

#: model.dat names of the components the unabsorbed flux sets to 1.
ABSORBERS = frozenset({
    "phabs", "vphabs", "zphabs", "zvphabs", "wabs", "zwabs", "tbabs", "ztbabs", "tbgrain",
    "tbvarabs", "tbpcf", "tbrel", "tbfeo", "tbgas", "varabs", "zvarabs", "zvfeabs", "zbabs",
    "pcfabs", "zpcfabs", "pwab", "plabs", "cabs", "absori", "swind1", "zxipcf", "zxipab",
    "wndabs", "zwndabs", "ismabs", "ismdust", "olivineabs", "sss_ice", "dust", "xscat",
    "zsmdust", "redden", "zredden", "uvred", "zdust", "zigm",
})

# Draws evaluated together: bounds the (draws, energy bins) array to ~16 MB on a 4096-bin grid.
_CHUNK = 512


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
        _check_band(self.lo, self.hi, f"{self.kind} band")
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


def _band_text(lo, hi) -> str:
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
        return f"{'unabsorbed ' if self.unabsorbed else ''}flux {_band_text(*self.band)}"

    def lines(self) -> list[str]:
        out = [f"{self.label}: {self.energy} erg/cm^2/s",
               f"{' ' * len(self.label)}  {self.photon} photons/cm^2/s"]
        if tuple(self.covered) != tuple(self.band):
            out.append(f"  (integrated over {_band_text(*self.covered)}: the model's energy grid)")
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
        return (f"{'unabsorbed ' if self.unabsorbed else ''}lumin {_band_text(*self.band)} "
                f"(source frame) at z = {self.redshift:g}")

    def lines(self) -> list[str]:
        z = 1.0 + self.redshift
        out = [f"{self.label}: {self.luminosity} erg/s"]
        if abs(self.covered[0] * z - self.band[0]) > 1e-9 * self.band[0] \
                or abs(self.covered[1] * z - self.band[1]) > 1e-9 * self.band[1]:
            out.append(f"  (integrated over {_band_text(*self.covered)} observed: the model's "
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


# -- the integration -----------------------------------------------------------------------------
def _check_band(lo, hi, what="band") -> tuple[float, float]:
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi <= lo:
        raise FluxError(f"{what} {lo:g}-{hi:g} keV: needs 0 <= low < high")
    return lo, hi


def band_weights(edges, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Weights that turn a model's bin fluxes into the photon and energy flux over ``[lo, hi]``.

    Parameters
    ----------
    edges : ndarray (n_e + 1,), keV
        The model's energy grid.
    lo, hi : float
        Band, keV.

    Returns
    -------
    photon : ndarray (n_e,)
        Fraction of each bin inside the band.
    energy : ndarray (n_e,), keV
        ``photon`` times the mean energy of the bin's part inside the band.
    covered : (float, float)
        The band cut to the grid, keV.

    Notes
    -----
    XSPEC's ``integrationKernel``: with a flat photon density ``f_i / w_i`` in
    bin ``i`` of width ``w_i``, the overlap ``[a, b]`` holds ``f_i (b - a) / w_i``
    photons and ``f_i (b^2 - a^2) / (2 w_i)`` keV.
    """
    lo, hi = _check_band(lo, hi)
    edges = np.asarray(edges, dtype=np.float64)
    covered = (max(lo, float(edges[0])), min(hi, float(edges[-1])))
    if covered[1] <= covered[0]:
        raise FluxError(f"band {_band_text(lo, hi)} lies outside the model's energy grid "
                        f"({edges[0]:g}-{edges[-1]:g} keV); give energies= (XSPEC's `energies`)")
    a = np.clip(edges[:-1], lo, hi)
    b = np.clip(edges[1:], lo, hi)
    width = np.diff(edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        photon = np.where(width > 0, (b - a) / width, 0.0)
        energy = np.where(width > 0, (b * b - a * a) / (2.0 * width), 0.0)
    return photon, energy, covered


def absorber_labels(model, absorbers=None) -> tuple[str, ...]:
    """Labels of the components an unabsorbed flux sets to 1.

    Parameters
    ----------
    model : Model
    absorbers : sequence of str, optional
        Component labels or model.dat names (case-insensitive) to use instead
        of the multiplicative components listed in :data:`ABSORBERS`.
    """
    if absorbers is None:
        return tuple(c.label for c in model.components
                     if c.info.kind == "mul" and c.info.name.lower() in ABSORBERS)
    chosen = []
    for name in absorbers:
        hits = [c for c in model.components
                if name.lower() in (c.label.lower(), c.info.name.lower())]
        if not hits:
            raise FluxError(f"absorbers: {name!r} is not a component of {model.expression!r} "
                            f"({', '.join(c.label for c in model.components)})")
        for c in hits:
            if c.info.kind != "mul":
                raise FluxError(f"absorbers: {c.label} is {c.info.kind!r}, not multiplicative; "
                                "only a multiplicative component can be set to 1")
            if c.label not in chosen:
                chosen.append(c.label)
    return tuple(chosen)


class _WithoutComponents(Evaluator):
    """The model with some multiplicative components replaced by 1."""

    def __init__(self, model, edges, labels):
        super().__init__(model, edges)
        self.labels = frozenset(labels)

    def _component(self, comp, values):
        if comp.label in self.labels:
            return np.ones((values.shape[0], self.edges.size - 1))
        return super()._component(comp, values)


def _engine_model(model):
    if not callable(getattr(model, "evaluate", None)) or not hasattr(model, "components"):
        raise FluxError(f"model {getattr(model, 'expression', model)!r}: fluxes need a model the "
                        "engine evaluates; this one only XSPEC can (compute them in XSPEC with "
                        "xspec_sbi.pyxspec.xspec_fluxes)")
    return model


def band_fluxes(model, edges, theta, bands, absorbers=()) -> tuple[np.ndarray, np.ndarray]:
    """Photon and energy fluxes of many parameter vectors over several bands.

    Parameters
    ----------
    model : Model
    edges : ndarray (n_e + 1,), keV
    theta : array_like (n, n_free)
        Free-parameter values (the model's free-parameter order).
    bands : sequence of (lo, hi), keV
    absorbers : sequence of str
        Component labels set to 1 (see :func:`absorber_labels`).

    Returns
    -------
    photon : ndarray (n, n_bands), photons cm^-2 s^-1
    energy : ndarray (n, n_bands), erg cm^-2 s^-1
    """
    model = _engine_model(model)
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    weights = [band_weights(edges, lo, hi) for lo, hi in bands]
    w_photon = np.stack([w[0] for w in weights], axis=1)
    w_energy = np.stack([w[1] for w in weights], axis=1) * KEV_TO_ERG
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    photon = np.empty((theta.shape[0], len(weights)))
    energy = np.empty_like(photon)
    labels = tuple(absorbers)
    for start in range(0, theta.shape[0], _CHUNK):
        rows = theta[start:start + _CHUNK]
        if labels:
            spectrum = _WithoutComponents(model, edges, labels).run(model.all_values(rows))
        else:
            spectrum = model.evaluate(edges, rows)
        photon[start:start + len(rows)] = spectrum @ w_photon
        energy[start:start + len(rows)] = spectrum @ w_energy
    return photon, energy


def _warn_cut(what, band, covered, edges):
    if tuple(covered) != tuple(band):
        log.warning("%s: the model's energy grid covers %g-%g keV; integrated over %s only "
                    "(XSPEC resets the band to the grid; give energies= to extend it)",
                    what, edges[0], edges[-1], _band_text(*covered))


def flux_summary(model, edges, samples, lo, hi, unabsorbed: bool = False,
                 absorbers=None) -> BandFlux:
    """``flux lo hi err`` over posterior draws ``samples`` (n, n_free); see :class:`BandFlux`."""
    lo, hi = _check_band(lo, hi, "flux band")
    labels = absorber_labels(model, absorbers) if unabsorbed else ()
    _, _, covered = band_weights(edges, lo, hi)
    photon, energy = band_fluxes(model, edges, samples, [(lo, hi)], labels)
    out = BandFlux((lo, hi), covered, bool(unabsorbed), labels, Interval.of(energy[:, 0]),
                   Interval.of(photon[:, 0]), int(photon.shape[0]), energy[:, 0], photon[:, 0])
    _warn_cut(out.label, (lo, hi), covered, edges)
    return out


def lumin_summary(model, edges, samples, lo, hi, redshift: float, unabsorbed: bool = False,
                  absorbers=None, cosmology: Cosmology | None = None) -> BandLuminosity:
    """``lumin lo hi z err`` over posterior draws ``samples`` (n, n_free); see :class:`BandLuminosity`."""
    lo, hi = _check_band(lo, hi, "lumin band")
    z = float(redshift)
    if not np.isfinite(z) or z <= 0:
        raise FluxError(f"lumin redshift {redshift}: must be > 0 (at z = 0 the luminosity "
                        "distance is 0)")
    cosmology = cosmology or Cosmology()
    labels = absorber_labels(model, absorbers) if unabsorbed else ()
    observed = (lo / (1.0 + z), hi / (1.0 + z))
    _, _, covered = band_weights(edges, *observed)
    _, energy = band_fluxes(model, edges, samples, [observed], labels)
    distance = float(cosmology.luminosity_distance(z))
    lum = 4.0 * np.pi * distance ** 2 * energy[:, 0]
    out = BandLuminosity((lo, hi), z, cosmology, covered, bool(unabsorbed), labels,
                         Interval.of(lum), distance, int(lum.size), lum)
    _warn_cut(out.label, observed, covered, edges)
    return out


def check_requests(model, edges, requests) -> tuple:
    """Requests parsed (:meth:`FluxRequest.parse`) and checked against the model and its grid.

    For refusing a flux before an inference runs: a band outside ``edges``
    or a model the engine cannot evaluate raises :class:`FluxError`.
    """
    out = tuple(FluxRequest.parse(item) for item in requests)
    if out:
        _engine_model(model)
    for r in out:
        z = 1.0 if r.redshift is None else 1.0 + r.redshift
        band_weights(edges, r.lo / z, r.hi / z)
    return out


def flux_summaries(model, edges, samples, requests, cosmology: Cosmology | None = None) -> tuple:
    """A :class:`BandFlux` or :class:`BandLuminosity` per request (:meth:`FluxRequest.parse`).

    ``cosmology`` stands for requests that name none.
    """
    out = []
    for item in requests:
        r = FluxRequest.parse(item)
        if r.redshift is None:
            out.append(flux_summary(model, edges, samples, r.lo, r.hi, r.unabsorbed))
        else:
            out.append(lumin_summary(model, edges, samples, r.lo, r.hi, r.redshift, r.unabsorbed,
                                     cosmology=r.cosmology or cosmology))
    return tuple(out)
