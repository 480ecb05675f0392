"""XSPEC's own ``flux`` and ``lumin`` at given parameter values, beside the engine's.

PyXspec calls (manual pages in brackets): ``AllModels.calcFlux("lo hi")`` and
``AllModels.calcLumin("lo hi z")`` [ModelManager]; ``Spectrum.flux`` and
``Spectrum.lumin`` [Spectrum] (value, errors in erg cm^-2 s^-1, then in
photons cm^-2 s^-1; ``lumin``'s first value is in 1e44 erg s^-1);
``Xset.cosmo`` [XspecSettings]; ``Model.setPars`` [Model]. One set of
parameters and one call per row: for checks and for models only XSPEC
evaluates, not for inner loops. Parameters, chatter and the cosmology are
put back afterwards.
"""
from __future__ import annotations

import numpy as np

from xspec_sbi.pyxspec._access import PyXspecError, xspec_module
from xspec_sbi.pyxspec.native import _set_free, free_parameters
from xspec_sbi.pyxspec.state import preserved_state

__all__ = ["xspec_fluxes"]


def xspec_fluxes(theta, lo: float, hi: float, *, redshift: float | None = None, cosmology=None,
                 spectrum: int = 1, xspec=None) -> tuple[np.ndarray, np.ndarray]:
    """XSPEC's flux (or luminosity) over ``[lo, hi]`` keV at each row of ``theta``.

    Parameters
    ----------
    theta : array_like (n, n_free)
        Values of data group 1's free parameters, in parameter order.
    lo, hi : float
        Band, keV (source frame with ``redshift``).
    redshift : float, optional
        None: ``calcFlux``; a number: ``calcLumin`` at that redshift.
    cosmology : Cosmology, optional
        Set as ``Xset.cosmo`` for the call (default: the session's own).
    spectrum : int
        Which spectrum's result to read (XSPEC integrates on its response grid).

    Returns
    -------
    energy : ndarray (n,)
        erg cm^-2 s^-1, or erg s^-1 with ``redshift``.
    photon : ndarray (n,)
        photons cm^-2 s^-1 (for ``lumin``, XSPEC's photon flux over the
        redshifted band).
    """
    xs = xspec_module(xspec)
    if int(xs.AllData.nSpectra) < spectrum:
        raise PyXspecError(f"spectrum {spectrum}: AllData holds {xs.AllData.nSpectra} spectra")
    free = free_parameters(xs)
    rows = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    energy, photon = np.empty(rows.shape[0]), np.empty(rows.shape[0])
    command = f"{float(lo)!r} {float(hi)!r}" + ("" if redshift is None else f" {float(redshift)!r}")
    with preserved_state(xs):
        saved_cosmo = tuple(xs.Xset.cosmo)
        try:
            if cosmology is not None:
                xs.Xset.cosmo = f"{cosmology.H0!r} {cosmology.q0!r} {cosmology.lambda0!r}"
            for k, row in enumerate(rows):
                _set_free(xs, free, row)
                if redshift is None:
                    xs.AllModels.calcFlux(command)
                    values = xs.AllData(spectrum).flux
                    energy[k] = values[0]
                else:
                    xs.AllModels.calcLumin(command)
                    values = xs.AllData(spectrum).lumin
                    energy[k] = values[0] * 1e44
                photon[k] = values[3]
        finally:
            xs.Xset.cosmo = " ".join(str(v) for v in saved_cosmo)
    return energy, photon
