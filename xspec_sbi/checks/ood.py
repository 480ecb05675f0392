"""Is the observation inside what the network was trained on? (out-of-distribution check)

A neural posterior is only as good as its training set: an observation unlike
every simulation the network saw (a brighter source, a line the model lacks)
gets a confident but meaningless answer. :func:`ood_check` (or
:class:`OODReference` fitted once and reused) compares the total counts with
the training totals, and the spectral shape with the training spectra through
a principal-component model of ``log(1 + counts)``. Works on plain arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xspec_sbi.checks.inputs import TrustError, as_spectra

__all__ = ["OODResult", "OODReference", "ood_check", "leading_components", "EXACT_SVD_MAX"]

# Relative floor on the per-bin spread, so bins with no counts anywhere in the
# training set do not divide by zero.
_STD_FLOOR = 1e-8


#: Largest number of bins (or training rows, whichever is fewer) whose principal components
#: come from a full SVD; beyond, from a seeded randomized range finder (Halko, Martinsson &
#: Tropp 2011): 3,000 training spectra of 900 bins took 12.0 s by full SVD and 1.4 s by the
#: range finder in one process on 2 cores (10,000 of 1,900 bins, as for an ungrouped XMM-pn
#: spectrum: 81 s and 2.1 s in separate runs).
EXACT_SVD_MAX = 500


def leading_components(z: np.ndarray, k: int, *, oversample: int = 10, power_iterations: int = 4,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` (or more) largest singular values of ``z`` and their right singular vectors.

    Parameters
    ----------
    z : ndarray (n, m)
    k : int
        Components wanted.
    oversample, power_iterations : int
        Extra directions and subspace iterations of the randomized range finder.
    seed : int
        Seeds the finder's Gaussian test matrix: the same ``z`` gives the same components.

    Returns
    -------
    s : ndarray (r,)
        Singular values, largest first (``r >= k`` unless ``z`` has fewer).
    vt : ndarray (r, m)
        Right singular vectors, one per row.

    Notes
    -----
    Up to :data:`EXACT_SVD_MAX` this is the full SVD. Beyond, ``z``'s range is
    found from ``z`` applied to ``k + oversample`` Gaussian vectors, refined by
    ``power_iterations`` rounds of ``z z^T`` (orthonormalised each time), and
    the SVD of ``z`` projected on it gives the components; for spectra, whose
    singular values fall fast, they match the full SVD's to 1e-6 or better (tests/test_ood_components.py).
    """
    n, m = z.shape
    r = min(int(k) + int(oversample), n, m)
    if min(n, m) <= EXACT_SVD_MAX or r >= min(n, m):
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        return s, vt
    q = z @ np.random.default_rng(seed).standard_normal((m, r))
    for _ in range(int(power_iterations)):
        q = np.linalg.qr(q)[0]
        q = z @ (z.T @ q)
    q = np.linalg.qr(q)[0]
    _, s, vt = np.linalg.svd(q.T @ z, full_matrices=False)
    return s, vt


def _upper_quantile(sorted_ref: np.ndarray, value: float) -> float:
    """Mid-rank fraction of the reference at or below ``value``."""
    below = np.searchsorted(sorted_ref, value, side="left")
    at_or_below = np.searchsorted(sorted_ref, value, side="right")
    return float((below + at_or_below) / (2.0 * sorted_ref.size))


@dataclass(frozen=True)
class OODResult:
    """Where an observation sits relative to the training spectra.

    Attributes
    ----------
    total_counts : float
        Observed counts summed over bins.
    total_quantile : float
        Mid-rank quantile of ``total_counts`` among the training totals.
    total_range : tuple of float
        (min, max) of the training totals, counts.
    shape_distance : float
        Mahalanobis distance of the observation in the leading principal
        components of the z-scored ``log(1 + counts)``.
    shape_quantile : float
        Its quantile among the training spectra's own distances.
    residual_distance : float
        Norm of what those components leave unexplained, each bin in units of
        the training spectra's own residual spread in that bin (about
        ``sqrt(n_bins - n_components)`` for a training-like spectrum).
    residual_quantile : float
        Its quantile among the training spectra's own residual distances.
    residual_peak : float
        Largest standardized residual of a single bin (a narrow line shows here
        first when there are many bins).
    residual_peak_bin : int
        Index of that bin (0-based, among the bins given).
    residual_peak_quantile : float
        Quantile of ``residual_peak`` among the training spectra's own peaks.
    n_components : int
        Principal components used.
    flagged_total, flagged_shape : bool
        Which check failed.
    warning : str or None
        Why the observation looks out of distribution; None when it does not.
    """

    total_counts: float
    total_quantile: float
    total_range: tuple[float, float]
    shape_distance: float
    shape_quantile: float
    residual_distance: float
    residual_quantile: float
    residual_peak: float
    residual_peak_bin: int
    residual_peak_quantile: float
    n_components: int
    flagged_total: bool
    flagged_shape: bool
    warning: str | None

    @property
    def flagged(self) -> bool:
        """True when either check failed."""
        return self.flagged_total or self.flagged_shape

    def summary(self) -> str:
        """The result table's text: the warning when flagged, else ``""`` (no row is shown)."""
        return self.warning or ""

    def __str__(self) -> str:
        if self.warning:
            return self.warning
        return (f"inside the training distribution (total-counts quantile "
                f"{self.total_quantile:.3f}, shape quantile {self.shape_quantile:.3f}, "
                f"residual quantile {self.residual_quantile:.3f})")


@dataclass(frozen=True, eq=False)
class OODReference:
    """The training spectra summarised once, to check many observations.

    Build it with :meth:`fit`.

    Attributes
    ----------
    mean, std : numpy.ndarray, (n_bins,)
        Per-bin mean and spread of ``log(1 + counts)`` over the training set.
    components : numpy.ndarray, (n_bins, n_components)
        Leading principal axes of the z-scored training spectra.
    score_std : numpy.ndarray, (n_components,)
        Spread of the training scores along each axis.
    residual_std : numpy.ndarray, (n_bins,)
        Per-bin spread of the training spectra's residuals outside the components.
    totals : numpy.ndarray, (n_train,)
        Sorted training total counts.
    shape_distances, residual_distances, residual_peaks : numpy.ndarray, (n_train,)
        Sorted distances and peak residuals of the training spectra themselves.
    total_bounds : tuple of float
        Quantile window of the totals outside which an observation is flagged.
    shape_level : float
        Quantile of the training distances above which an observation is flagged.
    """

    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray
    score_std: np.ndarray
    residual_std: np.ndarray
    totals: np.ndarray
    shape_distances: np.ndarray
    residual_distances: np.ndarray
    residual_peaks: np.ndarray
    total_bounds: tuple[float, float] = (0.001, 0.999)
    shape_level: float = 0.999

    @property
    def n_bins(self) -> int:
        """Number of bins of the training spectra."""
        return self.mean.size

    @classmethod
    def fit(
        cls,
        x_train,
        *,
        n_components: int = 10,
        total_bounds: tuple[float, float] = (0.001, 0.999),
        shape_level: float = 0.999,
        max_rows: int = 20_000,
    ) -> OODReference:
        """Summarise training spectra.

        Parameters
        ----------
        x_train : array_like, (n_train, n_bins), counts
            Simulated spectra the network was trained on (at least 20).
        n_components : int
            Principal components kept (fewer when the data have fewer).
        total_bounds : (float, float)
            Training-total quantiles outside which an observation is flagged.
        shape_level : float
            Training-distance quantile above which an observation is flagged.
        max_rows : int
            At most this many evenly spaced training rows are used for the
            principal components and the distance quantiles (all rows for the
            totals), which bounds the cost for large training sets.

        Returns
        -------
        OODReference

        Notes
        -----
        The training distances are computed in sample, on the spectra that
        defined the components; the optimism this brings is of order
        ``n_components / n_train`` and negligible for training sets of thousands.
        """
        x = as_spectra(x_train, "x_train", 2)
        n_train, n_bins = x.shape
        if n_train < 20:
            raise TrustError(f"x_train must hold at least 20 spectra, got {n_train}")
        lo, hi = (float(v) for v in total_bounds)
        if not 0.0 <= lo < hi <= 1.0:
            raise TrustError(f"total_bounds must satisfy 0 <= lower < upper <= 1, got {total_bounds!r}")
        if not 0.0 < shape_level < 1.0:
            raise TrustError(f"shape_level must be in (0, 1), got {shape_level!r}")
        if int(n_components) < 1:
            raise TrustError(f"n_components must be >= 1, got {n_components!r}")
        totals = np.sort(x.sum(axis=1))
        if n_train > max_rows:
            x = x[np.linspace(0, n_train - 1, int(max_rows)).round().astype(int)]
        t = np.log1p(x)
        mean = t.mean(axis=0)
        std = t.std(axis=0)
        std = np.where(std > _STD_FLOOR * max(std.max(), 1e-300), std, 1.0)
        z = (t - mean) / std
        s, vt = leading_components(z, int(n_components))
        n_keep = int(min(n_components, n_bins, len(z) - 1, np.count_nonzero(s > 1e-10 * s[0])))
        n_keep = max(n_keep, 1)
        comps = vt[:n_keep].T
        score_std = s[:n_keep] / math.sqrt(len(z))
        score_std = np.where(score_std > 0, score_std, 1.0)
        resid = z - (z @ comps) @ comps.T
        # Bins fully described by the components have no residual spread; a unit
        # scale there keeps a departure visible instead of dividing by zero.
        r_std = resid.std(axis=0)
        r_std = np.where(r_std > _STD_FLOOR * max(r_std.max(), 1e-300), r_std, 1.0)
        empty = np.empty(0)
        ref = cls(mean, std, comps, score_std, r_std, totals, empty, empty, empty, (lo, hi),
                  float(shape_level))
        d_shape, d_res, peak, _ = ref._distances(z)
        object.__setattr__(ref, "shape_distances", np.sort(d_shape))
        object.__setattr__(ref, "residual_distances", np.sort(d_res))
        object.__setattr__(ref, "residual_peaks", np.sort(peak))
        return ref

    def _distances(self, z: np.ndarray):
        scores = z @ self.components
        d_shape = np.sqrt(np.sum((scores / self.score_std) ** 2, axis=1))
        r = np.abs(z - scores @ self.components.T) / self.residual_std
        d_res = np.sqrt(np.sum(r * r, axis=1))
        peak_bin = np.argmax(r, axis=1)
        return d_shape, d_res, r[np.arange(len(r)), peak_bin], peak_bin

    def check(self, x_obs) -> OODResult:
        """Is one observed spectrum inside the training distribution?

        Parameters
        ----------
        x_obs : array_like, (n_bins,), counts

        Returns
        -------
        OODResult
        """
        x = as_spectra(x_obs, "x_obs", 1)
        if x.size != self.n_bins:
            raise TrustError(f"x_obs has {x.size} bins but the training spectra have {self.n_bins}")
        total = float(x.sum())
        t_lo, t_hi = float(self.totals[0]), float(self.totals[-1])
        q_total = _upper_quantile(self.totals, total)
        outside_range = total < t_lo or total > t_hi
        flag_total = outside_range or not (self.total_bounds[0] <= q_total <= self.total_bounds[1])

        z = ((np.log1p(x) - self.mean) / self.std)[None, :]
        d_shape, d_res, peak, peak_bin = (v[0] for v in self._distances(z))
        d_shape, d_res, peak, peak_bin = float(d_shape), float(d_res), float(peak), int(peak_bin)
        q_shape = _upper_quantile(self.shape_distances, d_shape)
        q_res = _upper_quantile(self.residual_distances, d_res)
        q_peak = _upper_quantile(self.residual_peaks, peak)
        lim_shape = float(np.quantile(self.shape_distances, self.shape_level))
        lim_res = float(np.quantile(self.residual_distances, self.shape_level))
        lim_peak = float(np.quantile(self.residual_peaks, self.shape_level))
        flag_shape = d_shape > lim_shape or d_res > lim_res or peak > lim_peak

        reasons = []
        if flag_total:
            where = "outside the training range" if outside_range else "in the tail of the training set"
            reasons.append(
                f"total counts {total:.6g} are {where} (quantile {q_total:.4f}; training "
                f"totals {t_lo:.6g} to {t_hi:.6g})"
            )
        if flag_shape:
            parts = []
            if d_shape > lim_shape:
                parts.append(f"principal-component distance {d_shape:.3g} > {lim_shape:.3g}")
            if d_res > lim_res:
                parts.append(f"residual distance {d_res:.3g} > {lim_res:.3g}, a feature the "
                             "training spectra do not have")
            if peak > lim_peak:
                parts.append(f"bin {peak_bin} departs by {peak:.3g} > {lim_peak:.3g} residual "
                             "spreads, a narrow feature the training spectra do not have")
            reasons.append(
                f"the spectral shape is unlike the training spectra ({'; '.join(parts)}; "
                f"the {self.shape_level:g} quantile of the training set)"
            )
        warning = None
        if reasons:
            warning = ("observation outside the training distribution: " + " and ".join(reasons)
                       + "; the network's posterior is an extrapolation here (widen the prior or "
                       "retrain on simulations that cover this observation)")
        return OODResult(
            total_counts=total,
            total_quantile=q_total,
            total_range=(t_lo, t_hi),
            shape_distance=d_shape,
            shape_quantile=q_shape,
            residual_distance=d_res,
            residual_quantile=q_res,
            residual_peak=peak,
            residual_peak_bin=peak_bin,
            residual_peak_quantile=q_peak,
            n_components=int(self.components.shape[1]),
            flagged_total=bool(flag_total),
            flagged_shape=bool(flag_shape),
            warning=warning,
        )


def ood_check(
    x_obs,
    x_train,
    *,
    n_components: int = 10,
    total_bounds: tuple[float, float] = (0.001, 0.999),
    shape_level: float = 0.999,
    max_rows: int = 20_000,
) -> OODResult:
    """Is the observation inside what the network was trained on?

    Parameters
    ----------
    x_obs : array_like, (n_bins,), counts
        Observed spectrum (the noticed, grouped bins the network sees).
    x_train : array_like, (n_train, n_bins), counts
        Training simulations.
    n_components, total_bounds, shape_level, max_rows
        See :meth:`OODReference.fit`.

    Returns
    -------
    OODResult
        ``warning`` names the reason when flagged: total counts outside the
        training quantile window ``total_bounds`` (or the training range), or a
        shape distance (principal-component Mahalanobis distance, or the
        residual outside the components) above the ``shape_level`` quantile of
        the training spectra's own distances.
    """
    ref = OODReference.fit(x_train, n_components=n_components, total_bounds=total_bounds,
                           shape_level=shape_level, max_rows=max_rows)
    return ref.check(x_obs)
