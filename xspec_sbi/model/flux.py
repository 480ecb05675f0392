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
and orders the results the same way). The records are
:mod:`xspec_sbi.model.flux_records` (re-exported here).
"""
from __future__ import annotations

import logging

import numpy as np

from xspec_sbi.model.cosmology import Cosmology
from xspec_sbi.model.evaluation import Evaluator
from xspec_sbi.model.flux_records import (BandFlux, BandLuminosity, FluxError, FluxRequest, Interval,
                                          band_text, check_band)

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


# -- the integration -----------------------------------------------------------------------------
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
    lo, hi = check_band(lo, hi)
    edges = np.asarray(edges, dtype=np.float64)
    covered = (max(lo, float(edges[0])), min(hi, float(edges[-1])))
    if covered[1] <= covered[0]:
        raise FluxError(f"band {band_text(lo, hi)} lies outside the model's energy grid "
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


class _GroupView:
    """One data group's model of a grouped model, as band_fluxes evaluates it.

    XSPEC's ``flux`` is per spectrum, through its group's parameters; group 1's
    (where a cross-normalisation constant is 1) is the source's flux.
    """

    def __init__(self, grouped, group: int):
        self.grouped, self.group = grouped, int(group)
        self.expression = grouped.expression
        self.components = grouped.components
        self._tree = grouped.open_model._tree

    def evaluate(self, edges, theta):
        return self.grouped.evaluate_group(edges, theta, self.group)

    def all_values(self, theta):
        return self.grouped.open_model.all_values(self.grouped.group_values(theta, self.group))


def _engine_model(model):
    if hasattr(model, "grouped") and hasattr(model, "group"):     # GroupModel: its group
        return _GroupView(model.grouped, model.group)
    if hasattr(model, "for_group"):                              # GroupedModel: group 1
        return _GroupView(model, 1)
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
    # only the bins a band touches, as XSPEC's loop: a model's inf or nan outside every band
    # (a powerlaw in a bin starting at 0 keV) must not reach the sums through 0 * inf
    used = np.flatnonzero(np.any(w_photon != 0, axis=1))
    w_photon, w_energy = w_photon[used], w_energy[used]
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
        photon[start:start + len(rows)] = spectrum[:, used] @ w_photon
        energy[start:start + len(rows)] = spectrum[:, used] @ w_energy
    return photon, energy


def _warn_cut(what, band, covered, edges):
    if tuple(covered) != tuple(band):
        log.warning("%s: the model's energy grid covers %g-%g keV; integrated over %s only "
                    "(XSPEC resets the band to the grid; give energies= to extend it)",
                    what, edges[0], edges[-1], band_text(*covered))


def flux_summary(model, edges, samples, lo, hi, unabsorbed: bool = False,
                 absorbers=None) -> BandFlux:
    """``flux lo hi err`` over posterior draws ``samples`` (n, n_free); see :class:`BandFlux`."""
    lo, hi = check_band(lo, hi, "flux band")
    model = _engine_model(model)
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
    lo, hi = check_band(lo, hi, "lumin band")
    z = float(redshift)
    if not np.isfinite(z) or z <= 0:
        raise FluxError(f"lumin redshift {redshift}: must be > 0 (at z = 0 the luminosity "
                        "distance is 0)")
    cosmology = cosmology or Cosmology()
    model = _engine_model(model)
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
