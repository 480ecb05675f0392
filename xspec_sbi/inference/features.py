"""Counts -> network features: a transform, per-bin z-scoring, optional PCA."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["FeatureTransform"]


@dataclass(frozen=True, eq=False)
class FeatureTransform:
    """Counts -> network features: transform, per-bin z-score, optional PCA.

    Parameters
    ----------
    kind : {"log1p", "anscombe", "none"}
        ``log(1 + x)``, ``2 sqrt(x + 3/8)`` or the counts themselves.
    mean, std : (n_bins,) ndarray
        Per-bin z-scoring of the transformed counts (std floored at 1e-8 x max).
    components : (n_bins, n_keep) ndarray or None
        Principal axes of the z-scored training set; features are the scores
        ``z @ components`` (not whitened: the minor components, mostly Poisson
        noise, keep their small variance instead of being blown up to unit scale).
    """

    kind: str
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray | None = None

    @property
    def n_bins(self) -> int:
        """Number of count bins the transform reads."""
        return len(self.mean)

    @property
    def n_features(self) -> int:
        """Number of features it writes (``n_bins`` without PCA)."""
        return self.n_bins if self.components is None else self.components.shape[1]

    @staticmethod
    def _raw(x: np.ndarray, kind: str) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if kind == "log1p":
            return np.log1p(x)
        if kind == "anscombe":
            return 2.0 * np.sqrt(x + 0.375)
        return x

    @classmethod
    def fit(cls, x: np.ndarray, kind: str, pca_variance: float | None = None) -> FeatureTransform:
        """Fit on a training set.

        Parameters
        ----------
        x : (n, n_bins) ndarray
            Counts per bin.
        kind : {"log1p", "anscombe", "none"}
        pca_variance : float or None
            Keep the leading components holding this fraction of the variance.
        """
        t = cls._raw(x, kind)
        mean = t.mean(axis=0)
        std = t.std(axis=0)
        # Bins that never see a count carry no information; keep them at zero.
        std = np.where(std > 1e-8 * max(std.max(), 1e-300), std, 1.0)
        if pca_variance is None:
            return cls(kind, mean, std)
        z = (t - mean) / std
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        var = s**2
        frac = np.cumsum(var) / var.sum()
        n_keep = int(np.searchsorted(frac, pca_variance - 1e-12) + 1)
        return cls(kind, mean, std, vt[:n_keep].T)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, n_features) float32 features of counts ``x`` (n, n_bins)."""
        z = (self._raw(x, self.kind) - self.mean) / self.std
        if self.components is not None:
            z = z @ self.components
        return z.astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-ready record (round-trips through :meth:`from_dict`)."""
        d = {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.components is not None:
            d["components"] = self.components.tolist()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureTransform:
        """Inverse of :meth:`to_dict`."""
        comps = d.get("components")
        return cls(
            d["kind"], np.asarray(d["mean"]), np.asarray(d["std"]),
            None if comps is None else np.asarray(comps),
        )
