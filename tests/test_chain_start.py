"""The Goodman-Weare chain starts on any spectrum: faint sources and parameters at a prior bound.

XSPEC's deltas (0.01 for a norm) spread walkers far below zero when the norm
is 1e-6, as for most Chandra and XMM point sources; ``sbi_fit`` starts the
walkers from the covariance of its posterior draws instead.
"""
from __future__ import annotations

import numpy as np
import pytest

from xspec_sbi.baseline.mcmc import ChainConfigError
from xspec_sbi.forward.simulate import fakeit_spectrum
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.baseline.comparison import fit_and_chain
from xspec_sbi.session import Session

PRIOR = {"TBabs.nH": ("log", 0.01, 1.0), "powerlaw.PhoIndex": ("uniform", 1.0, 3.0),
         "powerlaw.norm": ("log", 1e-7, 1e-4)}
TRUE = {"TBabs.nH": 0.05, "powerlaw.PhoIndex": 2.0, "powerlaw.norm": 1e-6}


@pytest.fixture(scope="module")
def faint(shared_data):
    """A faint source simulated through XMM-pn's response with the real background."""
    folder = shared_data / "xmm_pn_ngc7793_ulx4"
    template = Session.from_files(str(folder / "PN.pha"), "tbabs*powerlaw", ignore="**-0.3 10.-** bad")
    model = template.model.set(**TRUE)
    spec = fakeit_spectrum(template.spectra[0], model, model.free_values(), np.random.default_rng(3))
    return Session((spec,), template.model, template.settings)


def test_xspec_deltas_cannot_start_a_faint_source(faint):
    # the failure this guards against: deltas of 0.01 around a norm of 1e-6
    stat = faint.statistic_function()
    box = build_prior(faint.model.parameters, PRIOR)
    start = faint.model.set(**TRUE).free_values()
    with pytest.raises(ChainConfigError, match="initial walkers"):
        fit_and_chain(stat, start, box, faint.model.free_parameters, 800, 0, 8,
                      np.random.default_rng(0))


def test_sbi_fit_chain_starts_on_a_faint_source(faint):
    from xspec_sbi import sbi_fit
    r = sbi_fit(faint, prior=PRIOR, restrict=None, n_simulations=1500, n_samples=2000,
                chain_length=2000, chain_burn=400, seed=1, progress=False, workers=1,
                config=NPEConfig(max_epochs=40), refine=False)   # the chain's start, from the
    assert r.statistic == "wstat"                                   # first network's draws
    assert r.chain is not None and np.all(np.isfinite(r.chain.samples))
    norm = r.chain.samples[:, r.names.index("powerlaw.norm")]
    # the chain sits on the faint source, not at a prior edge
    assert 3e-7 < np.median(norm) < 3e-6
    assert np.mean(r.chain.acceptance_fraction) > 0.1


def test_chain_starts_with_the_best_fit_on_a_prior_bound(faint):
    # nH pinned at its lower bound: Gaussian walkers outside the box are redrawn
    stat = faint.statistic_function()
    box = build_prior(faint.model.parameters, {**PRIOR, "TBabs.nH": ("uniform", 0.0, 1.0)})
    start = faint.model.set(**{**TRUE, "TBabs.nH": 0.0}).free_values()
    cov = np.diag([0.05, 0.1, 2e-7]) ** 2
    best, chain = fit_and_chain(stat, start, box, faint.model.free_parameters, 1600, 400, 8,
                                np.random.default_rng(0), covariance=cov)
    assert np.all(chain.samples[:, 0] >= 0.0)
    assert np.all(np.isfinite(chain.stat))
