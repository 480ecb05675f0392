"""The folded-spectrum figure: XSPEC-style display rebinning and the numbers each panel draws."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from report_fakes import fake_result, fake_session
from xspec_sbi.report.spectrum import display_groups, spectrum_panels, spectrum_plot


def _significant(s, v, minsig):
    return v > 0 and s / np.sqrt(v) >= minsig


@pytest.mark.parametrize("seed", range(6))
def test_display_groups_are_the_greedy_setplot_rebin_groups(seed):
    """Checked by the properties that define the greedy grouping, not by re-running it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    counts = rng.poisson(rng.uniform(0, 30), n).astype(float)
    bkg = rng.poisson(2.0, n) * 0.5
    signal, var = counts - bkg, counts + 0.25 * rng.poisson(2.0, n)
    breaks = rng.random(n) < 0.03
    minsig, maxbins = float(rng.uniform(1, 6)), int(rng.integers(1, 25))
    starts = display_groups(signal, var, minsig, maxbins, breaks)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0) and starts[-1] < n
    ends = np.r_[starts[1:], n]
    brk = breaks.copy()
    brk[0] = True
    for g, (a, b) in enumerate(zip(starts, ends)):
        assert not brk[a + 1:b].any()                          # never across a break
        assert brk[a] or g > 0
        last_of_segment = b == n or brk[b]
        done = (b - a >= maxbins) or _significant(signal[a:b].sum(), var[a:b].sum(), minsig)
        if last_of_segment:
            continue                                           # may fall short (or hold a merged tail)
        assert done, (a, b)
        # greedy: one bin fewer would not have closed the group
        if b - a > 1:
            shorter = signal[a:b - 1].sum(), var[a:b - 1].sum()
            assert not (b - 1 - a >= maxbins or _significant(*shorter, minsig))


def test_display_groups_by_hand():
    # 25 counts make 5 sigma; zeros are carried until max_bins
    assert display_groups([25, 25, 1, 1, 30], [25, 25, 1, 1, 30], 5, 10).tolist() == [0, 1, 2]
    assert display_groups([0] * 7, [0] * 7, 5, 3).tolist() == [0, 3]        # tail of 1 merged
    assert display_groups([0] * 7, [0] * 7, 5, 3, breaks=[0, 0, 0, 0, 0, 0, 1]).tolist() == [0, 3, 6]
    assert display_groups([1, 2, 3], [1, 2, 3], 0, 5).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="max_bins"):
        display_groups([1.0], [1.0], 5, 0)


@pytest.fixture(scope="module")
def result():
    return fake_result(fake_session(path="/data/obs1.pha"), n=300)


def test_panel_numbers_against_direct_folding(result):
    spec = result.session.spectra[0]
    (p,) = spectrum_panels(result, min_significance=4, max_bins=15, n_draws=300)
    assert p.title == "obs1.pha"
    lo, hi = spec.bin_energies()
    data = spec.binned_counts()
    # counts are conserved by the display bins: rate * exposure * width sums to the data
    width = p.e_hi - p.e_lo
    assert np.sum(p.rate * spec.exposure * width) == pytest.approx(data.sum(), rel=1e-10)
    assert np.sum((p.rate_err * spec.exposure * width) ** 2) == pytest.approx(data.sum(), rel=1e-10)
    assert p.e_lo[0] == lo[0] and p.e_hi[-1] == hi[-1]
    # the band: quantiles of folded models of all 300 draws, summed into the display bins
    mu = result.session.statistic_function().expected_counts(result.samples)[0]
    starts = np.searchsorted(lo, p.e_lo)
    grouped = np.add.reduceat(mu, starts, axis=1) / (spec.exposure * width)
    np.testing.assert_allclose(p.band[2], np.median(grouped, axis=0), rtol=1e-10)
    np.testing.assert_allclose(p.band[[0, 4]], np.quantile(grouped, [0.025, 0.975], axis=0), rtol=1e-10)
    assert np.all(np.diff(p.band, axis=0) >= 0)
    # best fit: the chain's starting fit folded
    best = result.session.statistic_function().expected_counts(result.chain_fit.theta[None])[0][0]
    np.testing.assert_allclose(p.best, np.add.reduceat(best, starts) / (spec.exposure * width), rtol=1e-10)
    # display bins reach 4 sigma (sqrt(counts) >= 4) except possibly the merged last one
    sig = p.rate / p.rate_err
    assert np.all((sig[:-1] >= 4 - 1e-9) | (np.diff(np.r_[starts, lo.size])[:-1] == 15))


def test_residuals_are_zero_and_one_at_the_model(result):
    (p,) = spectrum_panels(result)
    p = replace(p, rate=p.band[2].copy())
    v, e, _ = p.residuals("delchi")
    np.testing.assert_allclose(v, 0.0, atol=1e-12)
    np.testing.assert_allclose(e, 1.0)
    v, e, _ = p.residuals("ratio")
    np.testing.assert_allclose(v, 1.0)
    np.testing.assert_allclose(e, p.rate_err / p.band[2])
    with pytest.raises(ValueError, match="residuals='chi'"):
        p.residuals("chi")


def test_background_is_subtracted_and_drawn():
    result = fake_result(fake_session(background=True), n=200, correction=None, chain=False)
    spec = result.session.spectra[0]
    (p,) = spectrum_panels(result, min_significance=3, max_bins=10)
    assert p.background is not None and p.best is None
    scale = spec.background_scale()
    width = p.e_hi - p.e_lo
    net = spec.binned_counts() - scale * spec.binned_background_counts()
    var = spec.binned_counts() + scale ** 2 * spec.binned_background_counts()
    assert np.sum(p.rate * spec.exposure * width) == pytest.approx(net.sum(), rel=1e-10)
    assert np.sum((p.rate_err * spec.exposure * width) ** 2) == pytest.approx(var.sum(), rel=1e-10)
    assert np.sum(p.background * spec.exposure * width) == pytest.approx(
        np.sum(scale * spec.binned_background_counts()), rel=1e-10)


def test_one_panel_per_spectrum_of_a_joint_fit():
    import matplotlib.pyplot as plt

    result = fake_result(fake_session(n_spectra=3), n=100, correction=None, chain=False)
    panels = spectrum_panels(result)
    assert [p.title for p in panels] == [
        "1/3: simulated spectrum (tbabs*powerlaw, no file)", "2/3: obs2.pha", "3/3: obs3.pha"]
    fig = spectrum_plot(result, residuals="ratio")
    assert len(fig.axes) == 6                       # data and residual axes for each spectrum
    assert fig.axes[1].get_ylabel() == "data/model"
    plt.close(fig)
    with pytest.raises(ValueError, match="residuals"):
        spectrum_plot(result, residuals="chi2")
