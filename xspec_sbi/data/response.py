"""Instrument responses: a sparse redistribution matrix, an ARF, their grids.

A :class:`Response` is a frozen record built from files (:func:`load_response`)
or from arrays (:func:`gaussian_response`, :func:`nicer_like_response`). Row
``i`` of ``matrix`` is the probability that a photon in model energy bin ``i``
is recorded in each channel; ``effective_matrix()`` multiplies in the ARF so
that ``flux @ effective_matrix() * exposure`` gives counts per channel.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse
from scipy.special import ndtr

from xspec_sbi.data import ogip_response

__all__ = [
    "ResponseError",
    "Response",
    "load_response",
    "gaussian_response",
    "nicer_xti_fwhm",
    "nicer_like_response",
    "NICER_FWHM_A_KEV",
    "NICER_FWHM_B_KEV",
]

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# ARF and RMF grids are stored as float32; equal grids agree to float32 precision.
_GRID_RTOL = 1e-5
_GRID_ATOL = 1e-7

# NICER XTI resolution, FWHM(E) = sqrt(a^2 + b^2 E) through 85 eV at 1 keV and
# 137 eV at 6 keV (the two figures NICER's documentation quotes):
#   a^2 + b^2 = 0.085^2,  a^2 + 6 b^2 = 0.137^2.
NICER_FWHM_B_KEV = float(np.sqrt((0.137**2 - 0.085**2) / 5.0))
NICER_FWHM_A_KEV = float(np.sqrt(0.085**2 - NICER_FWHM_B_KEV**2))


class ResponseError(ValueError):
    """Inconsistent response arrays or files (grids, shapes, values)."""


@dataclass(frozen=True, eq=False)
class Response:
    """A detector response: sparse redistribution matrix, optional ARF, grids.

    Parameters
    ----------
    energ_lo, energ_hi : numpy.ndarray, shape (n_e,)
        Model energy grid, keV, contiguous and increasing.
    e_min, e_max : numpy.ndarray, shape (n_chan,)
        Nominal channel bounds (EBOUNDS), keV.
    first_channel : int
        Number of the first channel (TLMIN of F_CHAN / EBOUNDS CHANNEL), 0 or 1.
    matrix : scipy.sparse.csr_matrix, shape (n_e, n_chan)
        Redistribution probabilities; for an RSP file it already includes the
        effective area (cm^2).
    arf : numpy.ndarray or None, shape (n_e,)
        Effective area, cm^2; None when absent or already in an RSP.
    rmf_path, arf_path : str or None
        Source files (None for synthetic parts).
    description : str or None
        How a synthetic response was made (None for file responses).
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    first_channel: int
    matrix: scipy.sparse.csr_matrix
    arf: np.ndarray | None = None
    rmf_path: str | None = None
    arf_path: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        where = self.rmf_path or self.description or "response"
        lo = np.asarray(self.energ_lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(self.energ_hi, dtype=np.float64).reshape(-1)
        e_min = np.asarray(self.e_min, dtype=np.float64).reshape(-1)
        e_max = np.asarray(self.e_max, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape or lo.size == 0:
            raise ResponseError(f"{where}: energ_lo and energ_hi must be non-empty, same length")
        if e_min.shape != e_max.shape or e_min.size == 0:
            raise ResponseError(f"{where}: e_min and e_max must be non-empty, same length")
        for name, arr in (("energ_lo", lo), ("energ_hi", hi), ("e_min", e_min), ("e_max", e_max)):
            if not np.all(np.isfinite(arr)):
                raise ResponseError(f"{where}: {name} has non-finite values")
        if np.any(hi <= lo) or np.any(np.diff(lo) <= 0):
            raise ResponseError(f"{where}: energy grid is not strictly increasing")
        if not np.allclose(lo[1:], hi[:-1], rtol=_GRID_RTOL, atol=_GRID_ATOL):
            raise ResponseError(f"{where}: energy grid is not contiguous (ENERG_LO[i+1] != ENERG_HI[i])")
        if np.any(e_max < e_min) or np.any(np.diff(e_min) < 0):
            raise ResponseError(f"{where}: channel bounds must be increasing with E_MAX >= E_MIN")
        matrix = scipy.sparse.csr_matrix(self.matrix, dtype=np.float64)
        if matrix.shape != (lo.size, e_min.size):
            raise ResponseError(f"{where}: matrix shape {matrix.shape} != (n_energies, n_channels) "
                                f"= ({lo.size}, {e_min.size})")
        if matrix.nnz and (not np.all(np.isfinite(matrix.data)) or matrix.data.min() < 0):
            raise ResponseError(f"{where}: matrix has negative or non-finite elements")
        arf = self.arf
        if arf is not None:
            arf = np.asarray(arf, dtype=np.float64).reshape(-1)
            if arf.shape != lo.shape:
                raise ResponseError(f"{where}: ARF has {arf.size} values for {lo.size} energies "
                                    f"(ARF {self.arf_path})")
            if not np.all(np.isfinite(arf)) or np.any(arf < 0):
                raise ResponseError(f"{where}: ARF has negative or non-finite values ({self.arf_path})")
        object.__setattr__(self, "energ_lo", lo)
        object.__setattr__(self, "energ_hi", hi)
        object.__setattr__(self, "e_min", e_min)
        object.__setattr__(self, "e_max", e_max)
        object.__setattr__(self, "first_channel", int(self.first_channel))
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "arf", arf)

    @property
    def n_energies(self) -> int:
        """Number of model energy bins."""
        return self.energ_lo.size

    @property
    def n_channels(self) -> int:
        """Number of detector channels."""
        return self.e_min.size

    @property
    def channels(self) -> np.ndarray:
        """numpy.ndarray, shape (n_chan,), int: channel numbers from ``first_channel``."""
        return self.first_channel + np.arange(self.n_channels)

    @property
    def energy_edges(self) -> np.ndarray:
        """numpy.ndarray, shape (n_e + 1,): model energy bin edges, keV."""
        return np.append(self.energ_lo, self.energ_hi[-1])

    def effective_matrix(self) -> scipy.sparse.csr_matrix:
        """Redistribution times effective area.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (n_e, n_chan)
            ``diag(arf) @ matrix`` in cm^2 (``matrix`` itself without an ARF).
        """
        if self.arf is None:
            return self.matrix.copy()
        return scipy.sparse.csr_matrix(scipy.sparse.diags(self.arf) @ self.matrix)

    def with_arf(self, arf: np.ndarray | None, arf_path: str | None = None) -> Response:
        """Return a copy with another ARF (cm^2, shape (n_e,)) or none."""
        return replace(self, arf=arf, arf_path=arf_path)


def _xspec_energy_floor(energ_lo: np.ndarray, energ_hi: np.ndarray) -> np.ndarray:
    # XSPEC replaces a 0 keV lower edge by ENERG_HI/1000 so that models that
    # diverge at E = 0 (power laws) stay finite; we follow it.
    return np.where(energ_lo > 0, energ_lo, energ_hi / 1000.0)


def load_response(rmf_path: str | os.PathLike, arf_path: str | os.PathLike | None = None) -> Response:
    """Load an RMF (or RSP) and optionally an ARF.

    Parameters
    ----------
    rmf_path : str or path-like
        RMF or RSP file (extension ``MATRIX`` or ``SPECRESP MATRIX`` + ``EBOUNDS``).
    arf_path : str or path-like, optional
        ARF file; its energy grid must equal the RMF's.

    Returns
    -------
    Response
        The response. A first energy edge of 0 keV is replaced by
        ``ENERG_HI[0] / 1000`` as XSPEC does. An ARF given with an RSP (whose
        matrix already includes area) is still multiplied in, as XSPEC does.

    Raises
    ------
    ogip.OGIPFileNotFoundError, ogip.OGIPError
        Missing or malformed files.
    ResponseError
        ARF and RMF energy grids differ (the message names both files).
    """
    rmf = ogip_response.read_rmf(rmf_path)
    arf_values = None
    arf_name = None
    if arf_path is not None:
        arf = ogip_response.read_arf(arf_path)
        same = (arf.energ_lo.shape == rmf.energ_lo.shape
                and np.allclose(arf.energ_lo, rmf.energ_lo, rtol=_GRID_RTOL, atol=_GRID_ATOL)
                and np.allclose(arf.energ_hi, rmf.energ_hi, rtol=_GRID_RTOL, atol=_GRID_ATOL))
        if not same:
            raise ResponseError(
                f"energy grid of ARF {arf.path} ({arf.energ_lo.size} bins, "
                f"{arf.energ_lo[0]:g}-{arf.energ_hi[-1]:g} keV) does not match RMF {rmf.path} "
                f"({rmf.energ_lo.size} bins, {rmf.energ_lo[0]:g}-{rmf.energ_hi[-1]:g} keV)")
        arf_values = arf.specresp
        arf_name = arf.path
    return Response(
        energ_lo=_xspec_energy_floor(rmf.energ_lo, rmf.energ_hi),
        energ_hi=rmf.energ_hi,
        e_min=rmf.e_min,
        e_max=rmf.e_max,
        first_channel=rmf.first_channel,
        matrix=rmf.matrix,
        arf=arf_values,
        rmf_path=rmf.path,
        arf_path=arf_name,
    )


def gaussian_response(
    energ_lo: np.ndarray,
    energ_hi: np.ndarray,
    e_min: np.ndarray,
    e_max: np.ndarray,
    fwhm_kev: float | Callable[[np.ndarray], np.ndarray],
    arf: np.ndarray | None = None,
    *,
    first_channel: int = 1,
    n_sigma: float = 5.0,
    arf_path: str | None = None,
    description: str | None = None,
) -> Response:
    """Response with a Gaussian redistribution of given resolution.

    Parameters
    ----------
    energ_lo, energ_hi : numpy.ndarray, shape (n_e,)
        Model energy grid, keV.
    e_min, e_max : numpy.ndarray, shape (n_chan,)
        Channel bounds, keV, increasing.
    fwhm_kev : float or callable
        Resolution FWHM in keV, constant or a function of energy (keV) that
        accepts an array.
    arf : numpy.ndarray, optional, shape (n_e,)
        Effective area, cm^2.
    first_channel : int, optional
        Number of the first channel.
    n_sigma : float, optional
        Kernels are cut at ``n_sigma`` standard deviations to keep the matrix sparse.
    arf_path, description : str, optional
        Recorded in the returned response.

    Returns
    -------
    Response
        ``rmf_path`` is None.

    Notes
    -----
    A photon of energy :math:`E` (the centre of its model bin) lands in channel
    :math:`j` with probability
    :math:`\\Phi((e_{max,j}-E)/\\sigma) - \\Phi((e_{min,j}-E)/\\sigma)`,
    :math:`\\sigma = \\mathrm{FWHM}(E)/(2\\sqrt{2\\ln 2})`. Only channels that
    overlap :math:`E \\pm n_\\sigma\\sigma` are kept, and each row is rescaled
    so that it sums to the untruncated fraction of the Gaussian inside
    :math:`[e_{min,0}, e_{max,-1}]` (1 away from the channel-range edges).
    """
    lo = np.asarray(energ_lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(energ_hi, dtype=np.float64).reshape(-1)
    cmin = np.asarray(e_min, dtype=np.float64).reshape(-1)
    cmax = np.asarray(e_max, dtype=np.float64).reshape(-1)
    if np.any(np.diff(cmin) < 0) or np.any(cmax < cmin):
        raise ResponseError("gaussian_response: channel bounds must be increasing")
    if not n_sigma > 0:
        raise ResponseError(f"gaussian_response: n_sigma={n_sigma} must be > 0")
    centre = 0.5 * (lo + hi)
    fwhm = np.broadcast_to(np.asarray(fwhm_kev(centre) if callable(fwhm_kev) else fwhm_kev,
                                      dtype=np.float64), centre.shape)
    if not np.all(np.isfinite(fwhm)) or np.any(fwhm <= 0):
        raise ResponseError("gaussian_response: fwhm_kev must be finite and > 0 at every energy")
    sigma = fwhm / _FWHM_PER_SIGMA

    # Channel window of each energy: channels overlapping [E - n s, E + n s].
    first = np.searchsorted(cmax, centre - n_sigma * sigma, side="right")
    last = np.searchsorted(cmin, centre + n_sigma * sigma, side="left")  # exclusive
    width = np.maximum(last - first, 0)
    rows = np.repeat(np.arange(centre.size), width)
    row_start = np.cumsum(width) - width
    cols = np.repeat(first, width) + (np.arange(int(width.sum())) - np.repeat(row_start, width))
    z_hi = (cmax[cols] - centre[rows]) / sigma[rows]
    z_lo = (cmin[cols] - centre[rows]) / sigma[rows]
    values = ndtr(z_hi) - ndtr(z_lo)

    kept = np.bincount(rows, weights=values, minlength=centre.size)
    inside = ndtr((cmax[-1] - centre) / sigma) - ndtr((cmin[0] - centre) / sigma)
    scale = np.divide(inside, kept, out=np.zeros_like(kept), where=kept > 0)
    values = values * scale[rows]
    keep = values > 0
    matrix = scipy.sparse.csr_matrix((values[keep], (rows[keep], cols[keep])),
                                     shape=(centre.size, cmin.size))
    return Response(energ_lo=lo, energ_hi=hi, e_min=cmin, e_max=cmax,
                    first_channel=first_channel, matrix=matrix, arf=arf, rmf_path=None,
                    arf_path=arf_path, description=description)


def nicer_xti_fwhm(energy_kev: np.ndarray | float) -> np.ndarray:
    """Approximate NICER XTI energy resolution.

    Parameters
    ----------
    energy_kev : float or numpy.ndarray
        Photon energy, keV.

    Returns
    -------
    numpy.ndarray
        FWHM in keV, :math:`\\sqrt{a^2 + b^2 E}` with ``a = NICER_FWHM_A_KEV``
        (0.0701 keV) and ``b = NICER_FWHM_B_KEV`` (0.0480 keV^1/2), the
        Fano-like form through 85 eV at 1 keV and 137 eV at 6 keV.
    """
    energy = np.asarray(energy_kev, dtype=np.float64)
    return np.sqrt(NICER_FWHM_A_KEV**2 + NICER_FWHM_B_KEV**2 * np.clip(energy, 0.0, None))


def nicer_like_response(arf_path: str | os.PathLike, n_channels: int = 1501,
                        channel_width_kev: float = 0.01, *, n_sigma: float = 5.0) -> Response:
    """Approximate NICER XTI response: the real ARF with a Gaussian redistribution.

    The real NICER RMFs of the 4U 1820-30 data (``1050300108.rmf``,
    ``pre_burst_Tint200_raw.rmf``) are NOT available, so this is a stand-in for
    simulation studies, not NICER's calibrated response: it has no low-energy
    redistribution tail, no escape peaks and no optical-loading noise peak.

    Parameters
    ----------
    arf_path : str or path-like
        A NICER ARF (e.g. ``../shared/data/nicer_4u1820/*.arf``); its energy
        grid is the model grid and its area is used as is.
    n_channels : int, optional
        Number of PI channels, numbered from 0 (NICER: PI 0..1500).
    channel_width_kev : float, optional
        Channel width, keV (NICER: 10 eV per PI channel, channel ``k`` covering
        ``[k, k+1] * width``).
    n_sigma : float, optional
        Kernel truncation, standard deviations.

    Returns
    -------
    Response
        ``rmf_path`` None, ``arf_path`` the ARF, ``first_channel`` 0,
        resolution from :func:`nicer_xti_fwhm`.
    """
    if n_channels < 1 or not channel_width_kev > 0:
        raise ResponseError(f"nicer_like_response: need n_channels >= 1 and channel_width_kev > 0 "
                            f"(got {n_channels}, {channel_width_kev})")
    arf = ogip_response.read_arf(arf_path)
    edges = channel_width_kev * np.arange(n_channels + 1, dtype=np.float64)
    description = (f"NICER-like: ARF {arf.path} with Gaussian redistribution "
                   f"FWHM = sqrt({NICER_FWHM_A_KEV:.4f}^2 + {NICER_FWHM_B_KEV:.4f}^2 E) keV "
                   f"(85 eV at 1 keV, 137 eV at 6 keV), {n_channels} channels of "
                   f"{channel_width_kev * 1e3:g} eV from PI 0; real NICER RMF not available")
    return gaussian_response(arf.energ_lo, arf.energ_hi, edges[:-1], edges[1:], nicer_xti_fwhm,
                             arf=arf.specresp, first_channel=0, n_sigma=n_sigma,
                             arf_path=arf.path, description=description)
