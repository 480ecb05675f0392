"""Corner plot and prior marginals: no empty panels, the marks and labels a talk needs."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from report_fakes import fake_result


@pytest.fixture(scope="module")
def result():
    return fake_result(n=300, correction=None)


def _drawn(ax) -> bool:
    return bool(ax.lines or ax.collections or ax.patches)


def test_corner_is_a_lower_triangle_with_medians_best_fit_and_units(result):
    import matplotlib.pyplot as plt

    from xspec_sbi.report.plots import BEST_COLOR, corner
    fig = corner(result)
    k = len(result.names)
    assert len(fig.axes) == k * (k + 1) // 2           # no upper-triangle frames
    assert all(_drawn(ax) for ax in fig.axes)
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    assert "TBabs.nH (10^22)" in labels and "powerlaw.PhoIndex" in labels
    best = np.asarray(result.chain_fit.theta)
    diag = [ax for ax in fig.axes if ax.get_title()]    # the 1-D panels carry median +/- titles
    assert len(diag) == k
    for i, ax in enumerate(diag):
        xs = {round(float(line.get_xdata()[0]), 10) for line in ax.lines}
        med_sbi, med_chain = np.median(result.samples[:, i]), np.median(result.chain.samples[:, i])
        for v in (med_sbi, med_chain, best[i]):
            assert round(float(v), 10) in xs
    stars = [line for ax in fig.axes for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == k * (k - 1) // 2 and all(line.get_color() == BEST_COLOR for line in stars)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("SBI" in t for t in legend) and any("chain" in t for t in legend)
    assert any("best fit" in t for t in legend)
    plt.close(fig)


def test_corner_without_chain_marks_the_best_sample(result):
    import matplotlib.pyplot as plt

    from xspec_sbi.report.plots import corner
    r = replace(result, chain=None, chain_fit=None)
    fig = corner(r)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("best SBI sample" in t for t in legend) and not any("chain" in t for t in legend)
    plt.close(fig)


def test_prior_marginals_show_prior_restriction_and_posterior(result):
    import matplotlib.pyplot as plt

    from xspec_sbi.inference.truncation import truncate
    from xspec_sbi.inference.restrict import RestrictionResult
    from xspec_sbi.report.plots import prior_marginals

    fig = prior_marginals(result)
    assert len(fig.axes) == 3 and all(len(ax.patches) == 2 for ax in fig.axes)   # prior, posterior
    assert fig.axes[2].get_xscale() == "log"                                       # log-uniform norm
    plt.close(fig)

    region = lambda th: th[:, 1] < 2.0      # noqa: E731  (PhoIndex below 2)
    tp = truncate(result.prior, region, rng=0, upper=np.array([0.3, 2.5, 10.0]), label="test")
    r = replace(result, restriction=RestrictionResult(prior=tp, valid_fractions=(0.4, 0.95),
                                                      thresholds=(1.0,), n_simulations=200))
    fig = prior_marginals(r, n_draws=3000, seed=1)
    assert all(len(ax.patches) == 3 for ax in fig.axes)
    ax = fig.axes[1]
    restricted = [p for p in ax.patches if "restricted" in (p.get_label() or "")][0]
    # no restricted draw above PhoIndex 2: every bin there is empty
    values, edges, _ = restricted.get_data()
    assert np.all(values[edges[:-1] >= 2.0] == 0) and values[edges[1:] <= 2.0].max() == 1.0
    plt.close(fig)
