"""One parameter's prior: uniform, log-uniform, or a Gaussian truncated to its bounds.

:class:`ParameterPrior` is one factor of :class:`xspec_sbi.inference.priors.BoxPrior`:
its kind and bounds, the Gaussian's ``mu`` and ``sigma``, the probability of an
interval, the inverse CDF (on a sub-interval, for restricted priors) and its
description in words for tables and reports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr
from scipy.stats import truncnorm

__all__ = ["PriorError", "KINDS", "ParameterPrior"]

#: Kinds of one-parameter prior: uniform in the parameter, in its logarithm, or a
#: Gaussian in the parameter truncated to the bounds.
KINDS = ("uniform", "log", "gauss")


class PriorError(ValueError):
    """A prior specification that cannot be honoured (names the parameter)."""


@dataclass(frozen=True)
class ParameterPrior:
    """Prior of one free parameter.

    Parameters
    ----------
    name : str
        Parameter name as PyXspec shows it (``"powerlaw.norm"``).
    kind : {"uniform", "log", "gauss"}
        Uniform in the parameter, uniform in its natural logarithm, or a
        Gaussian of mean ``mu`` and standard deviation ``sigma`` truncated to
        ``[lower, upper]`` (XSPEC's ``bayes ... gauss`` hyperparameters).
    lower, upper : float
        Bounds in the parameter's unit; ``lower < upper``, and ``lower > 0``
        when ``kind == "log"``.
    unit : str
        Unit string carried for reports (``"keV"``, ``"10^22"``).
    mu, sigma : float, optional
        Mean and standard deviation of a ``"gauss"`` prior, in the parameter's
        unit (``sigma > 0``); None for the other kinds.
    """

    name: str
    kind: str
    lower: float
    upper: float
    unit: str = ""
    mu: float | None = None
    sigma: float | None = None
    #: log of the untruncated Gaussian's probability within the bounds (Gaussian kind only)
    _log_z: float = field(init=False, repr=False, compare=False, default=0.0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PriorError(
                f"prior of {self.name!r}: kind {self.kind!r} is not one of {KINDS}"
            )
        lo, hi = float(self.lower), float(self.upper)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise PriorError(f"prior of {self.name!r}: bounds ({lo}, {hi}) must be finite")
        if not lo < hi:
            raise PriorError(
                f"prior of {self.name!r}: lower bound {lo} must be below upper bound {hi}"
            )
        if self.kind == "log" and lo <= 0.0:
            raise PriorError(
                f"prior of {self.name!r}: a log-uniform prior needs lower > 0, got {lo}"
            )
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        if self.kind != "gauss":
            if self.mu is not None or self.sigma is not None:
                raise PriorError(f"prior of {self.name!r}: mu and sigma belong to a 'gauss' prior, "
                                 f"not to a {self.kind!r} one")
            return
        try:
            mu, sigma = float(self.mu), float(self.sigma)
        except (TypeError, ValueError):
            raise PriorError(f"prior of {self.name!r}: a Gaussian prior needs numbers mu and sigma, "
                             f"got mu={self.mu!r}, sigma={self.sigma!r}") from None
        if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
            raise PriorError(f"prior of {self.name!r}: a Gaussian prior needs a finite mu and "
                             f"sigma > 0, got mu={mu}, sigma={sigma}")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        a, b = self._standard(lo, hi)
        # Phi(b) - Phi(a) taken in the lower tail, where ndtr keeps its relative precision.
        z = float(ndtr(b) - ndtr(a)) if a < 0 else float(ndtr(-a) - ndtr(-b))
        if not z > 1e-300:
            raise PriorError(f"prior of {self.name!r}: the Gaussian {mu:g} +- {sigma:g} has no "
                             f"probability in double precision within [{lo:g}, {hi:g}] (its "
                             f"bounds lie {min(abs(a), abs(b)):.3g} sigma from its mean)")
        object.__setattr__(self, "_log_z", math.log(z))

    def log_density(self, t: np.ndarray) -> np.ndarray:
        """Log density of a Gaussian prior at ``t`` inside the bounds, per unit of the parameter.

        ``-(t - mu)^2 / (2 sigma^2) - log(sigma sqrt(2 pi)) - log(Phi(b) - Phi(a))``, with ``a``,
        ``b`` the standardised bounds: normalised over the truncation.
        """
        t = np.asarray(t, dtype=float)
        return (-0.5 * ((t - self.mu) / self.sigma) ** 2 - math.log(self.sigma)
                - 0.5 * math.log(2 * math.pi) - self._log_z)

    # -- one parameter's law -----------------------------------------------------
    def _standard(self, lo: float, hi: float) -> tuple[float, float]:
        return (lo - self.mu) / self.sigma, (hi - self.mu) / self.sigma

    def mass(self, lo: float, hi: float) -> float:
        """Prior probability of ``[lo, hi]`` (within the bounds), in [0, 1]."""
        lo, hi = max(float(lo), self.lower), min(float(hi), self.upper)
        if not lo < hi:
            return 0.0
        if self.kind == "gauss":
            a, b = self._standard(self.lower, self.upper)
            a_s, b_s = self._standard(lo, hi)
            # The sub-interval's CDF difference under the box's truncated normal: scipy's
            # truncnorm keeps it accurate far in a tail, where Phi(b) - Phi(a) cancels.
            return float(np.clip(np.diff(truncnorm.cdf([a_s, b_s], a, b))[0], 0.0, 1.0))
        g = math.log if self.kind == "log" else (lambda v: v)
        return (g(hi) - g(lo)) / (g(self.upper) - g(self.lower))

    def quantile(self, v: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
        """Parameter values at CDF ``v`` in [0, 1] of this prior restricted to ``[lo, hi]``.

        Parameters
        ----------
        v : ndarray
            Probabilities.
        lo, hi : float, optional
            Sub-interval of the bounds (default the bounds).

        Returns
        -------
        ndarray
            Same shape as ``v``, within ``[lo, hi]``, in the parameter's unit.
        """
        lo = self.lower if lo is None else max(float(lo), self.lower)
        hi = self.upper if hi is None else min(float(hi), self.upper)
        v = np.asarray(v, dtype=float)
        if self.kind != "gauss":
            g = np.log if self.kind == "log" else (lambda t: t)
            inv = np.exp if self.kind == "log" else (lambda t: t)
            return np.clip(inv(g(lo) + v * (g(hi) - g(lo))), lo, hi)
        a, b = self._standard(lo, hi)
        return np.clip(truncnorm.ppf(v, a, b, loc=self.mu, scale=self.sigma), lo, hi)

    def describe(self) -> str:
        """The prior in words for tables and reports: ``"Gaussian 0.05 +- 0.01 in [0, 1e+06]"``."""
        box = f"[{self.lower:.4g}, {self.upper:.4g}]"
        if self.kind == "gauss":
            return f"Gaussian {self.mu:.4g} +- {self.sigma:.4g} in {box}"
        return f"{'log-uniform' if self.kind == 'log' else 'uniform'} {box}"
