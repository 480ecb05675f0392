"""The training-spectra reference saved with a network, for ``apply``'s out-of-distribution check.

``sbi_fit`` does not hand back its training spectra, so ``train`` and ``fit
--save-network`` simulate a reference set of the same kind after training
(from the prior, kept to the ``counts:LO-HI`` window when the training was
restricted to one; from its own seed stream, so the run's numbers do not
change) and store its summary (:class:`~xspec_sbi.checks.ood.OODReference`)
as ``ood_reference.npz``. ``apply`` checks each spectrum against it: total
counts outside the reference's range, or a shape unlike it, is an
extrapolation of the network.
"""
from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import numpy as np

from xspec_sbi.cli.errors import CommandError

__all__ = ["REFERENCE_NAME", "simulate_reference", "save_reference", "load_reference"]

log = logging.getLogger("xspec_sbi")

REFERENCE_NAME = "ood_reference.npz"
#: Reference spectra simulated (fewer when the training itself used fewer).
N_REFERENCE = 2000
#: Independent of the run's generator: a second stream of the same seed.
_STREAM = 0x15


def simulate_reference(result, seed: int, restrict: str, n_train: int):
    """Simulate reference spectra like the training ones and summarise them.

    Parameters
    ----------
    result : SBIResult
        The training run (its session and prior).
    seed : int
        The run's ``--seed``.
    restrict : str
        The run's ``--restrict``; a ``counts:LO-HI`` window is applied to the reference.
    n_train : int
        Training simulations of the run (the reference has at most as many).

    Returns
    -------
    OODReference
    """
    from xspec_sbi.checks.ood import OODReference
    from xspec_sbi.forward.simulate import simulate
    from xspec_sbi.pipeline import parse_restriction
    n = int(min(N_REFERENCE, max(n_train, 20)))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    sim = result.session.simulator()
    theta = result.prior.sample(n, rng=rng)
    from xspec_sbi.forward.exposure import exposure_varied
    # an exposure-conditioned network was trained over exposures: so is its reference
    x = simulate(exposure_varied(sim, result.posterior.config), theta,
                 seed=int(rng.integers(2**63 - 1)))[:, :sim.n_outputs]
    kind, args = parse_restriction(restrict)
    if kind in ("counts", "classifier"):
        source = sum(b[:, :p.n_bins].sum(axis=1) for p, b in zip(sim.parts, sim.split(x)))
        inside = (source >= args[0]) & (source <= args[1])
        if inside.sum() >= 100:
            x = x[inside]
    # totals: the training range itself (no quantile tail flagged); shapes: beyond ~all of it
    return OODReference.fit(x, total_bounds=(0.0, 1.0), shape_level=0.999)


def save_reference(folder: Path, reference) -> Path:
    """Write ``ood_reference.npz`` into ``folder`` (a folder being built)."""
    path = Path(folder) / REFERENCE_NAME
    arrays = {f.name: np.asarray(getattr(reference, f.name)) for f in fields(reference)}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_reference(folder):
    """The saved reference of a network folder, or None when it has none.

    Raises
    ------
    CommandError
        The file exists but cannot be read (named).
    """
    from xspec_sbi.checks.ood import OODReference
    path = Path(folder) / REFERENCE_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            values = {f.name: npz[f.name] for f in fields(OODReference)}
        values["total_bounds"] = tuple(float(v) for v in values["total_bounds"])
        values["shape_level"] = float(values["shape_level"])
        return OODReference(**values)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"{path}: unreadable ({exc}); save the network again") from None
