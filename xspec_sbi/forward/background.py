"""Training spectra with the background rate unknown, as W-stat treats it.

fakeit (XSPEC's, and :class:`~xspec_sbi.forward.simulate.Simulator`) adds
Poisson counts of the *observed* background to the fake source: the
background rate is taken as known. W-stat instead profiles an unknown
background rate in every bin, constrained by the background spectrum alone.
A network trained on fakeit's spectra learns the posterior with a known
background; on a background-dominated spectrum that is far from the W-stat
posterior (XMM-pn, powerlaw.norm 1e-6, 18 source counts over 300 scaled
background counts: PhoIndex 2.3 +- 1.1 with the background known, 5.0 +- 2.1
under W-stat), so the exact-likelihood check of its draws fails (ESS 0.2-2 %)
and more truncated rounds only learn the known-background posterior better.

:class:`UncertainBackground` draws, for every spectrum, a background rate per
bin ``f ~ U(max(0, B + 1 - w), B + 1 + w)`` with ``w = width sqrt(B + 1) + 3``
(``B`` the observed background counts of the bin, ``f`` in counts of the
background region), then source counts ``Poisson(model + scale f)`` and
background counts ``Poisson(f)``. The network then learns the posterior with
the rate marginalised under a prior flat wherever the background spectrum's
likelihood of ``f`` is not negligible (``width = 4``: beyond 4 sigma), which is
close to W-stat's profile; the exact-likelihood check corrects the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xspec_sbi.forward.simulate import Simulator

__all__ = ["UncertainBackground", "training_simulator"]


@dataclass(frozen=True)
class UncertainBackground:
    """A simulator whose background rate is drawn per spectrum (see the module notes).

    Parameters
    ----------
    simulator : SpectralSimulator
        The fakeit simulator (its parts are engine :class:`Simulator` objects).
    width : float
        Half-width of the rate's range in background sigma, ``sqrt(B + 1)``.
    """

    simulator: object
    width: float = 4.0

    @property
    def parts(self):
        return self.simulator.parts

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        return self.simulator.split(x)

    @property
    def settings(self):
        return self.simulator.settings

    @property
    def model(self):
        return self.simulator.model

    @property
    def n_outputs(self) -> int:
        return self.simulator.n_outputs

    def _one(self, part, theta, rng) -> np.ndarray:
        if not part.has_background:
            return part(theta, rng)
        mu = part.expected_source(theta)
        if not np.all(np.isfinite(mu)) or np.any(mu < 0):
            bad = np.flatnonzero(~np.all(np.isfinite(mu) & (mu >= 0), axis=1))[0]
            raise ValueError(f"model {part.model.expression} gives invalid expected counts "
                             f"for parameters {np.atleast_2d(theta)[bad].tolist()}")
        b = part.background_counts + 1.0
        half = self.width * np.sqrt(b) + 3.0
        lo = np.maximum(0.0, b - half)
        rate = lo + (b + half - lo) * rng.uniform(size=mu.shape)
        src = rng.poisson(mu + part.background_scale * rate).astype(np.float64)
        bkg = rng.poisson(rate).astype(np.float64)
        return np.concatenate([src, bkg], axis=1)

    def __call__(self, theta, rng: np.random.Generator) -> np.ndarray:
        """Fake spectra (n_batch, n_outputs), counts, in the wrapped simulator's layout."""
        theta = np.atleast_2d(theta)
        return np.concatenate([self._one(p, theta, rng) for p in self.simulator.parts], axis=1)


def training_simulator(simulator):
    """The simulator to train on: background rates drawn where W-stat profiles them.

    Parameters
    ----------
    simulator : SpectralSimulator

    Returns
    -------
    SpectralSimulator
        ``simulator`` itself when no spectrum has a background (C-stat) or
        when a part is not the engine's :class:`Simulator` (the XSPEC path
        folds one parameter set at a time and keeps fakeit's draws);
        otherwise :class:`UncertainBackground` around it.
    """
    parts = simulator.parts
    if not any(p.has_background for p in parts) or not all(isinstance(p, Simulator) for p in parts):
        return simulator
    return UncertainBackground(simulator)
