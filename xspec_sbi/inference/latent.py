"""Parameters inside the prior box <-> the unconstrained space the flow models.

The position ``u`` of ``theta`` in the box (uniform under the prior, in the
warped coordinate: log for log-uniform parameters) is mapped to
``z = Phi^-1(u)`` (``"probit"``; the prior becomes a standard normal) or
``z = logit(u)`` (``"logit"``). The maps are diagonal, so the Jacobian is a sum
over parameters.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

from xspec_sbi.inference.priors import BoxPrior

__all__ = ["to_latent", "from_latent", "latent_log_det"]


def to_latent(prior: BoxPrior, theta: np.ndarray, kind: str) -> np.ndarray:
    """Unconstrained coordinates of parameter vectors.

    Parameters
    ----------
    prior : BoxPrior
    theta : (n, n_dim) ndarray
        Parameter vectors, in the parameters' units.
    kind : {"probit", "logit"}

    Returns
    -------
    z : (n, n_dim) ndarray
        ``+-inf`` on a bound, nan outside the box.
    """
    if kind == "logit":
        return prior.to_unconstrained(theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ndtri(prior.to_unit(np.asarray(theta, dtype=float)))


def from_latent(prior: BoxPrior, z: np.ndarray, kind: str) -> np.ndarray:
    """Parameter vectors at unconstrained coordinates; the inverse of :func:`to_latent`.

    Parameters
    ----------
    prior : BoxPrior
    z : (n, n_dim) ndarray
    kind : {"probit", "logit"}

    Returns
    -------
    theta : (n, n_dim) ndarray
        Always inside the prior box.
    """
    if kind == "logit":
        return prior.from_unconstrained(z)
    return prior.from_unit(ndtr(z))


def latent_log_det(prior: BoxPrior, theta: np.ndarray, kind: str) -> np.ndarray:
    """``log|det dz/dtheta|`` of :func:`to_latent` at theta inside the box.

    Parameters
    ----------
    prior : BoxPrior
    theta : (n, n_dim) ndarray
    kind : {"probit", "logit"}

    Returns
    -------
    (n,) ndarray
        In nats per unit of each parameter.

    Notes
    -----
    For the probit map, ``dz/du = 1 / phi(z)`` and
    ``du/dtheta = g'(theta) / (g(hi) - g(lo))``, so
    ``log|dz/dtheta| = log g'(theta) - log(g(hi) - g(lo)) + z^2 / 2 + log(2 pi) / 2``.
    """
    if kind == "logit":
        return prior.log_abs_det_jacobian(theta)
    theta = np.asarray(theta, dtype=float)
    log = prior.is_log
    lo, hi = prior.lower, prior.upper
    # hi / 1 for linear parameters: a negative linear bound must not reach the log
    width = np.where(log, np.log(np.where(log, hi, 1.0) / np.where(log, lo, 1.0)), hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_gprime = np.where(log, -np.log(np.where(theta > 0, theta, np.nan)), 0.0)
        z = ndtri(prior.to_unit(theta))
    # dz/du = 1 / phi(z), du/dtheta = g'(theta) / (g(hi) - g(lo)).
    return (log_gprime - np.log(width) + 0.5 * z**2 + 0.5 * math.log(2 * math.pi)).sum(axis=1)
