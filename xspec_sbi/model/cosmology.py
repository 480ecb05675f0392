"""XSPEC's ``cosmo`` setting and the luminosity distance it implies.

``cosmo H0 q0 lambda0`` (defaults 70 km/s/Mpc, 0, 0.73): with ``lambda0``
non-zero XSPEC takes the universe to be flat (Omega_matter = 1 - lambda0)
and ignores ``q0``; with ``lambda0 = 0`` the universe holds matter only and
``q0 = Omega_matter / 2`` (Mattig's closed form).

The distances here are exact. XSPEC 12.9.1's ``lumin`` differs in two known
ways, which the live tests measure (``tests/test_pyxspec_live_fluxes.py``):
for ``lambda0 != 0`` it uses Pen (1999)'s fitting formula for the comoving
distance (0.1-0.3 % in D_L at z < 2 for lambda0 = 0.73), and it multiplies by
the constant 1.07057e61 for 4 pi (c Mpc / (km/s))^2, 0.45 % below its value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Cosmology", "CosmologyError", "C_KM_S", "MPC_CM"]

#: Speed of light, km s^-1 (exact).
C_KM_S = 299792.458
#: One megaparsec, cm (IAU 2015: 1 pc = 648000/pi au, 1 au = 1.495978707e13 cm).
MPC_CM = 1e6 * 648000.0 / np.pi * 1.495978707e13

# Gauss-Legendre nodes: in u = ln(1+z) the comoving-distance integrand is smooth and
# slowly varying, so 64 nodes over [0, ln(1+z)] reach ~1e-14 relative up to z ~ 20 (tests).
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)


class CosmologyError(ValueError):
    """A ``cosmo`` setting XSPEC's conventions do not define."""


@dataclass(frozen=True)
class Cosmology:
    """XSPEC's ``cosmo`` setting.

    Parameters
    ----------
    H0 : float
        Hubble constant, km s^-1 Mpc^-1.
    q0 : float
        Deceleration parameter; used only when ``lambda0`` is 0.
    lambda0 : float
        Cosmological constant; non-zero means a flat universe with
        Omega_matter = 1 - lambda0.
    """

    H0: float = 70.0
    q0: float = 0.0
    lambda0: float = 0.73

    def __post_init__(self):
        if not np.isfinite(self.H0) or self.H0 <= 0:
            raise CosmologyError(f"cosmo H0={self.H0}: must be > 0 km/s/Mpc")
        if self.lambda0 != 0 and not 0 < self.lambda0 < 1:
            raise CosmologyError(f"cosmo lambda0={self.lambda0}: a flat universe needs "
                                 "0 < lambda0 < 1 (Omega_matter = 1 - lambda0)")
        if self.lambda0 == 0 and self.q0 < 0:
            raise CosmologyError(f"cosmo q0={self.q0}: with lambda0 = 0 the universe holds "
                                 "matter only and q0 = Omega_matter/2 must be >= 0")

    def __str__(self) -> str:
        return f"H0 = {self.H0:g} km/s/Mpc, q0 = {self.q0:g}, lambda0 = {self.lambda0:g}"

    def to_dict(self) -> dict:
        return {"H0": self.H0, "q0": self.q0, "lambda0": self.lambda0}

    @property
    def hubble_distance(self) -> float:
        """c / H0, cm."""
        return C_KM_S / self.H0 * MPC_CM

    def luminosity_distance(self, z) -> np.ndarray:
        """Luminosity distance, cm.

        Parameters
        ----------
        z : float or array_like
            Redshift, >= 0.

        Returns
        -------
        ndarray (shape of ``z``), cm

        Notes
        -----
        Flat (``lambda0 != 0``): ``D_L = (1+z) c/H0 int_0^z dz'/E(z')`` with
        ``E = sqrt(Om (1+z)^3 + lambda0)``, by Gauss-Legendre quadrature in
        ``ln(1+z)``. Matter only (``lambda0 = 0``): Mattig's
        ``D_L = c/H0 [q0 z + (q0-1)(sqrt(1+2 q0 z) - 1)] / q0^2``, computed as
        ``2 z (1 + z + s) / (1 + s)^2`` with ``s = sqrt(1 + 2 q0 z)`` (the same
        value without cancellation); ``z (1 + z/2) c/H0`` at ``q0 = 0``.
        """
        z = np.asarray(z, dtype=np.float64)
        if np.any(~np.isfinite(z)) or np.any(z < 0):
            raise CosmologyError(f"redshift {z}: must be finite and >= 0")
        return self.hubble_distance * self._dimensionless(z)

    def _dimensionless(self, z: np.ndarray) -> np.ndarray:
        if self.lambda0 != 0:
            om = 1.0 - self.lambda0
            # int_0^z dz/E(z) = int_0^ln(1+z) (1+z)/E du with u = ln(1+z)
            u_max = np.log1p(z)[..., None]
            u = 0.5 * u_max * (_NODES + 1.0)
            one_plus = np.exp(u)
            integrand = one_plus / np.sqrt(om * one_plus ** 3 + self.lambda0)
            comoving = 0.5 * u_max[..., 0] * np.sum(_WEIGHTS * integrand, axis=-1)
            return (1.0 + z) * comoving
        # Mattig's form rewritten without its cancellation at small q0 z
        # (s - 1 = 2 q0 z / (s + 1)): exact for every q0 >= 0, z (1 + z/2) at q0 = 0
        s = np.sqrt(1.0 + 2.0 * self.q0 * z)
        return 2.0 * z * (1.0 + z + s) / (1.0 + s) ** 2
