"""Priors over the free parameters of a model: uniform, log-uniform or truncated Gaussian on a box.

A :class:`BoxPrior` is a product of independent one-parameter priors over a
box: uniform, log-uniform, or a Gaussian truncated to the box (BXA's
``create_gaussian_prior_for``, renormalised over the box instead of clipped
onto its edges, so that every prior is proper and bounded). It gives draws
(:meth:`BoxPrior.sample`, by the inverse CDF), the density
(:meth:`BoxPrior.log_prob`) and the bijection between the box and an
unconstrained space in which the posterior network is trained
(:meth:`BoxPrior.to_unconstrained`), so that every posterior sample lands
inside the prior bounds without rejection. The bijection depends on the box
alone (linear position in the box for a Gaussian prior): only the density
changes with the kind. Everything here is numpy and scipy: the engine and the
XSPEC-style baseline import it without torch.

The user's prior restricted to a region is
:class:`xspec_sbi.inference.truncation.TruncatedPrior`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.special import expit, logit
from scipy.stats import truncnorm

from xspec_sbi.inference.parameter_prior import KINDS, ParameterPrior, PriorError
from xspec_sbi.model.parameters import ParameterSpec

__all__ = [
    "PriorError",
    "KINDS",
    "ParameterPrior",
    "BoxPrior",
    "build_prior",
]

log = logging.getLogger("xspec_sbi")


@dataclass(frozen=True, eq=False)
class BoxPrior:
    """Product of independent uniform / log-uniform / truncated Gaussian priors over a box.

    Parameters
    ----------
    parameters : tuple of ParameterPrior
        One entry per free parameter, in the order of the columns of ``theta``.

    Notes
    -----
    With ``g(t) = log t`` for a log-uniform parameter and ``g(t) = t`` otherwise,
    the position ``u = (g(t) - g(lo)) / (g(hi) - g(lo))`` is uniform on (0, 1) and
    the unconstrained coordinate is ``z = logit(u)``. Densities transform as
    ``p(theta) = q(z) |dz/dtheta|`` with
    ``log|dz/dtheta| = -log u - log(1 - u) + log g'(t) - log(g(hi) - g(lo))``.
    A Gaussian parameter has ``g(t) = t``: the map depends on the box alone, its
    density is the truncated normal's.
    """

    parameters: tuple[ParameterPrior, ...]

    def __post_init__(self) -> None:
        params = tuple(self.parameters)
        if not params:
            raise PriorError("a prior needs at least one free parameter")
        names = [p.name for p in params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise PriorError(f"parameters {dup} appear more than once in the prior")
        object.__setattr__(self, "parameters", params)

    # -- description -------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names, in column order."""
        return tuple(p.name for p in self.parameters)

    @property
    def n_dim(self) -> int:
        """Number of free parameters."""
        return len(self.parameters)

    @property
    def lower(self) -> np.ndarray:
        """(n_dim,) lower bounds, in the parameters' units."""
        return np.array([p.lower for p in self.parameters])

    @property
    def upper(self) -> np.ndarray:
        """(n_dim,) upper bounds, in the parameters' units."""
        return np.array([p.upper for p in self.parameters])

    @property
    def is_log(self) -> np.ndarray:
        """(n_dim,) bool, True for log-uniform parameters."""
        return np.array([p.kind == "log" for p in self.parameters])

    @property
    def is_gauss(self) -> np.ndarray:
        """(n_dim,) bool, True for truncated Gaussian parameters."""
        return np.array([p.kind == "gauss" for p in self.parameters])

    def to_dict(self) -> dict:
        """JSON-ready description (round-trips through :meth:`from_dict`).

        ``mu`` and ``sigma`` appear for Gaussian parameters only, so that a
        uniform / log-uniform prior has the description (and the network
        fingerprint) it had before Gaussian priors existed.
        """
        out = []
        for p in self.parameters:
            d = {"name": p.name, "kind": p.kind, "lower": p.lower, "upper": p.upper, "unit": p.unit}
            if p.kind == "gauss":
                d.update(mu=p.mu, sigma=p.sigma)
            out.append(d)
        return {"parameters": out}

    @classmethod
    def from_dict(cls, d: Mapping) -> BoxPrior:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(ParameterPrior(**p) for p in d["parameters"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoxPrior) and self.parameters == other.parameters

    def __hash__(self) -> int:
        return hash(self.parameters)

    # -- the warped coordinate g ---------------------------------------------
    def _g_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi, log = self.lower, self.upper, self.is_log
        g_lo, g_hi = lo.copy(), hi.copy()
        g_lo[log], g_hi[log] = np.log(lo[log]), np.log(hi[log])
        return g_lo, g_hi

    def check_theta(self, theta: np.ndarray) -> np.ndarray:
        """theta as a float (n, n_dim) array; PriorError naming the parameters otherwise."""
        theta = np.asarray(theta, dtype=float)
        if theta.ndim != 2 or theta.shape[1] != self.n_dim:
            raise PriorError(
                f"theta must have shape (n, {self.n_dim}) for parameters {self.names}, "
                f"got {theta.shape}"
            )
        return theta

    def to_unit(self, theta: np.ndarray) -> np.ndarray:
        """(n, n_dim) position u in [0, 1] of theta inside the box, in the warped coordinate g."""
        g_lo, g_hi = self._g_bounds()
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(self.is_log, np.log(np.where(theta > 0, theta, np.nan)), theta)
        return (g - g_lo) / (g_hi - g_lo)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """(n, n_dim) theta at warped position u in [0, 1]; the inverse of :meth:`to_unit`."""
        g_lo, g_hi = self._g_bounds()
        g = g_lo + u * (g_hi - g_lo)
        theta = np.array(g, dtype=float)
        theta[..., self.is_log] = np.exp(theta[..., self.is_log])
        # exp(log(hi)) can round one ulp past hi; the draw is inside in exact arithmetic.
        return np.clip(theta, self.lower, self.upper)

    # -- numpy face --------------------------------------------------------
    def sample(self, n: int, *, rng: np.random.Generator | int) -> np.ndarray:
        """Draw parameter vectors.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy.random.Generator or int
            Random generator or seed.

        Returns
        -------
        theta : (n, n_dim) ndarray
        """
        rng = np.random.default_rng(rng)
        return self.ppf(rng.random((int(n), self.n_dim)))

    def ppf(self, v: np.ndarray, u_lo: np.ndarray | None = None,
            u_hi: np.ndarray | None = None) -> np.ndarray:
        """Parameter vectors at per-parameter CDF values ``v`` of the prior on a sub-box.

        Parameters
        ----------
        v : (n, n_dim) ndarray
            Probabilities in [0, 1] (uniform draws give prior draws).
        u_lo, u_hi : (n_dim,) ndarray, optional
            The sub-box as warped positions (:meth:`to_unit`) of its corners;
            default the whole box.

        Returns
        -------
        theta : (n, n_dim) ndarray
            Within the sub-box. For uniform and log-uniform parameters the CDF
            is the warped position, ``theta = from_unit(u_lo + (u_hi - u_lo) v)``;
            a Gaussian parameter takes the truncated normal's inverse CDF on
            the sub-box.
        """
        v = np.asarray(v, dtype=float)
        if u_lo is None and u_hi is None:
            theta = self.from_unit(v)
            lo, hi = self.lower, self.upper
        else:
            u_lo = np.zeros(self.n_dim) if u_lo is None else np.asarray(u_lo, dtype=float)
            u_hi = np.ones(self.n_dim) if u_hi is None else np.asarray(u_hi, dtype=float)
            theta = self.from_unit(u_lo + (u_hi - u_lo) * v)
            lo, hi = self.from_unit(u_lo[None])[0], self.from_unit(u_hi[None])[0]
        for j in np.flatnonzero(self.is_gauss):
            theta[..., j] = self.parameters[j].quantile(v[..., j], lo[j], hi[j])
        return theta

    def cdf(self, theta: np.ndarray) -> np.ndarray:
        """(n, n_dim) prior CDF of each parameter at theta (clipped to the box).

        Equal to :meth:`to_unit` for uniform and log-uniform parameters.
        """
        theta = np.clip(self.check_theta(theta), self.lower, self.upper)
        out = self.to_unit(theta)
        for j in np.flatnonzero(self.is_gauss):
            p = self.parameters[j]
            a, b = p._standard(p.lower, p.upper)
            out[:, j] = truncnorm.cdf(theta[:, j], a, b, loc=p.mu, scale=p.sigma)
        return out

    def mass(self, lower: np.ndarray, upper: np.ndarray) -> float:
        """Prior probability of the sub-box ``[lower, upper]`` (the prior factorises)."""
        return float(np.prod([p.mass(a, b) for p, a, b in zip(self.parameters, lower, upper)]))

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: True where every parameter lies within its bounds (inclusive)."""
        theta = self.check_theta(theta)
        return np.all((theta >= self.lower) & (theta <= self.upper), axis=1)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """(n,) log prior density of theta (per unit of each parameter); -inf outside.

        A Gaussian parameter's density is normalised over its bounds:
        ``phi((t - mu) / sigma) / (sigma (Phi(b) - Phi(a)))``.
        """
        theta = self.check_theta(theta)
        lo, hi, log = self.lower, self.upper, self.is_log
        inside = self.contains(theta)
        safe = np.where(inside[:, None], theta, (lo + hi) / 2)
        dens = np.broadcast_to(-np.log(hi - lo), theta.shape).copy()
        dens[:, log] = -np.log(safe[:, log]) - np.log(np.log(hi[log] / lo[log]))
        for j in np.flatnonzero(self.is_gauss):
            dens[:, j] = self.parameters[j].log_density(safe[:, j])
        return np.where(inside, dens.sum(axis=1), -np.inf)

    # -- bounded parameterisation -----------------------------------------------
    def to_unconstrained(self, theta: np.ndarray) -> np.ndarray:
        """Map theta inside the box to unconstrained z (logit of the warped position).

        Parameters
        ----------
        theta : (n, n_dim) ndarray
            Points inside the prior box; points on or outside a bound give +-inf/nan.

        Returns
        -------
        z : (n, n_dim) ndarray
        """
        theta = self.check_theta(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            return logit(self.to_unit(theta))

    def from_unconstrained(self, z: np.ndarray) -> np.ndarray:
        """Map unconstrained z back into the prior box; the inverse of :meth:`to_unconstrained`.

        Parameters
        ----------
        z : (n, n_dim) ndarray

        Returns
        -------
        theta : (n, n_dim) ndarray
            Always within ``[lower, upper]``.
        """
        z = np.asarray(z, dtype=float)
        return self.from_unit(expit(z))

    def log_abs_det_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """(n,) ``log|det dz/dtheta|`` of :meth:`to_unconstrained` at theta (inside the box)."""
        theta = self.check_theta(theta)
        g_lo, g_hi = self._g_bounds()
        u = self.to_unit(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_gprime = np.where(self.is_log, -np.log(np.where(theta > 0, theta, np.nan)), 0.0)
            terms = -np.log(u) - np.log1p(-u) + log_gprime - np.log(g_hi - g_lo)
        return terms.sum(axis=1)


# -- construction from parameter specs --------------------------------------
def build_prior(
    parameters: Sequence[ParameterSpec],
    overrides: Mapping[str, tuple | str] | None = None,
) -> BoxPrior:
    """Build the prior over the free parameters of a model.

    Parameters
    ----------
    parameters : sequence of ParameterSpec
        All model parameters; frozen and linked ones are left out of the prior
        (they keep their values in the simulator).
    overrides : mapping, optional
        Per-parameter prior by name: ``("uniform", lo, hi)``, ``("log", lo, hi)``,
        the string ``"log"`` / ``"uniform"`` to keep XSPEC's soft limits
        (``bot``, ``top``) with that kind, ``("gauss", mu, sigma)`` for a
        Gaussian truncated at XSPEC's hard limits (``min``, ``max``: the widest
        bounds a parameter may have, so the prior stays proper), or
        ``("gauss", mu, sigma, lo, hi)`` truncated at ``[lo, hi]``. Parameters
        not named get a uniform prior over their soft limits.

    Returns
    -------
    BoxPrior

    Raises
    ------
    PriorError
        For an unknown or non-free parameter name, a malformed entry, bounds
        with ``lo >= hi``, a log prior with ``lo <= 0``, or bounds outside the
        parameter's hard limits (``min``, ``max``).
    """
    overrides = dict(overrides or {})
    specs = {p.name: p for p in parameters}
    for name in overrides:
        if name not in specs:
            raise PriorError(
                f"prior override for unknown parameter {name!r}; "
                f"model parameters are {list(specs)}"
            )
        if not specs[name].free:
            raise PriorError(
                f"prior override for {name!r}, which is frozen or linked; thaw it first"
            )
    priors = []
    for spec in parameters:
        if not spec.free:
            continue
        kind, lo, hi, gauss = _parse_override(spec, overrides.get(spec.name, "uniform"))
        if lo < spec.min or hi > spec.max:
            raise PriorError(
                f"prior of {spec.name!r}: bounds ({lo}, {hi}) leave XSPEC's hard limits "
                f"({spec.min}, {spec.max})"
            )
        p = ParameterPrior(spec.name, kind, lo, hi, spec.unit, *gauss)
        if kind == "gauss" and len(overrides[spec.name]) == 3:
            log.info("prior of %s: %s (no bounds given: truncated at XSPEC's hard limits)",
                     spec.name, p.describe())
        priors.append(p)
    return BoxPrior(tuple(priors))


def _parse_override(spec: ParameterSpec, entry: tuple | str) -> tuple[str, float, float, tuple]:
    """``(kind, lower, upper, (mu, sigma) or ())`` of one override entry."""
    if isinstance(entry, str):
        if entry == "gauss":
            raise PriorError(f"prior override for {spec.name!r}: a Gaussian prior needs its mean "
                             f"and sigma, e.g. ('gauss', mu, sigma) or ('gauss', mu, sigma, lo, hi), "
                             f"got {entry!r}")
        if entry == "log" and spec.bot <= 0:
            # the user gave no bound: "needs lower > 0, got 0.0" would blame one they never wrote
            raise PriorError(f"prior of {spec.name!r}: 'log' keeps XSPEC's soft limits "
                             f"[{spec.bot:g}, {spec.top:g}], and a log-uniform prior needs a lower "
                             f"bound > 0; give the bounds, e.g. ('log', lo, hi) (command line: "
                             f"--prior {spec.name}=log:LO:HI)")
        return entry, spec.bot, spec.top, ()
    gauss = isinstance(entry, (tuple, list)) and len(entry) > 0 and entry[0] == "gauss"
    if not isinstance(entry, (tuple, list)) or len(entry) not in ((3, 5) if gauss else (3,)):
        raise PriorError(
            f"prior override for {spec.name!r} must be (kind, lower, upper), a kind string, "
            f"('gauss', mu, sigma) or ('gauss', mu, sigma, lower, upper), got {entry!r}"
        )
    try:
        numbers = [float(v) for v in entry[1:]]
    except (TypeError, ValueError) as exc:
        what = "mu, sigma and bounds" if gauss else "bounds"
        raise PriorError(f"prior override for {spec.name!r}: {what} must be numbers, "
                         f"got {entry!r}") from exc
    if not gauss:
        return str(entry[0]), numbers[0], numbers[1], ()
    lo, hi = (numbers[2], numbers[3]) if len(numbers) == 4 else (spec.min, spec.max)
    return "gauss", lo, hi, (numbers[0], numbers[1])
