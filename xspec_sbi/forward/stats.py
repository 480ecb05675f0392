"""Poisson fit statistics as XSPEC defines them: cstat and wstat.

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

The expected value and variance of cstat (Kaastra 2017) and the goodness of
fit built on them are in :mod:`xspec_sbi.forward.expectation`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy

__all__ = [
    "XSPEC_MODEL_FLOOR",
    "StatisticInputError",
    "cstat",
    "cstat_bins",
    "wstat",
    "wstat_bins",
    "wstat_background",
]

#: XSPEC's floor on the predicted counts of a bin (``StdCstat::FLOOR``), counts.
XSPEC_MODEL_FLOOR = 1.0e-5


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
    :func:`xspec_sbi.forward.expectation.cstat_expectation` (about 1 and 2 per bin
    for large counts).
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
