"""Proposals for the exact-likelihood check beyond the network: mixtures and a refitted Student t.

The importance check only needs draws from some density that it can
evaluate and that covers the posterior. When the network alone does not
(``q`` too small where the exact posterior has mass), a defensive mixture
with the restricted prior bounds the weights (Hesterberg 1995), and a
Student t refitted to the weighted draws moves mass to where the exact
posterior is (population Monte Carlo, Cappe et al. 2004). Each is a plain
density: ``sample(n, rng=) -> theta`` and ``log_prob(theta) -> (n,)``.

The t is fitted in the probit latent space of the prior box
(:mod:`xspec_sbi.inference.latent`), where the prior is a standard normal
and a posterior piled against a bound keeps a Gaussian-like tail, so its
draws always lie inside the box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from xspec_sbi.inference.latent import from_latent, latent_log_det, to_latent
from xspec_sbi.inference.priors import BoxPrior

__all__ = ["NetworkAt", "LatentStudentT", "Mixture"]


@dataclass(frozen=True)
class NetworkAt:
    """The network's posterior at one observation, as a plain density."""

    posterior: object
    x_obs: np.ndarray

    def sample(self, n: int, *, rng) -> np.ndarray:
        return self.posterior.sample(self.x_obs, int(n), rng=rng)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        return self.posterior.log_prob(theta, self.x_obs)


@dataclass(frozen=True)
class LatentStudentT:
    """A multivariate Student t in the probit latent space of ``prior``, as a density of theta.

    Parameters
    ----------
    prior : BoxPrior
    mean : (k,) ndarray
    cov : (k, k) ndarray
        Scale matrix in the latent space.
    df : float
        Degrees of freedom (heavy tails: a proposal must not be narrower than the target).
    """

    prior: BoxPrior
    mean: np.ndarray
    cov: np.ndarray
    df: float = 4.0

    @classmethod
    def fit(cls, prior: BoxPrior, theta: np.ndarray, *, inflate: float = 1.5, df: float = 4.0):
        """Mean and covariance of ``theta``'s latent coordinates, the covariance times ``inflate``."""
        z = to_latent(prior, theta, "probit")
        z = z[np.all(np.isfinite(z), axis=1)]
        k = prior.n_dim
        cov = np.atleast_2d(np.cov(z.T)) if len(z) > k else np.eye(k)
        cov = inflate * cov + 1e-6 * np.eye(k)   # a few distinct draws must not give a flat t
        return cls(prior, z.mean(axis=0), cov, df)

    def sample(self, n: int, *, rng) -> np.ndarray:
        """``n`` draws strictly inside the box.

        A draw far in the t's tail (latent beyond about 8.3) rounds onto a
        bound of the box, where the density is not defined (``log_prob`` -inf):
        such rows are drawn again. They are a fraction of about 1e-4 at most,
        so the density they leave out is negligible.
        """
        rng = np.random.default_rng(rng)
        k = len(self.mean)
        chol = np.linalg.cholesky(self.cov)
        out = np.empty((int(n), k))
        todo = np.arange(int(n))
        for _ in range(100):
            g = rng.normal(size=(len(todo), k)) @ chol.T
            w = np.sqrt(rng.chisquare(self.df, size=(len(todo), 1)) / self.df)
            out[todo] = from_latent(self.prior, self.mean + g / w, "probit")
            with np.errstate(invalid="ignore", divide="ignore"):
                todo = todo[~np.all(np.isfinite(to_latent(self.prior, out[todo], "probit")), axis=1)]
            if not len(todo):
                break
        return out

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """(n,) log density per unit of each parameter (-inf on or outside the box)."""
        theta = np.atleast_2d(theta)
        k, nu = len(self.mean), self.df
        with np.errstate(invalid="ignore", divide="ignore"):
            z = to_latent(self.prior, theta, "probit")
            d = z - self.mean
            m = np.einsum("ni,ij,nj->n", d, np.linalg.inv(self.cov), d)
            log_t = (gammaln((nu + k) / 2) - gammaln(nu / 2) - 0.5 * k * math.log(nu * math.pi)
                     - 0.5 * np.linalg.slogdet(self.cov)[1] - 0.5 * (nu + k) * np.log1p(m / nu))
            out = log_t + latent_log_det(self.prior, theta, "probit")
        return np.where(np.isfinite(out), out, -np.inf)


@dataclass(frozen=True)
class Mixture:
    """``sum_j w_j q_j``: drawn stratified (``round(w_j n)`` from each), the draws shuffled.

    Stratified draws are a valid importance sample of the mixture density;
    shuffling keeps any leading subset a draw of the mixture too.
    """

    components: tuple
    weights: tuple

    def sample(self, n: int, *, rng) -> np.ndarray:
        rng = np.random.default_rng(rng)
        w = np.asarray(self.weights, float) / np.sum(self.weights)
        counts = np.floor(w * n).astype(int)
        counts[0] += int(n) - counts.sum()
        draws = np.concatenate([c.sample(m, rng=rng) for c, m in zip(self.components, counts) if m > 0])
        return draws[rng.permutation(len(draws))]

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        w = np.asarray(self.weights, float) / np.sum(self.weights)
        with np.errstate(divide="ignore"):
            parts = [math.log(wj) + np.asarray(c.log_prob(theta), float)
                     for wj, c in zip(w, self.components)]
        return np.logaddexp.reduce(np.vstack(parts), axis=0)
