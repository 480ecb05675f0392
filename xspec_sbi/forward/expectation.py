"""Expected value and variance of cstat, and the goodness of fit built on them.

When the data are drawn from the model, the cstat of each bin has a mean and
variance that depend only on the expected counts ``mu`` of that bin (Kaastra
2017, A&A 605, A51): about 1 and 2 for large ``mu``, less for small ones.
:func:`cstat_expectation` sums them exactly over the Poisson distribution;
:func:`kaastra_expectation` evaluates Kaastra's closed-form fits;
:func:`cstat_goodness` compares an observed cstat with them
(:class:`GoodnessOfFit`). Works on plain arrays of counts, as
:mod:`xspec_sbi.forward.stats` does, and uses its per-bin term so that the
expectation is that of the statistic actually computed (XSPEC's model floor
included).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, xlogy

from xspec_sbi.forward.stats import XSPEC_MODEL_FLOOR, StatisticInputError, cstat, cstat_bins

__all__ = [
    "cstat_expectation",
    "kaastra_expectation",
    "GoodnessOfFit",
    "cstat_goodness",
]

# Poisson terms kept on each side of the mean in the exact Kaastra sums: the
# neglected tail has probability below 1e-30 while the statistic grows only
# quadratically in k, so the truncation error is far below float64 rounding.
_TAIL_SIGMAS = 12.0
_TAIL_PAD = 12.0
_CHUNK_ELEMENTS = 2_000_000


def _exact_bin_moments(mu: np.ndarray, model_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of one bin's cstat term under Poisson(mu), by summation."""
    mean = np.zeros_like(mu)
    var = np.zeros_like(mu)
    order = np.argsort(mu)
    lo_all = np.floor(np.maximum(mu - _TAIL_SIGMAS * np.sqrt(mu) - _TAIL_PAD, 0.0))
    hi_all = np.ceil(mu + _TAIL_SIGMAS * np.sqrt(mu) + _TAIL_PAD)
    start = 0
    # Sorted by mu so that each chunk shares a similar window width.
    while start < mu.size:
        width = int(hi_all[order[start:]].max() - lo_all[order[start:]].min()) + 1
        n_rows = max(1, _CHUNK_ELEMENTS // max(width, 1))
        idx = order[start:start + n_rows]
        m = mu[idx][:, None]
        lo = lo_all[idx][:, None]
        w = int((hi_all[idx] - lo_all[idx]).max()) + 1
        k = lo + np.arange(w)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = xlogy(k, m) - m - gammaln(k + 1.0)
        p = np.exp(logp)
        c = cstat_bins(k, np.broadcast_to(m, k.shape), model_floor=model_floor)
        c = np.where(p > 0, c, 0.0)  # unreachable counts (mu = 0, k > 0)
        e = np.sum(p * c, axis=1)
        mean[idx] = e
        var[idx] = np.sum(p * (c - e[:, None]) ** 2, axis=1)
        start += n_rows
    return mean, var


def _kaastra_bin_moments(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaastra (2017) eqs. 8-9 and the variance fits of his Sect. 3, per bin."""
    # Coefficients checked against the exact sums (agreement <= 5e-4 per bin);
    # some public ports carry typos (0.13145, -2.9254, "0.641^mu") that are
    # off by up to 3e-2, which the test against the exact sum would catch.
    ce = np.zeros_like(mu)
    cv = np.zeros_like(mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        lnmu = np.log(mu)
        r1 = (mu > 0) & (mu <= 0.5)
        r2 = (mu > 0.5) & (mu <= 2)
        r3 = (mu > 2) & (mu <= 5)
        r4 = (mu > 5) & (mu <= 10)
        r5 = mu > 10
        ce = np.where(r1, -0.25 * mu**3 + 1.38 * mu**2 - 2 * mu * lnmu, ce)
        ce = np.where(
            r2,
            -0.00335 * mu**5 + 0.04259 * mu**4 - 0.27331 * mu**3 + 1.381 * mu**2 - 2 * mu * lnmu,
            ce,
        )
        ce = np.where(r3, 1.019275 + 0.1345 * mu ** (0.461 - 0.9 * lnmu), ce)
        ce = np.where(r4, 1.00624 + 0.604 * mu**-1.68, ce)
        ce = np.where(r5, 1 + 0.1649 / mu + 0.226 / mu**2, ce)

        # mu <= 0.1: his eq. 10-11, a five-term Poisson sum for <c^2>.
        s = np.zeros_like(mu)
        for k in range(5):
            pk = np.exp(xlogy(k, mu) - mu - gammaln(k + 1.0))
            term = mu if k == 0 else mu - k + k * np.log(k) - k * lnmu
            s = s + pk * term**2
        small = (mu > 0) & (mu <= 0.1)
        cv = np.where(small, 4.0 * s - ce**2, cv)
        pieces = [
            ((mu > 0.1) & (mu <= 0.2),
             -262 * mu**4 + 195 * mu**3 - 51.24 * mu**2 + 4.34 * mu + 0.77005),
            ((mu > 0.2) & (mu <= 0.3), 4.23 * mu**2 - 2.8254 * mu + 1.12522),
            ((mu > 0.3) & (mu <= 0.5), -3.7 * mu**3 + 7.328 * mu**2 - 3.6926 * mu + 1.20641),
            ((mu > 0.5) & (mu <= 1),
             1.28 * mu**4 - 5.191 * mu**3 + 7.666 * mu**2 - 3.5446 * mu + 1.15431),
            ((mu > 1) & (mu <= 2),
             0.1125 * mu**4 - 0.641 * mu**3 + 0.859 * mu**2 + 1.0914 * mu - 0.05748),
            ((mu > 2) & (mu <= 3), 0.089 * mu**3 - 0.872 * mu**2 + 2.8422 * mu - 0.67539),
            ((mu > 3) & (mu <= 5), 2.12336 + 0.012202 * mu ** (5.717 - 2.6 * lnmu)),
            ((mu > 5) & (mu <= 10), 2.05159 + 0.331 * mu ** (1.343 - lnmu)),
            (mu > 10, 12 / mu**3 + 0.79 / mu**2 + 0.6747 / mu + 2),
        ]
        for mask, value in pieces:
            cv = np.where(mask, value, cv)
    return ce, cv


def _expected_counts(model_counts) -> np.ndarray:
    mu = np.asarray(model_counts, dtype=float)
    if mu.ndim == 0:
        raise StatisticInputError("model_counts must have at least one axis of bins, got a scalar")
    if not np.all(np.isfinite(mu)) or np.any(mu < 0):
        raise StatisticInputError("model_counts must be finite and >= 0 for an expectation")
    return mu


def cstat_expectation(
    model_counts, *, model_floor: float = XSPEC_MODEL_FLOOR
) -> tuple[np.ndarray, np.ndarray]:
    """Expected value and variance of cstat when the data follow the model.

    Computed exactly, bin by bin, by summing over the Poisson distribution
    (truncated 12 standard deviations beyond the mean, where the neglected
    probability is below 1e-30), with the same per-bin term as :func:`cstat`.

    Parameters
    ----------
    model_counts : array_like, (n_bins,) or (n_batch, n_bins), counts
        Expected counts per bin (non-negative).
    model_floor : float, counts
        As in :func:`cstat`; it only matters for bins below 1e-5 counts.

    Returns
    -------
    mean, variance : numpy.ndarray, shape of ``model_counts`` without its last axis
        ``E[C]`` and ``Var[C]`` (bins are independent, so both add up).

    Notes
    -----
    Kaastra (2017, A&A 605, A51) eqs. 4-6; :func:`kaastra_expectation` gives his
    closed-form approximations.
    """
    mu = _expected_counts(model_counts)
    flat = mu.reshape(-1)
    mean, var = _exact_bin_moments(flat, model_floor)
    return mean.reshape(mu.shape).sum(axis=-1), var.reshape(mu.shape).sum(axis=-1)


def kaastra_expectation(model_counts) -> tuple[np.ndarray, np.ndarray]:
    """Kaastra (2017)'s approximations to the mean and variance of cstat.

    Parameters
    ----------
    model_counts : array_like, (n_bins,) or (n_batch, n_bins), counts

    Returns
    -------
    mean, variance : numpy.ndarray, shape of ``model_counts`` without its last axis

    Notes
    -----
    Piecewise fits of Kaastra (2017, A&A 605, A51), Sect. 3 (his eqs. 8-9 for
    the mean, the polynomial/exponential fits that follow for the variance,
    and for ``mu <= 0.1`` his truncated five-term sum). Accurate to a few per
    mille per bin against :func:`cstat_expectation`; the exact sum is preferred.
    """
    mu = _expected_counts(model_counts)
    ce, cv = _kaastra_bin_moments(mu)
    return ce.sum(axis=-1), cv.sum(axis=-1)


@dataclass(frozen=True)
class GoodnessOfFit:
    """A cstat value against its expectation for the fitted model.

    Attributes
    ----------
    cstat : float
        Observed cstat.
    expected : float
        ``E[C]`` for data drawn from the model.
    sigma : float
        ``sqrt(Var[C])``.
    n_bins : int
        Bins summed.
    statistic : str
        ``"cstat"`` or ``"wstat"`` (the value in ``cstat`` is then the W statistic,
        and the expectation treats the profiled background as known).
    """

    cstat: float
    expected: float
    sigma: float
    n_bins: int
    statistic: str = "cstat"

    @property
    def deviation(self) -> float:
        """``(C - E[C]) / sigma``: positive means a worse fit than expected."""
        return (self.cstat - self.expected) / self.sigma if self.sigma > 0 else float("nan")

    def __str__(self) -> str:
        name = "W-stat" if self.statistic == "wstat" else "C-stat"
        return (
            f"{name} = {self.cstat:.2f}, expected {self.expected:.2f} +/- {self.sigma:.2f}, "
            f"deviation {self.deviation:+.2f} sigma ({self.n_bins} bins)"
        )


def cstat_goodness(
    counts, model_counts, *, model_floor: float = XSPEC_MODEL_FLOOR
) -> GoodnessOfFit:
    """cstat of one spectrum with its Kaastra (2017) expectation and deviation.

    Parameters
    ----------
    counts : array_like, (n_bins,), counts
        Observed counts.
    model_counts : array_like, (n_bins,), counts
        Best-fit expected counts.
    model_floor : float, counts
        As in :func:`cstat`.

    Returns
    -------
    GoodnessOfFit
        ``str()`` reads "C-stat = x, expected y +/- z, deviation d sigma".
    """
    S = np.asarray(counts, dtype=float)
    m = np.asarray(model_counts, dtype=float)
    if S.ndim != 1 or m.shape != S.shape:
        raise StatisticInputError(
            f"cstat_goodness takes one spectrum: counts {S.shape} and model_counts {m.shape} "
            "must both be (n_bins,)"
        )
    c = float(cstat(S, m, model_floor=model_floor))
    mean, var = cstat_expectation(m, model_floor=model_floor)
    return GoodnessOfFit(cstat=c, expected=float(mean), sigma=float(np.sqrt(var)), n_bins=S.size)
