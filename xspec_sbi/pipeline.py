"""The stages of :func:`xspec_sbi.sbi_fit`, each a function of plain records.

prior -> restricted prior -> simulations -> network (trained or loaded) ->
posterior draws -> exact-likelihood check -> trust checks -> XSPEC-style fit
and chain -> XSPEC's own answer (PyXspec sessions, through ``session.xspec``).

Nothing here imports PyXspec: a session read from PyXspec carries a link
object (:class:`~xspec_sbi.session.XspecLink`) that the adapter provides.
One generator, seeded once, feeds the stages in a fixed order, so the same
seed gives the same result.
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from xspec_sbi.baseline.mcmc import resolve_walkers
from xspec_sbi.checks.importance import cstat_log_like_constant, importance_correct, wstat_log_like_constant
from xspec_sbi.forward.simulate import make_pool, simulate
from xspec_sbi.inference.npe import (NeuralPosterior, fit_multi_round, simulate_training_set,
                                     train_npe)
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.model import library
from xspec_sbi.options import OptionError, RunOptions
from xspec_sbi.result import RunRecord, SBIResult, TrustChecks, summarize
from xspec_sbi.session import Session

__all__ = ["parse_restriction", "network_fingerprint", "run", "fit_and_chain", "check_prior"]

log = logging.getLogger("xspec_sbi")


def parse_restriction(restrict):
    """Normalise the ``restrict`` argument.

    Accepts None/"none", ``"counts:LO-HI"`` or ``("counts", lo, hi)``,
    ``"cstat"``, ``"cstat:F"`` or ``("cstat", f)``, ``"coarse"``, ``"coarse:N"`` or
    ``("coarse", n)``. Returns ``(kind, args)``.
    """
    if restrict is None or (isinstance(restrict, str) and restrict.lower() in ("", "none")):
        return None, ()
    if isinstance(restrict, str):
        kind, _, arg = restrict.partition(":")
        kind = kind.strip().lower()
        try:
            if kind == "counts":
                lo, hi = (float(v) for v in arg.replace(",", "-").split("-"))
                if not 0 <= lo < hi:
                    raise ValueError
                return "counts", (lo, hi)
            if kind == "cstat":
                f = float(arg) if arg else 0.25
                if not 0 < f < 1:
                    raise ValueError
                return "cstat", (f,)
            if kind == "coarse":
                n = int(float(arg)) if arg else 5000
                if n < 20:
                    raise ValueError
                return "coarse", (n,)
        except ValueError:
            examples = {"counts": "counts:LO-HI with 0 <= LO < HI, e.g. counts:1000-10000",
                        "cstat": "cstat:F with 0 < F < 1, e.g. cstat:0.25",
                        "coarse": "coarse:N with N >= 20 simulations, e.g. coarse:5000"}
            raise OptionError(f"restrict={restrict!r}: write {examples[kind]}") from None
        raise OptionError(f"restrict={restrict!r}: choose counts:LO-HI, cstat[:F], coarse[:N] or none")
    kind, *args = restrict
    return parse_restriction(f"{kind}:{'-'.join(str(a) for a in args)}" if kind == "counts"
                             else f"{kind}:{args[0]}" if args else kind)


def network_fingerprint(session: Session, prior, config) -> dict:
    """What a saved network is checked against on load: session set-up, prior box, NPE settings.

    Parameters
    ----------
    session : Session
    prior : BoxPrior
        The prior the network was trained under.
    config : NPEConfig
    """
    npe = config.to_dict() if hasattr(config, "to_dict") else repr(config)
    return dict(session.fingerprint(), prior=repr(prior.to_dict()), npe=npe)


def check_prior(free, overrides) -> None:
    """Refuse XSPEC's soft limits of norms (0 to 1e24): limits, not a prior one can simulate from."""
    for p in free:
        if p.name in overrides:
            continue
        if p.top - p.bot > 1e6 or (p.bot > 0 and p.top / p.bot > 1e8):
            raise OptionError(
                f"parameter {p.name}: XSPEC's soft limits [{p.bot:g}, {p.top:g}] are too wide to "
                f"simulate from; give a prior, e.g. prior={{'{p.name}': ('log', lo, hi)}} "
                f"(command line: --prior {p.name}=log:LO:HI)")


def _normalise_prior(model, prior):
    """Accept parameter names in any case, as XSPEC does."""
    return {model.parameters[model.index_of(name)].name: spec for name, spec in (prior or {}).items()}


def _source_counts(sim, x):
    """Total source counts of each simulated row (background blocks left out)."""
    return sum(b[:, :p.n_bins].sum(axis=1) for p, b in zip(sim.parts, sim.split(x)))


@dataclass
class _Stage:
    """What the stages share within one call: the set-up, the generator, the timings."""

    session: Session
    options: RunOptions
    box: object
    sim: object
    x_obs: np.ndarray
    stat_fn: object
    rng: np.random.Generator
    timings: dict
    simulate_fn: object = None
    n_simulated: int = 0

    def timed(self, name, t0):
        self.timings[name] = time.perf_counter() - t0


def run(session: Session, prior=None, restrict="cstat", *, seed: int = 0, correct: bool = True,
        options: RunOptions = RunOptions()) -> SBIResult:
    """Neural posterior of ``session`` beside the chain: the body of :func:`xspec_sbi.sbi_fit`.

    Parameters are those of ``sbi_fit`` with the options in records (see
    :mod:`xspec_sbi.options`).
    """
    t_all = time.perf_counter()
    o = options
    mdl = session.model
    free = mdl.free_parameters
    if not free:
        raise OptionError(f"model {mdl.expression}: every parameter is frozen; free at least one "
                          "(command line: leave it out of --freeze)")
    library.configure(session.settings)
    mdl.probe(session.settings)
    if session.xspec is not None:
        session.xspec.check_agreement(session)   # the engine must reproduce XSPEC's folded model
    overrides = _normalise_prior(mdl, prior)
    check_prior(free, overrides)
    box = build_prior(mdl.parameters, overrides)
    sim = session.simulator()
    st = _Stage(session, o, box, sim, session.observed(), session.statistic_function(sim),
                np.random.default_rng(seed), {})
    cfg = o.network.npe_config()
    fingerprint = network_fingerprint(session, box, cfg)
    run_chain = len(session.spectra) == 1 if o.chain.run is None else o.chain.run
    chain = o.chain
    walkers, burn, length = chain.walkers, chain.burn, chain.length
    if run_chain or session.xspec is not None:
        walkers, burn, length = resolve_walkers(walkers, burn, length, len(free))

    with ExitStack() as stack:
        pool = o.compute.executor
        if pool is None and (o.compute.workers or 2) > 1 and o.network.load is None:
            pool = stack.enter_context(make_pool(sim, o.compute.workers))

        def simulate_fn(theta, r):
            st.n_simulated += theta.shape[0]
            return simulate(sim, theta, seed=int(r.integers(2**63 - 1)), executor=pool,
                            progress=o.compute.progress and theta.shape[0] >= 2000)

        st.simulate_fn = simulate_fn
        posterior, restriction, x_train = _network(st, cfg, fingerprint, restrict)

        t0 = time.perf_counter()
        raw = posterior.sample(st.x_obs[None, :], o.budget.n_samples, rng=st.rng)[0]
        st.timed("sampling", t0)

        correction, samples = None, raw
        if correct:
            t0 = time.perf_counter()
            correction = likelihood_check(raw, posterior, st)
            if correction.reliable:
                samples = correction.theta
            st.timed("likelihood check", t0)

        stats_at = st.stat_fn(samples)
        best = samples[int(np.argmin(stats_at))]
        median = np.median(samples, axis=0)
        goodness = st.stat_fn.goodness(best)
        trust = trust_checks(x_train, samples, st)

        mcmc_chain = chain_fit = chain_good = None
        if run_chain:
            t0 = time.perf_counter()
            chain_fit, mcmc_chain = fit_and_chain(st.stat_fn, best, box, free, length, burn, walkers,
                                                  st.rng, o.compute.progress,
                                                  covariance=np.atleast_2d(np.cov(samples.T)))
            chain_good = st.stat_fn.goodness(chain_fit.theta)
            st.timed("chain", t0)

    xspec_side = None
    if session.xspec is not None:
        t0 = time.perf_counter()
        xspec_side = session.xspec.compare(
            names=tuple(box.names), samples=samples, median=median, chain=run_chain,
            chain_length=length, chain_burn=burn, walkers=walkers,
            load_chain=chain.load_into_xspec, progress=o.compute.progress, stat=stats_at)
        st.timed("XSPEC fit+chain", t0)
    st.timed("total", t_all)
    record = RunRecord(
        model=mdl.expression, prior=box.to_dict(), restrict=str(restrict),
        n_simulations=o.budget.total_simulations, rounds=o.budget.rounds, npe=repr(cfg), seed=seed,
        abund=session.settings.abund, xsect=session.settings.xsect, statistic=st.stat_fn.name,
        spectra=tuple(s.label for s in session.spectra), simulations_run=st.n_simulated,
        versions=_versions())
    return SBIResult(
        names=tuple(box.names), samples=samples, samples_raw=raw,
        summaries=summarize(box.names, samples), statistic=st.stat_fn.name, best_theta=best,
        stat_median=float(st.stat_fn(median)[0]), stat_best=float(st.stat_fn(best)[0]),
        goodness=goodness, session=session, prior=box, posterior=posterior, chain=mcmc_chain,
        chain_fit=chain_fit, chain_goodness=chain_good, correction=correction, trust=trust,
        timings=st.timings, settings=record, restriction=restriction, xspec=xspec_side)


def _network(st: _Stage, cfg, fingerprint, restrict):
    """Load the trained posterior, or restrict, simulate and train. Returns (posterior, restriction, x_train)."""
    o = st.options
    if o.network.load is not None:
        posterior = NeuralPosterior.load(o.network.load, fingerprint, device=o.network.device)
        log.info("loaded trained posterior from %s", o.network.load)
        return posterior, None, None
    kind, args = parse_restriction(restrict)
    proposal = restriction = x_train = None
    t0 = time.perf_counter()
    if kind is not None:
        restriction = restrict_prior(kind, args, st, cfg)
        proposal = restriction.prior
        st.timed("restriction", t0)
    t0 = time.perf_counter()
    b = o.budget
    if b.rounds > 1:
        log.info("multi-round NPE: %d rounds x %d simulations", b.rounds, b.per_round)
        posterior = fit_multi_round(st.simulate_fn, st.box, st.x_obs, rng=st.rng, rounds=b.rounds,
                                    simulations_per_round=b.per_round, proposal=proposal, config=cfg,
                                    device=o.network.device).posterior
        st.timed("simulation+training", t0)
    else:
        n = b.total_simulations
        log.info("simulating %d spectra%s", n, " from the restricted prior" if proposal is not None else "")
        theta, x = simulate_training_set(st.simulate_fn, proposal or st.box, n, rng=st.rng)
        x_train = x
        st.timed("simulation", t0)
        t0 = time.perf_counter()
        log.info("training %s on %d simulations", cfg.estimator, n)
        posterior = train_npe(theta, x, st.box, rng=st.rng, config=cfg, device=o.network.device)
        st.timed("training", t0)
    if o.network.save is not None:
        posterior.save(o.network.save, fingerprint, overwrite=o.network.overwrite)
        log.info("saved the trained posterior to %s", o.network.save)
    return posterior, restriction, x_train


def restrict_prior(kind, args, st: _Stage, cfg):
    """The restricted prior (paper Sec. 3), always a truncation of the user's prior."""
    from xspec_sbi.inference import restrict as R
    if kind == "counts":
        lo, hi = args
        log.info("restricting the prior to spectra with %g-%g source counts", lo, hi)
        sim = st.sim

        class SourceCountWindow(R.CountWindow):
            # background counts, when simulated, are not part of the window
            def scores(self, theta, x):
                total = _source_counts(sim, x)
                return np.maximum(np.maximum(self.lower - total, total - self.upper), 0.0)

        return R.restrict_by_classifier(st.simulate_fn, st.box, SourceCountWindow(lo, hi), rng=st.rng)
    if kind == "cstat":
        log.info("restricting the prior to the best %g%% in %s", 100 * args[0], st.stat_fn.name)
        condition = R.BestFraction(lambda theta, x: st.stat_fn(theta), fraction=args[0])
        return R.restrict_by_classifier(st.simulate_fn, st.box, condition, rng=st.rng)
    log.info("coarse inference with %d simulations to restrict the prior", args[0])
    return R.restrict_by_coarse_inference(st.simulate_fn, st.box, st.x_obs, rng=st.rng,
                                          n_simulations=args[0], config=cfg,
                                          device=st.options.network.device)


def likelihood_check(raw, posterior, st: _Stage):
    """Importance-weight the network's draws by the exact Poisson likelihood (PSIS, ESS, evidence)."""
    log_q = posterior.log_prob(raw, st.x_obs)
    log_prior = st.box.log_prob(raw)
    log_like = -0.5 * st.stat_fn(raw)
    const = 0.0
    for p, b in zip(st.sim.parts, st.sim.split(st.x_obs)):
        if p.has_background:
            const += wstat_log_like_constant(b[:p.n_bins], b[p.n_bins:])
        else:
            const += cstat_log_like_constant(b)
    return importance_correct(raw, log_q, log_prior, log_like, st.rng, log_like_constant=const)


def trust_checks(x_train, samples, st: _Stage) -> TrustChecks:
    """Out-of-distribution check against the training spectra, and the posterior predictive p-value."""
    from xspec_sbi.checks.ood import ood_check
    from xspec_sbi.checks.ppc import ppc_pvalue
    from xspec_sbi.forward.objective import PoissonStatistic
    ood = ood_check(st.x_obs, x_train) if x_train is not None else None   # trained in this call
    median = np.median(samples, axis=0)
    sim = st.sim

    def stat_data(x, theta):
        return PoissonStatistic.of_rows(sim, x, theta)

    # The Kaastra check compares x_obs with source-model counts: only defined without background blocks.
    model_counts = None if st.stat_fn.name == "wstat" else \
        np.concatenate([m[0] for m in st.stat_fn.expected_counts(median[None])])
    ppc = ppc_pvalue(stat_data, lambda th, r: sim(th, r), samples, st.x_obs, st.rng, n=200,
                     model_counts=model_counts)
    return TrustChecks(ood=ood, ppc=ppc)


def fit_and_chain(stat_fn, start, box, free, length, burn, walkers, rng, progress=False, *,
                  covariance=None):
    """The XSPEC-style comparison of ``sbi_fit``: C-stat fit from ``start``, then the chain.

    Parameters
    ----------
    stat_fn : callable
        ``stat(theta) -> (n,)`` of the observation (cstat or wstat).
    start : ndarray (n_free,)
        Starting point of the fit (``sbi_fit``: the best SBI sample).
    box : BoxPrior
        Fit bounds and the chain's prior (log-uniform where the prior is).
    free : sequence of ParameterSpec
        The free parameters; without ``covariance`` their deltas start the walkers.
    length, burn, walkers :
        XSPEC's chain settings (samples over all walkers; walkers None: XSPEC's rule).
    rng : numpy.random.Generator
        Seeds the fit's extra starts and the chain.
    covariance : ndarray (n_free, n_free), optional
        Gaussian spread of the initial walkers around the fit (XSPEC's default
        proposal, "gaussian fit"); ``sbi_fit`` gives the covariance of the SBI
        posterior draws. XSPEC's deltas (0.01 for a norm) cannot start a chain
        on a faint source whose norm is 1e-6: they put most walkers below zero.

    Returns
    -------
    (FitResult, ChainResult)
    """
    from xspec_sbi.baseline.fit import fit
    from xspec_sbi.baseline.mcmc import run_chain
    lower, upper = box.lower, box.upper
    log.info("fitting (C-stat minimisation) from the best SBI sample")
    best = fit(stat_fn, start, lower, upper, seed=int(rng.integers(2**31)))
    log.info("Goodman-Weare chain: %s walkers, burn %d, length %d", walkers, burn, length)
    deltas = None
    if covariance is None:
        deltas = np.array([p.delta if p.delta > 0 else 0.01 * abs(p.value) + 1e-3 for p in free])
    chain = run_chain(stat_fn, best.theta, lower, upper, names=list(box.names), walkers=walkers,
                      burn=burn, length=length, covariance=covariance, deltas=deltas,
                      log_uniform=box.is_log, seed=int(rng.integers(2**31)), progress=progress)
    return best, chain


def _versions():
    import sbi
    import torch

    from xspec_sbi._version import __version__
    return {"xspec_sbi": __version__, "sbi": sbi.__version__, "torch": torch.__version__,
            "numpy": np.__version__}
