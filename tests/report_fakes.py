"""Small SBIResult objects for report tests, without training a network.

The session is the demo's (real folding, real statistic); the "posterior" is a
seeded Gaussian around the true parameters, proposals and weights come from
:func:`importance_correct` on it, so every number the report reads exists.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def fake_session(counts: float = 2000.0, seed: int = 1, background: bool = False, n_spectra: int = 1,
                 path: str | None = None):
    from dataclasses import replace

    from xspec_sbi.demo import reference_session
    from xspec_sbi.forward.simulate import fakeit_spectrum
    from xspec_sbi.session import Session

    session, _ = reference_session(counts=counts, seed=seed)
    spec = session.spectra[0]
    rng = np.random.default_rng(seed + 100)
    if background:
        bkg = replace(spec, counts=rng.poisson(2.0, spec.n_channels).astype(float), background=None,
                      exposure=2 * spec.exposure, path=None)
        spec = replace(spec, counts=spec.counts + rng.poisson(1.0, spec.n_channels), background=bkg)
    spectra = [replace(spec, path=path)]
    for k in range(1, n_spectra):
        other = fakeit_spectrum(spec, session.model, session.model.free_values(), rng)
        spectra.append(replace(other, path=f"obs{k + 1}.pha"))
    return Session(tuple(spectra), session.model, session.settings)


def fake_result(session=None, n: int = 400, seed: int = 0, correction: str | None = "reliable",
                chain: bool = True, rounds=None):
    """An SBIResult around the true parameters; ``correction``: "reliable", "unreliable" or None."""
    from xspec_sbi.baseline.mcmc import ChainResult
    from xspec_sbi.checks.importance import importance_correct
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.presets.table1 import table1_prior
    from xspec_sbi.result import RunRecord, SBIResult, TrustChecks, summarize

    session = session or fake_session()
    box = build_prior(session.model.parameters, table1_prior(1))
    rng = np.random.default_rng(seed)
    truth = session.model.free_values()
    scale = np.array([0.02, 0.05, 0.05]) * (1 if correction != "unreliable" else 6)
    raw = truth + scale * rng.standard_normal((n, 3))
    raw = np.clip(raw, box.lower * 1.001, box.upper * 0.999)
    stat = session.statistic_function()
    corr = None
    samples = raw
    if correction is not None:
        log_q = -0.5 * np.sum(((raw - truth) / scale) ** 2, axis=1)
        corr = importance_correct(raw, log_q, box.log_prob(raw), -0.5 * stat(raw), rng)
        if corr.reliable:
            samples = corr.theta
    stats = stat(samples)
    best = samples[int(np.argmin(stats))]
    med = np.median(samples, axis=0)
    ch = None
    if chain:
        cs = truth + 0.9 * scale * rng.standard_normal((600, 3))
        ch = ChainResult(samples=cs, stat=stat(cs), names=box.names, walkers=8, burn=100, length=600,
                         acceptance_fraction=np.full(8, 0.4), log_uniform=tuple(box.is_log))
    record = RunRecord(model=session.model.expression, prior=box.to_dict(), restrict="None",
                       n_simulations=1000, rounds=1, npe="NPEConfig(estimator='maf', max_epochs=30)",
                       seed=seed, abund=session.settings.abund, xsect=session.settings.xsect,
                       statistic=stat.name, spectra=tuple(s.label for s in session.spectra),
                       simulations_run=1000, versions={"numpy": np.__version__})
    result = SBIResult(
        names=box.names, samples=samples, samples_raw=raw, summaries=summarize(box.names, samples),
        statistic=stat.name, best_theta=best, stat_median=float(stat(med)[0]),
        stat_best=float(stat(best)[0]), goodness=stat.goodness(best), session=session, prior=box,
        posterior=None, chain=ch, chain_fit=SimpleNamespace(theta=truth, stat=float(stat(truth)[0]))
        if chain else None, chain_goodness=stat.goodness(truth) if chain else None,
        correction=corr, trust=TrustChecks(), settings=record)
    if rounds is not None:
        object.__setattr__(result, "rounds", rounds)   # a later result type may carry rounds
    return result
