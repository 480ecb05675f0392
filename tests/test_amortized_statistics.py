"""The exact statistics of the amortized correction, in blocks across spectra, against one spectrum at a time."""
from __future__ import annotations

import numpy as np
import pytest

from xspec_sbi.amortized import amortized_posteriors
from xspec_sbi.forward.objective import statistics_of_spectra
from xspec_sbi.forward.objective import PoissonStatistic


def _simulator(exposure=100.0, with_background=False):
    from xspec_sbi.data.response import gaussian_response
    from xspec_sbi.data.spectrum import Spectrum
    from xspec_sbi.model.expression import Model
    from xspec_sbi.session import Session
    e = np.linspace(0.3, 10.0, 61)
    c = np.linspace(0.3, 10.0, 21)
    resp = gaussian_response(e[:-1], e[1:], c[:-1], c[1:], 0.3, arf=np.full(60, 50.0))
    bkg = Spectrum(np.full(20, 30.0), exposure=400.0, backscal=4.0) if with_background else None
    spec = Spectrum(np.zeros(20), exposure=exposure, response=resp, background=bkg)
    # nH frozen: the absorber is one row for the whole batch (the burst set-up's shape)
    model = Model("tbabs*(powerlaw+bbodyrad)").set(**{"TBabs.nH": 0.2}).freeze("TBabs.nH")
    return Session((spec,), model).simulator()


def _draws(m, n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([np.column_stack([rng.uniform(1.0, 2.5, n), 10 ** rng.uniform(-2, 0, n),
                                      rng.uniform(0.2, 3.0, n), 10 ** rng.uniform(0, 3, n)])
                     for _ in range(m)])


@pytest.mark.parametrize("with_background", [False, True])
@pytest.mark.parametrize("block", [1, 7, 250, 10_000])
def test_blocked_statistics_equal_each_spectrum_on_its_own(with_background, block):
    sim = _simulator(with_background=with_background)
    raw = _draws(3, 250, 5)
    x = sim(raw[:, 0], np.random.default_rng(2))
    want = np.stack([PoissonStatistic(sim, x[i])(raw[i]) for i in range(3)])
    # blocks cut across spectra (7 rows, 250 = one spectrum, all at once): the same numbers
    np.testing.assert_allclose(statistics_of_spectra(sim, None, x, raw, block), want, rtol=1e-12, atol=1e-10)
    sims = [_simulator(exposure=t, with_background=with_background) for t in (50.0, 100.0, 300.0)]
    own = np.stack([PoissonStatistic(s, x[i])(raw[i]) for i, s in enumerate(sims)])
    np.testing.assert_allclose(statistics_of_spectra(sim, sims, x, raw, block), own, rtol=1e-12, atol=1e-10)
    assert not np.allclose(own[0], want[0])      # the set-ups do differ


def test_block_size_leaves_the_corrected_posteriors_unchanged():
    from xspec_sbi.inference.priors import build_prior
    sim = _simulator()
    box = build_prior(sim.model.parameters, {"powerlaw.norm": ("log", 0.01, 1.0),
                                             "bbodyrad.norm": ("log", 1.0, 1e3)})

    class Prior:   # the network's face, drawing from the prior
        def sample(self, x, n, rng):
            return box.sample(len(x) * n, rng=np.random.default_rng(rng)).reshape(len(x), n, -1)

        def log_prob(self, theta, x):
            return box.log_prob(theta)

    x = sim(box.sample(3, rng=np.random.default_rng(4)), np.random.default_rng(1))
    a = amortized_posteriors(Prior(), sim, box, x, n_samples=400, seed=3, block_rows=64)
    b = amortized_posteriors(Prior(), sim, box, x, n_samples=400, seed=3, block_rows=200_000)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.ess_fraction, b.ess_fraction)


@pytest.mark.parametrize("with_background", [False, True])
def test_statistic_in_row_blocks_equals_the_formula_row_by_row(with_background):
    """PoissonStatistic folds BLOCK_ROWS rows at a time; 600 rows (blocks of 256, 256, 88) give,
    row by row, XSPEC's cstat / wstat formula on each row's own folded model."""
    from xspec_sbi.forward import stats
    sim = _simulator(with_background=with_background)
    theta = _draws(1, 600, 8)[0]
    x = sim(theta[:1], np.random.default_rng(3))[0]
    got = PoissonStatistic(sim, x)(theta)
    assert PoissonStatistic.BLOCK_ROWS < len(theta)
    part = sim.parts[0] if hasattr(sim, "parts") else sim
    for i in (0, 255, 256, 511, 512, 599):
        mu = part.expected_source(theta[i:i + 1])[0]
        if with_background:
            n = part.n_bins
            want = stats.wstat(x[:n], x[n:], mu, 1.0, 1.0 / part.background_scale)
        else:
            want = stats.cstat(x, mu)
        np.testing.assert_allclose(got[i], want, rtol=1e-12)
