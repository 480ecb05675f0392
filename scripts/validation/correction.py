"""Beyond the paper: SBI alone, SBI + exact-likelihood correction, and the Goodman-Weare chain.

For the paper's reference spectra (~20,000 and ~2,000 counts, ``tbabs*powerlaw``)
and two networks, one deliberately under-trained (a few hundred simulations)
and one trained with the regimes study's budget, each posterior is set beside
the chain: per parameter |median difference| in chain sd and 68% width ratio,
and C2ST accuracy. The correction weights the network's draws by
prior x Poisson likelihood / q (PSIS); its ESS fraction and Pareto k say whether
it can be trusted, and for the under-trained network they should say so.
"""
from __future__ import annotations

from xspec_sbi.api import sbi_fit
from xspec_sbi.demo import reference_session
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.presets.table1 import table1_prior

from .common import compare_samples, distinct_corrected_draws, save_figure

UNDER_TRAINED = 300   # simulations: enough for a broad proposal, far too few for calibration
# Network draws weighted by the likelihood: enough that the corrected set has thousands of
# distinct draws when the ESS fraction is ~10 %.
N_PROPOSALS = 40_000


def _one(session, counts, n_sims, b, seed, config):
    r = sbi_fit(session, prior=table1_prior(1), restrict=f"counts:{counts / 2:g}-{counts * 5:g}",
                n_simulations=n_sims, n_samples=N_PROPOSALS, chain_length=b["chain"], chain_burn=b["burn"],
                seed=seed, config=config, progress=False)
    t = r.timings
    sbi_alone = sum(t.get(k, 0.0) for k in ("restriction", "simulation", "training", "sampling"))
    c = r.correction
    chain = r.chain.samples
    draws = distinct_corrected_draws(c, seed)
    corrected = compare_samples(c.theta, chain, r.names)
    # C2ST on resampled (repeated) draws measures the repeats: see distinct_corrected_draws
    corrected["c2st"] = None if draws is None else compare_samples(draws, chain, r.names)["c2st"]
    return r, {
        "n_simulations": n_sims,
        "sbi_alone": {**compare_samples(r.samples_raw, chain, r.names), "seconds": sbi_alone},
        "sbi_corrected": {**corrected,
                          "seconds": sbi_alone + t["likelihood check"]},
        "distinct_corrected_draws_for_c2st": 0 if draws is None else len(draws),
        "chain": {"seconds": t["chain"], "length": b["chain"], "burn": b["burn"]},
        "ess_fraction": c.ess_fraction, "pareto_k": c.pareto_k, "reliable": c.reliable,
        "advice": c.advice, "log_evidence": c.log_evidence, "log_evidence_se": c.log_evidence_se,
    }


def study_correction(b, out, seed):
    under_cfg = NPEConfig(max_epochs=30, patience=5)
    results = {}
    for counts in (20000, 2000):
        session, note = reference_session(counts, seed=seed + 1)
        for label, n_sims, cfg in (("under_trained", UNDER_TRAINED, under_cfg),
                                   ("trained", b["sims"][counts], b["config"])):
            r, m = _one(session, counts, n_sims, b, seed, cfg)
            results[f"counts_{counts}_{label}"] = m
            _corner(r, out / f"correction_{counts}_{label}.png")
    results["note"] = note
    return {"correction": results}


def _corner(r, path):
    """Marginals of SBI alone, SBI + correction and the chain, one panel per parameter."""
    import numpy as np

    def draw(plt):
        k = len(r.names)
        fig, axes = plt.subplots(1, k, figsize=(4 * k, 3.2))
        for i, ax in enumerate(np.atleast_1d(axes)):
            chain = r.chain.samples[:, i]
            bins = np.linspace(*np.quantile(np.concatenate([chain, r.samples_raw[:, i]]),
                                            [0.001, 0.999]), 50)
            ax.hist(chain, bins, density=True, histtype="step", color="k", label="GW chain")
            ax.hist(r.samples_raw[:, i], bins, density=True, histtype="step", color="tab:green",
                    label="SBI alone")
            ax.hist(r.correction.theta[:, i], bins, density=True, histtype="step", color="tab:red",
                    ls="--", label="SBI + correction")
            ax.set_xlabel(r.names[i])
        np.atleast_1d(axes)[0].legend(fontsize=8)
        ess = f"ESS {100 * r.correction.ess_fraction:.1f}%, k {r.correction.pareto_k:.2f}"
        fig.suptitle(f"{r.session.observed().sum():.0f} counts, "
                     f"{r.settings.n_simulations} simulations: {ess}", fontsize=10)
        return fig
    save_figure(path, draw)
