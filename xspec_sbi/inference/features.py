"""Counts -> network features: a transform, per-bin z-scoring, optional PCA.

Inputs that are not counts (the log exposure factor of an exposure-conditioned
network) follow the counts as ``extra`` trailing columns: z-scored, never
transformed or compressed.
"""
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
    extra : int
        Trailing input columns that are not counts (z-scored only; their
        mean and std are the last entries of ``mean``, ``std``).
    """

    kind: str
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray | None = None
    extra: int = 0

    @property
    def n_bins(self) -> int:
        """Number of count bins the transform reads."""
        return len(self.mean) - self.extra

    @property
    def n_inputs(self) -> int:
        """Number of input columns: the count bins, then the extra inputs."""
        return len(self.mean)

    @property
    def n_features(self) -> int:
        """Number of features it writes (``n_inputs`` without PCA)."""
        return (self.n_bins if self.components is None else self.components.shape[1]) + self.extra

    @staticmethod
    def _raw(x: np.ndarray, kind: str) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if kind == "log1p":
            return np.log1p(x)
        if kind == "anscombe":
            return 2.0 * np.sqrt(x + 0.375)
        return x

    @classmethod
    def _inputs(cls, x: np.ndarray, kind: str, extra: int) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if not extra:
            return cls._raw(x, kind)
        return np.concatenate([cls._raw(x[:, :-extra], kind), x[:, -extra:]], axis=1)

    @classmethod
    def fit(cls, x: np.ndarray, kind: str, pca_variance: float | None = None,
            extra: int = 0) -> FeatureTransform:
        """Fit on a training set.

        Parameters
        ----------
        x : (n, n_bins + extra) ndarray
            Counts per bin, then the ``extra`` inputs that are not counts.
        kind : {"log1p", "anscombe", "none"}
        pca_variance : float or None
            Keep the leading components holding this fraction of the counts' variance.
        extra : int
            Trailing columns that are not counts.
        """
        t = cls._inputs(x, kind, extra)
        mean = t.mean(axis=0)
        std = t.std(axis=0)
        # Bins that never see a count carry no information; keep them at zero.
        std = np.where(std > 1e-8 * max(std.max(), 1e-300), std, 1.0)
        if pca_variance is None:
            return cls(kind, mean, std, extra=extra)
        z = ((t - mean) / std)[:, :t.shape[1] - extra]
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        var = s**2
        frac = np.cumsum(var) / var.sum()
        n_keep = int(np.searchsorted(frac, pca_variance - 1e-12) + 1)
        return cls(kind, mean, std, vt[:n_keep].T, extra)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, n_features) float32 features of inputs ``x`` (n, n_inputs)."""
        z = (self._inputs(x, self.kind, self.extra) - self.mean) / self.std
        if self.components is not None:
            z = np.concatenate([z[:, :self.n_bins] @ self.components, z[:, self.n_bins:]], axis=1)
        return z.astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-ready record (round-trips through :meth:`from_dict`)."""
        d = {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.components is not None:
            d["components"] = self.components.tolist()
        if self.extra:
            d["extra"] = int(self.extra)   # absent from networks saved before it existed
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureTransform:
        """Inverse of :meth:`to_dict`."""
        comps = d.get("components")
        return cls(
            d["kind"], np.asarray(d["mean"]), np.asarray(d["std"]),
            None if comps is None else np.asarray(comps), int(d.get("extra", 0)),
        )
