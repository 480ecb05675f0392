"""The XSPEC-style answer beside SBI: a fit of the statistic, then XSPEC's Goodman-Weare chain.

What ``sbi_fit`` puts next to the network's posterior, on the same data and
prior: XSPEC's ``fit`` (bounded minimisation from a given start) followed by
``chain`` (Goodman-Weare, XSPEC's walkers, burn and length).
"""
from __future__ import annotations

import logging

import numpy as np

__all__ = ["fit_and_chain"]

log = logging.getLogger("xspec_sbi")


def fit_and_chain(stat_fn, start, box, free, length, burn, walkers, rng, progress=False, *,
                  covariance=None):
    """The XSPEC-style comparison of ``sbi_fit``: C-stat fit from ``start``, then the chain.

    Parameters
    ----------
    stat_fn : callable
        ``stat(theta) -> (n,)`` of the observation (cstat or wstat).
    start : ndarray (n_free,)
        Starting point of the fit (``sbi_fit``: the best SBI sample).
    box : BoxPrior
        Fit bounds and the chain's prior: the same density (log-uniform, truncated Gaussian
        where the prior is).
    free : sequence of ParameterSpec
        The free parameters; without ``covariance`` their deltas start the walkers.
    length, burn, walkers :
        XSPEC's chain settings (samples over all walkers; walkers None: XSPEC's rule).
    rng : numpy.random.Generator
        Seeds the fit's extra starts and the chain.
    covariance : ndarray (n_free, n_free), optional
        Gaussian spread of the initial walkers around the fit (XSPEC's default
        proposal, "gaussian fit"); ``sbi_fit`` gives the covariance of the SBI
        posterior draws. XSPEC's deltas (0.01 for a norm) cannot start a chain
        on a faint source whose norm is 1e-6: they put most walkers below zero.

    Returns
    -------
    (FitResult, ChainResult)
    """
    from xspec_sbi.baseline.fit import fit
    from xspec_sbi.baseline.mcmc import run_chain
    lower, upper = box.lower, box.upper
    log.info("fitting (C-stat minimisation) from the best SBI sample")
    best = fit(stat_fn, start, lower, upper, seed=int(rng.integers(2**31)))
    log.info("Goodman-Weare chain: %s walkers, burn %d, length %d",
             walkers or "XSPEC's default number of", burn, length)
    deltas = None
    if covariance is None:
        deltas = np.array([p.delta if p.delta > 0 else 0.01 * abs(p.value) + 1e-3 for p in free])
    chain = run_chain(stat_fn, best.theta, lower, upper, names=list(box.names), walkers=walkers,
                      burn=burn, length=length, covariance=covariance, deltas=deltas,
                      prior=box, seed=int(rng.integers(2**31)), progress=progress)
    return best, chain
