"""Pieces shared by the validation studies: targets, budgets, figures, comparisons."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from xspec_sbi.checks.calibration import c2st, interval_coverage, run_sbc
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.forward.simulate import make_pool, simulate

TARGETS = {"slope": (0.97, 1.03), "median_diff_sd": 0.1, "width_ratio": (0.9, 1.1), "c2st": 0.55,
           "coverage_tol": 0.05, "sbc_ks_p": 0.01}


def budgets(quick: bool) -> dict:
    """Simulation, test-set and chain sizes; ``quick`` is a smoke run of minutes."""
    if quick:
        return dict(quick=True, sims={20000: 1500, 2000: 1500}, n_test=60, n_post=300, chain=4000, burn=800,
                    config=NPEConfig(max_epochs=40, patience=8), rounds=(2, 500))
    return dict(quick=False, sims={20000: 10000, 2000: 20000}, n_test=500, n_post=1000, chain=50000, burn=5000,
                config=None, rounds=(3, 1000))


def save_figure(path, draw):
    """Draw with ``draw(plt) -> Figure`` and write a PNG (Agg backend: no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = draw(plt)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare_samples(samples, chain, names, seed: int = 0) -> dict:
    """Per parameter |median difference| in chain sd and 68% width ratio; C2ST accuracy.

    Parameters
    ----------
    samples, chain : ndarray (n, k)
        Posterior draws to check, and the reference (Goodman-Weare chain) draws.
    names : sequence of str
    """
    out = {}
    for i, name in enumerate(names):
        s, c = samples[:, i], chain[:, i]
        w_s = np.subtract(*np.quantile(s, [0.84, 0.16]))
        w_c = np.subtract(*np.quantile(c, [0.84, 0.16]))
        out[name] = {"median_diff_sd": float(abs(np.median(s) - np.median(c)) / c.std()),
                     "width_ratio": float(w_s / w_c)}
    n = min(len(samples), len(chain), 5000)
    rng = np.random.default_rng(seed)
    a = samples[rng.choice(len(samples), n, replace=False)]
    b = chain[rng.choice(len(chain), n, replace=False)]
    out["c2st"] = float(c2st(a, b, seed=seed))
    return out


def distinct_corrected_draws(correction, seed: int = 0, max_draws: int = 5000) -> np.ndarray | None:
    """Draws of the corrected posterior for a C2ST, with (almost) no repeated rows.

    The corrected posterior is a weighted set; resampling it with replacement
    repeats heavy draws, and a classifier spots repeats, so a C2ST on such
    draws measures duplication, not disagreement. Systematic resampling of
    at most a quarter of the smoothed ESS keeps repeats rare. Returns None when
    fewer than 200 such draws exist (too few for a C2ST).
    """
    m = int(min(max_draws, correction.ess_smoothed / 4))
    if m < 200:
        return None
    u = (np.random.default_rng(seed).random() + np.arange(m)) / m
    idx = np.searchsorted(np.cumsum(correction.weights), u)
    return correction.proposals[np.minimum(idx, len(correction.proposals) - 1)]


def compare_with_chain(result) -> dict:
    """:func:`compare_samples` of an SBIResult's samples against its chain.

    When the importance correction replaced the network's draws, medians and
    widths use the returned samples and the C2ST uses
    :func:`distinct_corrected_draws`; ``"network_alone"`` holds the comparison of
    the network's own draws.
    """
    chain = result.chain.samples
    c = result.correction
    if c is None or result.samples is result.samples_raw:
        return {**compare_samples(result.samples, chain, result.names), "corrected": False}
    out = compare_samples(result.samples, chain, result.names)
    draws = distinct_corrected_draws(c)
    out["c2st"] = None if draws is None else compare_samples(draws, chain, result.names)["c2st"]
    out["corrected"] = True
    out["network_alone"] = compare_samples(result.samples_raw, chain, result.names)
    return out


def amortized_test_set(result, n_test, n_post, seed, out: Path, tag: str) -> dict:
    """Amortized posteriors for spectra simulated from the restricted prior."""
    proposal = result.restriction.prior if result.restriction is not None else result.prior
    rng = np.random.default_rng(seed)
    theta = proposal.sample(n_test, rng=rng)
    sim = result.session.simulator()
    with make_pool(sim, 2) as pool:
        x = simulate(sim, theta, seed=seed, executor=pool)
    t0 = time.perf_counter()
    samples = result.posterior.sample(x, n_post, rng=seed)
    t_post = time.perf_counter() - t0
    med = np.median(samples, axis=1)
    slopes = {}
    for i, name in enumerate(result.names):
        slopes[name] = float(np.polyfit(theta[:, i], med[:, i], 1)[0])
    coverage = interval_coverage(samples, theta, (0.68, 0.90, 0.95))
    sbc = run_sbc(result.posterior, theta, x, proposal, rng=seed, n_samples=min(n_post, 300))

    def draw(plt):
        fig, axes = plt.subplots(1, len(result.names), figsize=(4 * len(result.names), 3.6))
        for i, ax in enumerate(np.atleast_1d(axes)):
            lo, hi = np.quantile(samples[:, :, i], [0.16, 0.84], axis=1)
            ax.errorbar(theta[:, i], med[:, i], yerr=[med[:, i] - lo, hi - med[:, i]], fmt=".", ms=3,
                        alpha=0.5)
            lim = [theta[:, i].min(), theta[:, i].max()]
            ax.plot(lim, lim, "r-", lw=1)
            ax.set_title(f"{result.names[i]}: slope {slopes[result.names[i]]:.3f}", fontsize=9)
            ax.set_xlabel("input")
            ax.set_ylabel("inferred (median, 68%)")
        return fig
    save_figure(out / f"{tag}_inferred_vs_input.png", draw)
    return {"n_test": n_test, "slopes": slopes,
            "coverage": {f"{lvl:.2f}": dict(zip(result.names, map(float, row)))
                         for lvl, row in zip((0.68, 0.90, 0.95), np.atleast_2d(coverage))},
            "sbc_ks_pvalues": dict(zip(result.names, map(float, sbc.ks_pvalues))),
            "posterior_seconds": t_post}


