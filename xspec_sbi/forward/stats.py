"""Poisson fit statistics as XSPEC defines them: cstat, wstat, Kaastra (2017).

Everything here works on plain arrays of counts; nothing knows about spectra,
responses or models. Shapes follow the project convention: observed counts
``(n_bins,)`` or ``(n_batch, n_bins)``, expected counts ``(n_batch, n_bins)``;
statistics are summed over the last axis, so a batch gives ``(n_batch,)``.

Conventions taken from XSPEC
----------------------------
The formulas are those of the XSPEC manual, Appendix B "Statistics in XSPEC"
(https://heasarc.gsfc.nasa.gov/xanadu/xspec/manual/XSappendixStatistics.html);
the treatment of a zero model is read from XSPEC's own source,
``Xspec/src/XSFit/StatMethod/Cstat/CstatVariants.cxx`` (HEASoft 6.20,
``StdCstat::specificPerform``/``specificPerformB``).

* cstat, bin with ``S = 0``: contributes ``2 m`` exactly (``0`` when ``m = 0``).
* cstat, bin with ``S > 0`` and ``m < 1e-5`` counts (including ``m = 0``):
  XSPEC replaces the model by its floor ``FLOOR = 1e-5`` counts
  (``yi = max(yi, FLOOR/tsi)``), so the bin contributes the large but finite
  ``2 (1e-5 - S + S ln(S / 1e-5))``. We reproduce this in bins with data only
  (``model_floor``; ``model_floor=0`` gives the pure likelihood, ``+inf``).
  XSPEC also floors bins with ``S = 0``, adding at most ``2e-5`` per such bin;
  we do not, so that an empty bin with a zero model contributes exactly 0.
* wstat needs no floor: with the profiled background every logarithm stays
  finite at ``m = 0`` (see :func:`wstat`), so it is evaluated exactly.
* A negative expected count is not a Poisson mean: the row's statistic is
  ``+inf``. NaN in the model propagates as NaN. (XSPEC would floor both.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, xlogy

__all__ = [
    "XSPEC_MODEL_FLOOR",
    "StatisticInputError",
    "cstat",
    "cstat_bins",
    "wstat",
    "wstat_bins",
    "wstat_background",
    "cstat_expectation",
    "kaastra_expectation",
    "GoodnessOfFit",
    "cstat_goodness",
]

#: XSPEC's floor on the predicted counts of a bin (``StdCstat::FLOOR``), counts.
XSPEC_MODEL_FLOOR = 1.0e-5

# Poisson terms kept on each side of the mean in the exact Kaastra sums: the
# neglected tail has probability below 1e-30 while the statistic grows only
# quadratically in k, so the truncation error is far below float64 rounding.
_TAIL_SIGMAS = 12.0
_TAIL_PAD = 12.0
_CHUNK_ELEMENTS = 2_000_000


class StatisticInputError(ValueError):
    """Counts, models or scaling factors that no Poisson statistic accepts."""


def _as_counts(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        raise StatisticInputError(f"{what} must have at least one axis of bins, got a scalar")
    if not np.all(np.isfinite(arr)):
        raise StatisticInputError(f"{what} contains non-finite values")
    if np.any(arr < 0):
        raise StatisticInputError(f"{what} contains negative counts (min {arr.min():g})")
    return arr


def _as_model(values, what: str = "model_counts") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        raise StatisticInputError(f"{what} must have at least one axis of bins, got a scalar")
    return arr


def _check_bins(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise StatisticInputError(
            f"{names[0]} has {a.shape[-1]} bins but {names[1]} has {b.shape[-1]}"
        )


def cstat_bins(counts, model_counts, *, model_floor: float = XSPEC_MODEL_FLOOR) -> np.ndarray:
    """XSPEC's cstat contribution of each bin.

    Parameters
    ----------
    counts : array_like, (n_bins,) or (n_batch, n_bins), counts
        Observed counts ``S`` (non-negative; need not be integers).
    model_counts : array_like, (n_batch, n_bins) or (n_bins,), counts
        Expected counts ``m`` (model rate times exposure and areascal).
    model_floor : float, counts
        Floor applied to ``m`` in bins with ``S > 0``; XSPEC uses ``1e-5``.

    Returns
    -------
    numpy.ndarray, broadcast shape of the inputs
        ``2 (m - S + S (ln S - ln m))``, and ``2 m`` where ``S = 0``.
    """
    S = _as_counts(counts, "counts")
    m = _as_model(model_counts)
    _check_bins(S, m, ("counts", "model_counts"))
    if model_floor < 0:
        raise StatisticInputError(f"model_floor must be >= 0, got {model_floor!r}")
    S, m = np.broadcast_arrays(S, m)
    has_data = S > 0
    m_eff = np.where(has_data, np.maximum(m, model_floor), m)
    with np.errstate(divide="ignore", invalid="ignore"):
        # xlogy(0, .) = 0, so an empty bin reduces to 2m without a branch.
        term = 2.0 * (m_eff - S + xlogy(S, S) - xlogy(S, m_eff))
    return np.where(m < 0, np.inf, term)


def cstat(counts, model_counts, *, model_floor: float = XSPEC_MODEL_FLOOR) -> np.ndarray:
    """XSPEC's cstat (Cash statistic with the data-dependent term), summed over bins.

    Parameters
    ----------
    counts : array_like, (n_bins,) or (n_batch, n_bins), counts
        Observed counts ``S``.
    model_counts : array_like, (n_batch, n_bins), counts
        Expected counts ``m``, one row per parameter vector.
    model_floor : float, counts
        See :func:`cstat_bins` and the module notes.

    Returns
    -------
    numpy.ndarray, (n_batch,)
        ``C = 2 sum_i (m_i - S_i + S_i (ln S_i - ln m_i))``; a row with a
        negative expected count gives ``+inf``.

    Notes
    -----
    For ``S`` drawn from Poisson(``m``), ``C`` has the mean and variance of
    :func:`cstat_expectation` (about 1 and 2 per bin for large counts).
    """
    return np.sum(cstat_bins(counts, model_counts, model_floor=model_floor), axis=-1)


def _scales(t, what: str) -> np.ndarray:
    arr = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise StatisticInputError(f"{what} must be finite and > 0 (exposure x backscal x areascal)")
    return arr


def _wstat_inputs(counts, bkg_counts, model_counts, t_src, t_bkg):
    S = _as_counts(counts, "counts")
    B = _as_counts(bkg_counts, "bkg_counts")
    mu = _as_model(model_counts)
    _check_bins(S, mu, ("counts", "model_counts"))
    _check_bins(B, mu, ("bkg_counts", "model_counts"))
    ts = _scales(t_src, "t_src")
    tb = _scales(t_bkg, "t_bkg")
    return np.broadcast_arrays(S, B, mu, ts, tb)


def _profile_rate(S, B, y, ts, tb):
    """Profile-likelihood background rate ``f`` (XSPEC manual, Appendix B)."""
    t = ts + tb
    b = t * y - S - B
    c = -B * y
    d = np.sqrt(b * b - 4.0 * t * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The two algebraically equal roots, each used where it does not cancel.
        f = np.where(b >= 0, -2.0 * c / (b + d), (d - b) / (2.0 * t))
    # B = 0: the background rate is 0 once the source alone exceeds the data.
    f_b0 = np.maximum(S / t - y, 0.0)
    return np.where(B > 0, f, f_b0)


def wstat_bins(counts, bkg_counts, model_counts, t_src, t_bkg) -> np.ndarray:
    """XSPEC's W statistic (cstat with a Poisson background) for each bin.

    Parameters
    ----------
    counts : array_like, (n_bins,) or (n_batch, n_bins), counts
        Source-region counts ``S``.
    bkg_counts : array_like, (n_bins,) or (n_batch, n_bins), counts
        Background-region counts ``B``.
    model_counts : array_like, (n_batch, n_bins), counts
        Expected *source* counts in the source region, ``t_s m``.
    t_src, t_bkg : float or array_like (n_bins,), s
        Exposure x backscal x areascal of the source and background spectra.
        Only their ratio matters (XSPEC itself uses ``t_s = exposure x
        areascal`` and ``t_b = exposure_b x areascal_b x backscal_b /
        backscal_s``, which has the same ratio).

    Returns
    -------
    numpy.ndarray, broadcast shape of the inputs
        ``2 W_i``; ``+inf`` where the expected counts are negative.

    Notes
    -----
    With ``y = model_counts / t_s``, ``t = t_s + t_b`` and ``f`` the profiled
    background rate::

        W_i = t_s y + t f - S ln(t_s y + t_s f) - B ln(t_b f)
              - S (1 - ln S) - B (1 - ln B)

    and XSPEC's special cases: ``S = 0``: ``W_i = t_s y - B ln(t_b / t)``;
    ``B = 0, y <= S / t``: ``W_i = -t_b y - S ln(t_s / t)``;
    ``B = 0, y > S / t``: ``W_i = t_s y + S (ln S - ln(t_s y) - 1)``.
    """
    S, B, mu, ts, tb = _wstat_inputs(counts, bkg_counts, model_counts, t_src, t_bkg)
    t = ts + tb
    y = mu / ts
    f = _profile_rate(S, B, y, ts, tb)
    with np.errstate(divide="ignore", invalid="ignore"):
        general = (
            ts * y + t * f
            - xlogy(S, ts * y + ts * f) - xlogy(B, tb * f)
            - S + xlogy(S, S) - B + xlogy(B, B)
        )
        s_zero = ts * y - B * np.log(tb / t)
        b_zero_low = -tb * y - S * np.log(ts / t)
        b_zero_high = ts * y + S * (np.log(S) - np.log(ts * y) - 1.0)
    b_zero = np.where(y <= S / t, b_zero_low, b_zero_high)
    w = np.where(S == 0, s_zero, np.where(B == 0, b_zero, general))
    return np.where(mu < 0, np.inf, 2.0 * w)


def wstat(counts, bkg_counts, model_counts, t_src, t_bkg) -> np.ndarray:
    """XSPEC's W statistic summed over bins: ``(n_batch,)``.

    Parameters are those of :func:`wstat_bins`. Use it instead of
    :func:`cstat` when a background spectrum is loaded and not modelled
    (XSPEC's ``statistic cstat`` with a background file).
    """
    return np.sum(wstat_bins(counts, bkg_counts, model_counts, t_src, t_bkg), axis=-1)


def wstat_background(counts, bkg_counts, model_counts, t_src, t_bkg) -> np.ndarray:
    """Profiled background counts in the *source* region, ``t_s f``.

    Parameters are those of :func:`wstat_bins`.

    Returns
    -------
    numpy.ndarray, broadcast shape of the inputs, counts
        The background expectation that maximises the likelihood for the given
        source model: simulations of wstat data draw source-region background
        from Poisson(``t_s f``) and background-region counts from
        Poisson(``t_b f``).
    """
    S, B, mu, ts, tb = _wstat_inputs(counts, bkg_counts, model_counts, t_src, t_bkg)
    return ts * _profile_rate(S, B, mu / ts, ts, tb)


# ---------------------------------------------------------------------------
# Expected value and variance of cstat (Kaastra 2017, A&A 605, A51)


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
    """

    cstat: float
    expected: float
    sigma: float
    n_bins: int

    @property
    def deviation(self) -> float:
        """``(C - E[C]) / sigma``: positive means a worse fit than expected."""
        return (self.cstat - self.expected) / self.sigma if self.sigma > 0 else float("nan")

    def __str__(self) -> str:
        return (
            f"C-stat = {self.cstat:.2f}, expected {self.expected:.2f} +/- {self.sigma:.2f}, "
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
