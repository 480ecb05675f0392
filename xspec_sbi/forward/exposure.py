"""fakeit over a range of exposures: each simulation its own exposure, said to the network.

An exposure-conditioned network (``NPEConfig.exposure_range``) is trained on
spectra whose source exposure is the training spectrum's times a factor
``f`` drawn log-uniformly per simulation; the data vector ends with
``log f`` so that the network reads the exposure beside the counts. The
expected source counts scale with ``f`` (model counts are exposure x area x
flux), and so does the background's contribution to the source region (its
scale ``t_s BACKSCAL_s AREASCAL_s / (t_b ...)`` holds the source exposure);
the background spectrum itself keeps its own exposure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ExposureVaried", "exposure_varied"]


@dataclass(frozen=True)
class ExposureVaried:
    """A one-spectrum simulator whose every draw has its own exposure.

    Parameters
    ----------
    base : Simulator
        The training spectrum's simulator (exposure factor 1).
    low, high : float
        Range of the exposure factor (log-uniform), e.g. 0.25 and 4.

    Notes
    -----
    ``(theta, rng) -> x`` with ``x`` of shape ``(n, base.n_outputs + 1)``:
    source counts, background counts when there is a background, then
    ``log f``. ``parts``/``split`` are the base's, so a caller that reads the
    counts block by block (a count window) ignores the last column.
    """

    base: object
    low: float
    high: float

    def __post_init__(self):
        if len(getattr(self.base, "parts", (self.base,))) != 1:
            raise ValueError("exposure_range: an exposure-conditioned network is for one spectrum "
                             "per observation (a joint fit has several exposures)")
        if not hasattr(self.base, "expected"):
            raise ValueError("exposure_range: needs the engine's simulator (expected counts); "
                             "this model is folded through XSPEC")
        if not 0 < self.low < self.high:
            raise ValueError(f"exposure_range ({self.low}, {self.high}): need 0 < LOW < HIGH")

    @property
    def model(self):
        return self.base.model

    @property
    def settings(self):
        return self.base.settings

    @property
    def parts(self):
        return self.base.parts

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        return self.base.split(x)

    @property
    def n_outputs(self) -> int:
        return self.base.n_outputs + 1

    def __call__(self, theta, rng: np.random.Generator) -> np.ndarray:
        theta = np.atleast_2d(theta)
        log_f = rng.uniform(np.log(self.low), np.log(self.high), len(theta))
        b = self.base
        mu = b.expected(theta) * np.exp(log_f)[:, None]
        if not np.all(np.isfinite(mu)) or np.any(mu < 0):
            bad = np.flatnonzero(~np.all(np.isfinite(mu) & (mu >= 0), axis=1))[0]
            raise ValueError(f"model {b.model.expression} gives invalid expected counts "
                             f"for parameters {theta[bad].tolist()}")
        blocks = [rng.poisson(mu).astype(np.float64)]
        if b.has_background:
            blocks.append(rng.poisson(np.broadcast_to(b.background_counts, mu.shape)).astype(np.float64))
        return np.concatenate(blocks + [log_f[:, None]], axis=1)


def exposure_varied(simulator, config):
    """``simulator`` over ``config.exposure_range`` (the simulator itself when that is None)."""
    rng_ = getattr(config, "exposure_range", None)
    return simulator if rng_ is None else ExposureVaried(simulator, *rng_)
