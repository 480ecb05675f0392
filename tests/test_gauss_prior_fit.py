"""sbi_fit end to end with a Gaussian prior: training draws, restriction, correction and chain share it."""
from __future__ import annotations

import numpy as np
import pytest

from xspec_sbi import sbi_fit
from xspec_sbi.demo import reference_session
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.presets.table1 import table1_prior


@pytest.fixture(scope="module")
def fitted():
    session = reference_session(2000, seed=3)[0]          # nH 0.2, PhoIndex 1.7, norm 1
    prior = dict(table1_prior(1))
    prior["TBabs.nH"] = ("gauss", 0.2, 0.01)                # truncated at XSPEC's 0 to 1e6
    return sbi_fit(session, prior=prior, n_simulations=1200, n_samples=2000, chain_length=4000,
                   chain_burn=800, seed=7, workers=1, config=NPEConfig(max_epochs=40, patience=8),
                   progress=False)


def test_gaussian_prior_reaches_every_stage(fitted):
    r = fitted
    nh = r.prior.parameters[0]
    assert (nh.kind, nh.mu, nh.sigma, nh.lower, nh.upper) == ("gauss", 0.2, 0.01, 0.0, 1e6)
    # the restricted prior is the user's, truncated: its density is the prior's over its mass
    t = r.restriction.prior
    inside = r.samples[t.contains(r.samples)][:20]
    np.testing.assert_allclose(t.log_prob(inside), r.prior.log_prob(inside) - np.log(t.mass))
    # SBI and the chain (whose prior is the same density) agree; the data narrow the prior a bit
    for i in range(3):
        sd = r.chain.samples[:, i].std()
        assert abs(np.median(r.samples[:, i]) - np.median(r.chain.samples[:, i])) < 0.5 * sd
    assert r.chain.samples[:, 0].std() < 0.01
    assert "Gaussian 0.2 +- 0.01 in [0, 1e+06]" in r.table()
