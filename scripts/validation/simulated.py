"""The paper's studies on simulated spectra: regimes [4], multi-round [5], PCA [7], prior predictive [Fig. 4]."""
from __future__ import annotations

import time

import numpy as np

from xspec_sbi.api import sbi_fit
from xspec_sbi.demo import reference_session
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.presets.table1 import table1_prior
from xspec_sbi.forward.simulate import make_pool, simulate

from .common import amortized_test_set, compare_with_chain, save_figure


def study_regimes(b, out, seed):
    metrics = {}
    for counts in (20000, 2000):
        session, note = reference_session(counts, seed=seed + 1)
        t0 = time.perf_counter()
        r = sbi_fit(session, prior=table1_prior(1), restrict=f"counts:{counts / 2:g}-{counts * 5:g}",
                    n_simulations=b["sims"][counts], n_samples=5000, chain_length=b["chain"],
                    chain_burn=b["burn"], seed=seed, config=b["config"], progress=False)
        tag = f"regimes_{counts}"
        m = {"note": note, "counts": float(session.observed().sum()),
             "timings_s": r.timings, "wall_s": time.perf_counter() - t0,
             "sbi_vs_chain": compare_with_chain(r),
             "stat": {"sbi_best": r.stat_best, "fit": r.chain_fit.stat,
                      "expected": r.goodness.expected, "sigma": r.goodness.sigma},
             "sbi_path_over_chain_time": (r.timings["total"] - r.timings["chain"]) / r.timings["chain"]}
        m.update(amortized_test_set(r, b["n_test"], b["n_post"], seed + 10, out, tag))
        r.plot_corner(out / f"{tag}_corner.png")
        metrics[f"counts_{counts}"] = m
    return {"regimes": metrics}


def study_multiround(b, out, seed):
    session, note = reference_session(2000, seed=seed + 1)
    rounds, per = b["rounds"]
    single = sbi_fit(session, prior=table1_prior(1), restrict="counts:1000-10000",
                     n_simulations=b["sims"][2000], chain_length=b["chain"], chain_burn=b["burn"],
                     seed=seed, config=b["config"], progress=False)
    multi = sbi_fit(session, prior=table1_prior(1), restrict="counts:1000-10000", rounds=rounds,
                    simulations_per_round=per, chain_length=b["chain"], chain_burn=b["burn"],
                    seed=seed, config=b["config"], progress=False)
    multi.plot_corner(out / "multiround_corner.png")
    return {"multiround": {"rounds": rounds, "per_round": per,
                           "single": {"vs_chain": compare_with_chain(single), "timings_s": single.timings},
                           "multi": {"vs_chain": compare_with_chain(multi), "timings_s": multi.timings}}}


def study_pca(b, out, seed):
    session, _ = reference_session(2000, seed=seed + 1)
    res = {}
    for label, pca in (("without", None), ("with", 0.9)):
        cfg = b["config"] or NPEConfig()
        cfg = NPEConfig(**{**cfg.__dict__, "pca_variance": pca})
        r = sbi_fit(session, prior=table1_prior(1), restrict="counts:1000-10000",
                    n_simulations=b["sims"][2000], chain_length=b["chain"], chain_burn=b["burn"],
                    seed=seed, config=cfg, progress=False)
        m = {"timings_s": r.timings, "vs_chain": compare_with_chain(r),
             "features": int(r.posterior.features.n_features)}
        m.update(amortized_test_set(r, b["n_test"], b["n_post"], seed + 20, out, f"pca_{label}"))
        res[label] = m
    return {"pca": res}


def study_ppc(b, out, seed):
    """The observation against spectra drawn from the count-window restricted prior."""
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.inference.restrict import CountWindow, restrict_by_classifier
    session, _ = reference_session(20000, seed=seed + 1)
    sim = session.simulator()
    prior = build_prior(session.model.parameters, table1_prior(1))
    quick = b["quick"]
    with make_pool(sim, 2) as pool:
        def simulate_fn(theta, r):
            return simulate(sim, theta, seed=int(r.integers(2**63 - 1)), executor=pool)
        restriction = restrict_by_classifier(simulate_fn, prior, CountWindow(10000, 100000), rng=seed,
                                             max_rounds=3 if quick else 10,
                                             max_epochs=40 if quick else 300)
        theta = restriction.prior.sample(2000, rng=seed)
        x = simulate_fn(theta, np.random.default_rng(seed))
    obs = session.observed()
    lo, med, hi = np.quantile(x, [0.025, 0.5, 0.975], axis=0)
    inside = float(np.mean((obs >= lo) & (obs <= hi)))
    e_lo, e_hi = session.spectra[0].bin_energies()

    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.fill_between(e_hi, lo, hi, step="pre", color="tab:red", alpha=0.3, label="restricted prior 95%")
        ax.step(e_hi, med, where="pre", color="tab:blue", label="median")
        ax.step(e_hi, obs, where="pre", color="tab:green", label="observation")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("energy (keV)")
        ax.set_ylabel("counts per bin")
        ax.legend()
        return fig
    save_figure(out / "ppc_prior_predictive.png", draw)
    return {"ppc": {"fraction_of_bins_inside_95_band": inside,
                    "restriction_valid_fractions": list(restriction.valid_fractions),
                    "restricted_prior_acceptance": restriction.prior.acceptance}}
