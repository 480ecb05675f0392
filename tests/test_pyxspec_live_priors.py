"""XSPEC's chain with SBI's priors (``Fit.bayes``, ``Parameter.prior`` of PyXspec 2.0.0).

Run by ``tests/run_pyxspec_live.sh`` (``make test``).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyxspec_live_support import SKIP_REASON
from pyxspec_live_support import XSPEC as xspec
from xspec_sbi import pyxspec as px
from xspec_sbi.inference.priors import BoxPrior, ParameterPrior

pytestmark = [pytest.mark.requires_pyxspec, pytest.mark.skipif(xspec is None, reason=SKIP_REASON)]

NAMES = ("TBabs.nH", "powerlaw.PhoIndex", "powerlaw.norm")


@pytest.fixture
def pn(pn):
    pn.Model("tbabs*powerlaw").setPars(0.17, 2.07, 4.7e-4)
    return pn


def _fake_posterior():
    rng = np.random.default_rng(1)
    samples = np.array([0.17, 2.07, 4.7e-4]) * (1 + 0.02 * rng.standard_normal((50, 3)))
    return samples, np.median(samples, axis=0)


@pytest.mark.parametrize("algorithm", ["mh", "gw"])
def test_xspec_chain_runs_with_sbis_priors(pn, algorithm):
    # PhoIndex's prior is narrower than its posterior (best fit 2.07): XSPEC's
    # chain must stay inside it, which it does only if the priors reached XSPEC.
    prior = BoxPrior((ParameterPrior("TBabs.nH", "uniform", 0.0, 1.0),
                      ParameterPrior("powerlaw.PhoIndex", "uniform", 2.0, 2.06),
                      ParameterPrior("powerlaw.norm", "log", 1e-5, 1e-2)))
    samples, median = _fake_posterior()
    median[1] = 2.03
    before = px.snapshot()
    assert before.bayes == "off"
    out = px.compare_with_xspec(names=NAMES, samples=samples, median=median, chain=True,
                                chain_length=400, chain_burn=80, walkers=8, prior=prior,
                                algorithm=algorithm)
    assert "powerlaw.norm log-uniform [1e-05, 0.01]" in out.priors
    assert out.priors in str(out)
    index = out.chain.samples[:, 1]
    inside = (2.0 <= index) & (index <= 2.06)
    if algorithm == "mh":   # XSPEC 12.9.1's MH chain keeps to the hard limits
        assert out.same_priors and "the same on both sides" in out.priors
        assert inside.all()
        assert index.max() - index.min() > 0.02       # it did move within the prior
    else:                   # its Goodman-Weare chain does not (measured): the line says so
        assert not inside.all()
        assert not out.same_priors
        # the line's percentage is XSPEC's chain file read back; ours is from the same samples,
        # within the rounding of the printed value
        import re
        said = float(re.search(r"([0-9.]+)% of its samples lie outside", out.priors).group(1))
        assert abs(said - 100 * (1 - inside.mean())) < 0.2, out.priors
    assert px.snapshot() == before                    # bayes off, priors and limits back


def test_own_priors_are_said_so(pn):
    prior = BoxPrior((ParameterPrior("TBabs.nH", "uniform", 0.0, 1.0),
                      ParameterPrior("powerlaw.PhoIndex", "uniform", 1.0, 3.0),
                      ParameterPrior("powerlaw.norm", "log", 1e-5, 1e-2)))
    samples, median = _fake_posterior()
    out = px.compare_with_xspec(names=NAMES, samples=samples, median=median, chain=True,
                                chain_length=160, chain_burn=80, walkers=8, prior=prior,
                                same_priors=False)
    assert not out.same_priors
    assert out.priors.startswith("Priors differ (same_priors=False): SBI TBabs.nH uniform")
    assert "XSPEC's chain used XSPEC's own (Fit.bayes off" in out.priors
    none = px.compare_with_xspec(names=NAMES, samples=samples, median=median, chain=True,
                                 chain_length=160, chain_burn=80, walkers=8)
    assert "SBI's prior was not given" in none.priors


def test_xspec_chain_runs_with_sbis_gaussian_prior(pn):
    # PhoIndex 2.0 +- 0.01: much narrower than the data's (about 0.05), so XSPEC's chain
    # (Metropolis-Hastings keeps to the hard limits) is as narrow as the prior only if
    # Parameter.prior = ("gauss", 2.0, 0.01) reached XSPEC.
    prior = BoxPrior((ParameterPrior("TBabs.nH", "uniform", 0.0, 1.0),
                      ParameterPrior("powerlaw.PhoIndex", "gauss", 1.0, 3.0, mu=2.0, sigma=0.01),
                      ParameterPrior("powerlaw.norm", "log", 1e-5, 1e-2)))
    samples, median = _fake_posterior()
    before = px.snapshot()
    out = px.compare_with_xspec(names=NAMES, samples=samples, median=median, chain=True,
                                chain_length=2000, chain_burn=400, walkers=8, prior=prior,
                                algorithm="mh")
    assert "powerlaw.PhoIndex Gaussian 2 +- 0.01 in [1, 3]" in out.priors
    assert out.same_priors and "the same on both sides" in out.priors and "gauss" in out.priors
    index = out.chain.samples[:, 1]
    assert abs(np.median(index) - 2.0) < 0.02      # pulled onto the prior (best fit 2.07)
    assert np.std(index) < 0.02
    assert px.snapshot() == before
