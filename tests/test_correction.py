"""The exact-likelihood correction on the engine: it rescues an under-trained network, lands a
trained one on the exact posterior, and its ESS says which case it is in.

The reference is an independent method on the same data and prior: the Goodman-Weare chain.
"""
import emcee
import numpy as np
import pytest

from xspec_sbi.api import sbi_fit
from xspec_sbi.demo import reference_session
from xspec_sbi.checks.importance import LOW_ESS_FRACTION
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.presets.table1 import table1_prior


def _fit(session, n_sims, config, seed, **kw):
    return sbi_fit(session, prior=table1_prior(1), restrict="counts:1000-10000",
                   n_simulations=n_sims, n_samples=20_000, chain_length=16_000, chain_burn=2_000,
                   seed=seed, workers=2, config=config, progress=False, **kw)


def _median_offsets(samples, chain):
    """|median - chain median| per parameter, in chain sd."""
    return np.abs(np.median(samples, axis=0) - np.median(chain, axis=0)) / chain.std(axis=0)


def _width_ratios(samples, chain):
    w = lambda s: np.subtract(*np.quantile(s, [0.84, 0.16], axis=0))  # noqa: E731
    return w(samples) / w(chain)


@pytest.fixture(scope="module")
def session():
    return reference_session(2000, seed=5)[0]


@pytest.fixture(scope="module")
def under_trained(session):
    # 300 simulations and 30 epochs: a broad, biased proposal. refine=False: these tests are
    # about the check of this network itself (the refinement it triggers: tests/test_adaptive.py)
    return _fit(session, 300, NPEConfig(max_epochs=30, patience=5), seed=11, refine=False)


@pytest.fixture(scope="module")
def trained(session):
    return _fit(session, 8000, NPEConfig(), seed=12)


def test_under_trained_network_is_corrected_towards_the_chain(under_trained):
    r = under_trained
    chain = r.chain.samples
    raw_off = _median_offsets(r.samples_raw, chain)
    corr_off = _median_offsets(r.correction.theta, chain)
    # the network alone misses the chain's answer; the corrected posterior finds it
    assert raw_off.max() > 0.5, raw_off
    assert corr_off.max() < 0.4, corr_off
    assert corr_off.max() < 0.5 * raw_off.max()
    raw_w = _width_ratios(r.samples_raw, chain)
    corr_w = _width_ratios(r.correction.theta, chain)
    assert np.all(np.abs(np.log(corr_w)) < np.abs(np.log(raw_w)) + 0.05), (raw_w, corr_w)
    assert np.all((corr_w > 0.6) & (corr_w < 1.5)), corr_w


def test_under_trained_network_is_reported_as_such(under_trained, trained):
    c = under_trained.correction
    # the ESS reports the trouble: a small fraction, far below the trained network's
    assert c.ess_fraction < LOW_ESS_FRACTION
    assert c.ess_fraction < 0.3 * trained.correction.ess_fraction
    assert c.warning and ("more simulations" in c.warning or "multi-round" in c.warning)
    assert c.warning in under_trained.table()
    # samples are replaced only by a reliable correction
    if c.reliable:
        assert under_trained.samples is not under_trained.samples_raw
    else:
        assert under_trained.samples is under_trained.samples_raw


def test_trained_network_correction_is_reliable_and_lands_on_the_chain(trained):
    # Measured: even with 8,000 simulations the network alone sits 0.3-1.1 chain sd from the
    # chain's medians with 68 % widths 10-30 % too broad on this spectrum (it is calibrated on
    # average over the restricted prior, not per observation), so "the correction changes
    # nothing" does not hold for our networks; what must hold is that a reliable correction
    # lands on the chain's answer. The exact-proposal limit (equal weights, nothing changes)
    # is tested in test_importance.py. The network alone's ESS on this spectrum varies from 7 % to
    # 90 % between training seeds (14 seeds measured, 8,000 simulations), so whether it earns the
    # "network far from the posterior" advice is not what is tested here.
    r = trained
    c = r.correction
    assert c.reliable, c.summary()
    assert r.samples is not r.samples_raw      # the corrected samples are the result
    chain = r.chain.samples
    # Both medians carry Monte Carlo error: the chain's (8 walkers, 16,000 samples: a few
    # hundred effective, emcee's integrated autocorrelation time) measured 0.06-0.07 sd, enough that
    # a fixed 0.15 failed on one CPU at 0.159 with the same seeds. The bound is 0.15 or three
    # times the two errors together, whichever is larger (a median's sd is 1.2533 / sqrt(ESS) sd).
    tau = emcee.autocorr.integrated_time(r.chain.walker_chains(), quiet=True)
    ess_chain = len(chain) / tau
    ess_corrected = c.ess_fraction * len(r.samples_raw)
    noise = 1.2533 * np.sqrt(1.0 / ess_chain + 1.0 / ess_corrected)
    offsets = _median_offsets(c.theta, chain)
    assert np.all(offsets < np.maximum(0.15, 3.0 * noise)), (offsets, noise)
    ratio = _width_ratios(c.theta, chain)
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
