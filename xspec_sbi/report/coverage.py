"""Coverage of the network's credible intervals, measured for the report.

The validation split of training is not kept in the result (and it chose the
stopping epoch, so it is not held back in the strict sense). The report
therefore draws a fresh test set: parameters from the distribution the network
was trained on (the restricted prior, or the user's prior), one spectrum
simulated at each, and the network's posterior for each spectrum. A calibrated
network puts the true value inside its central p % interval p % of the time.

It is measured only when the network was trained in this call with one round:
a loaded network may have been trained on another prior, and a multi-round
posterior is tuned to the observation, not to the prior's spectra.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

__all__ = ["ReportCoverage", "report_coverage", "coverage_unavailable"]

#: Test cases, posterior draws per case and seed of the report's coverage test.
N_TEST, N_SAMPLES, SEED = 100, 200, 0

_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ReportCoverage:
    """Coverage of central intervals on fresh simulations from the training distribution.

    Attributes
    ----------
    names : tuple of str
    levels : tuple of float
        Nominal credibilities (0.68, 0.90, 0.95).
    fractions : ndarray (n_levels, n_free)
        Fraction of test cases whose true value lies in the interval.
    n_test : int
    n_samples : int
        Posterior draws per test case.
    seed : int
    source : str
        Where the test parameters came from (for the report's label).
    """

    names: tuple
    levels: tuple
    fractions: np.ndarray
    n_test: int
    n_samples: int
    seed: int
    source: str

    def standard_error(self, level: float) -> float:
        """Binomial standard error of a fraction at nominal ``level``."""
        return float(np.sqrt(level * (1 - level) / self.n_test))

    def state(self) -> str:
        """``"passed"`` within 2 standard errors everywhere, ``"failed"`` beyond 3 somewhere, else
        ``"warning"``."""
        z = max(abs(f - lvl) / self.standard_error(lvl)
                for lvl, row in zip(self.levels, self.fractions) for f in row)
        return "passed" if z <= 2 else "failed" if z > 3 else "warning"

    def to_dict(self) -> dict:
        return {"levels": list(self.levels), "names": list(self.names),
                "fractions": np.asarray(self.fractions).tolist(), "n_test": self.n_test,
                "n_samples": self.n_samples, "seed": self.seed, "source": self.source,
                "state": self.state()}


def coverage_unavailable(result) -> str | None:
    """Why the report does not measure coverage for ``result``, or None when it does."""
    settings = result.settings
    if settings is not None and settings.rounds > 1:
        return "multi-round posterior: tuned to this observation, not calibrated over the prior"
    if result.trust.ood is None:
        # the out-of-distribution check runs exactly when training spectra of this call exist
        return "network not trained in this call (loaded from a file)"
    return None


def report_coverage(result, n_test: int = N_TEST, n_samples: int = N_SAMPLES,
                    seed: int = SEED) -> ReportCoverage | None:
    """Coverage of ``result.posterior`` on ``n_test`` fresh simulations, or None (see module).

    Parameters
    ----------
    result : SBIResult
    n_test : int
        Test spectra, each simulated at a parameter vector from the training
        distribution.
    n_samples : int
        Posterior draws per test spectrum.
    seed : int
        Seeds the test parameters, the simulations and the draws (a generator
        of its own: the result's numbers are untouched).

    Returns
    -------
    ReportCoverage or None
        Cached per result for the default arguments, so ``summary.json`` and
        the page show the same numbers without simulating twice.
    """
    if coverage_unavailable(result) is not None:
        return None
    key = (n_test, n_samples, seed)
    cached = _cache.get(result, {})
    if key in cached:
        return cached[key]
    from xspec_sbi.checks.calibration import interval_coverage

    rng = np.random.default_rng(seed)
    if result.restriction is not None:
        dist, source = result.restriction.prior, "the restricted prior the network was trained on"
    else:
        dist, source = result.prior, "your prior (the network's training distribution)"
    theta = dist.sample(n_test, rng=rng)
    x = result.session.simulator()(theta, rng)
    samples = result.posterior.sample(x, n_samples, rng=rng)
    levels = (0.68, 0.90, 0.95)
    out = ReportCoverage(tuple(result.names), levels, interval_coverage(samples, theta, levels),
                         n_test, n_samples, seed, source)
    cached[key] = out
    _cache[result] = cached
    return out
