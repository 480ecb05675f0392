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

from xspec_sbi.baseline.comparison import fit_and_chain
from xspec_sbi.baseline.mcmc import resolve_walkers
from xspec_sbi.checks.background import empty_background_warnings
from xspec_sbi.checks.bounds import bound_warnings
from xspec_sbi.checks.importance import importance_correct, log_like_constant
from xspec_sbi.checks.moves import metropolis_moves
from xspec_sbi.forward.exposure import exposure_varied
from xspec_sbi.forward.simulate import make_pool, simulate
from xspec_sbi.inference.posterior import NeuralPosterior
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.inference.rounds import fit_multi_round
from xspec_sbi.inference.training import simulate_training_set, train_npe
from xspec_sbi.model import library
from xspec_sbi.options import OptionError, RunOptions, check_prior, parse_restriction
from xspec_sbi.refine import RoundRecord, check_passes, defensive_check, refine
from xspec_sbi.result import RunRecord, SBIResult, TrustChecks, summarize
from xspec_sbi.session import Session

__all__ = ["network_fingerprint", "run", "likelihood_check", "trust_checks"]

log = logging.getLogger("xspec_sbi")


def network_fingerprint(session: Session, prior, config) -> dict:
    """What a saved network is checked against on load: session set-up, prior box, NPE settings.

    Parameters
    ----------
    session : Session
    prior : BoxPrior
        The prior the network was trained under.
    config : NPEConfig
    """
    # data, not repr: a config field added later (with its default) keeps old networks loadable
    return dict(session.fingerprint(), prior=prior.to_dict(), npe=config.to_dict())


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
    checked: int = 0
    per_draw: float = 0.0   # s per statistic, measured by the last likelihood check

    def timed(self, name, t0):
        self.timings[name] = time.perf_counter() - t0


def run(session: Session, prior=None, restrict="cstat", *, seed: int = 0, correct: bool = True,
        options: RunOptions = RunOptions()) -> SBIResult:
    """Neural posterior of ``session`` beside the chain: the body of :func:`xspec_sbi.sbi_fit`.

    Parameters are those of ``sbi_fit`` with the options in records (see
    :mod:`xspec_sbi.options`). XSPEC's abundance and cross-section tables are
    the session's during the run and what they were before once it returns:
    a fit does not change them, as in XSPEC (a model evaluated or a spectrum
    faked afterwards, outside a session, uses the tables the user had; before,
    it silently used the last fitted session's, and a second run of the same
    script in one process gave other numbers).
    """
    before = library.current_settings()
    try:
        return _run(session, prior, restrict, seed=seed, correct=correct, options=options)
    finally:
        library.configure(before)


def _run(session: Session, prior, restrict, *, seed: int, correct: bool,
         options: RunOptions) -> SBIResult:
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
    # an exposure-conditioned network trains on spectra of many exposures (forward/exposure.py)
    train_sim = exposure_varied(sim, cfg)
    fingerprint = network_fingerprint(session, box, cfg)
    run_chain = len(session.spectra) == 1 if o.chain.run is None else o.chain.run
    chain = o.chain
    walkers, burn, length = chain.walkers, chain.burn, chain.length
    if run_chain or session.xspec is not None:
        walkers, burn, length = resolve_walkers(walkers, burn, length, len(free))

    with ExitStack() as stack:
        pools = []

        def executor():
            # started on first use: a loaded network that passes its check simulates nothing
            if not pools:
                pool = o.compute.executor
                if pool is None and (o.compute.workers or 2) > 1:
                    pool = stack.enter_context(make_pool(train_sim, o.compute.workers))
                    # the exact statistic's large batches (check, moves) use the same workers
                    st.stat_fn = st.stat_fn.using(pool)
                pools.append(pool)
            return pools[0]

        def simulate_fn(theta, r):
            st.n_simulated += theta.shape[0]
            return simulate(train_sim, theta, seed=int(r.integers(2**63 - 1)), executor=executor(),
                            progress=o.compute.progress and theta.shape[0] >= 2000)

        st.simulate_fn = simulate_fn
        t_round = time.perf_counter()
        posterior, restriction, theta_train, x_train = _network(st, cfg, fingerprint, restrict)

        def draw(post):
            return post.sample(st.x_obs[None, :], o.budget.n_samples, rng=st.rng)[0]

        t0 = time.perf_counter()
        raw = draw(posterior)
        st.timed("sampling", t0)

        correction, samples, source, rounds, moves = None, raw, "network", (), None
        stats_at = None
        if correct:
            t0 = time.perf_counter()
            correction = likelihood_check(raw, posterior, st)
            st.timed("likelihood check", t0)
            first = RoundRecord(1, _first_kind(o), st.n_simulated, correction.ess_fraction,
                                correction.pareto_k, check_passes(correction, o.refine.min_ess_fraction),
                                time.perf_counter() - t_round,
                                1.0 if restriction is None else restriction.prior.mass)
            rounds = (first,)
            if o.refine.enabled and not first.passed:
                t0 = time.perf_counter()
                out = refine(posterior, correction, simulate=simulate_fn, prior=box,
                             proposal=None if restriction is None else restriction.prior,
                             x_obs=st.x_obs, draw=draw, check=lambda r, q: likelihood_check(r, q, st),
                             defensive=lambda q: defensive_check(
                                 q, st.box if restriction is None else restriction.prior, st.x_obs,
                                 lambda d, lq: likelihood_check(d, q, st, log_q=lq),
                                 n=o.budget.n_samples, rng=st.rng,
                                 min_ess_fraction=o.refine.min_ess_fraction),
                             options=o.refine, config=cfg, device=o.network.device, rng=st.rng,
                             theta_train=theta_train, x_train=x_train,
                             first_round=o.first_round_simulations)
                if out.rounds:
                    posterior, correction, x_train = out.posterior, out.correction, out.x_train
                    raw = raw if out.raw is None else out.raw   # None: no round retrained
                    rounds = rounds + out.rounds
                st.timed("refinement", t0)
            if correction.reliable:
                samples, source = correction.theta, "corrected"
                # the check evaluated every draw it weighed: the corrected draws' statistics
                stats_at = -2.0 * correction.log_like[correction.indices]
                if o.refine.moves:
                    t0 = time.perf_counter()
                    samples, stats_at, moves = _moves(samples, stats_at, st)
                    st.timed("moves", t0)

        mcmc_chain = chain_fit = chain_good = None
        exact_needed = correct and source != "corrected" and o.refine.fallback == "chain" and o.refine.enabled
        if exact_needed:
            # The check failed within the budget: the answer is an exact chain on the statistic,
            # started from the network's draws, not draws known to be wrong.
            t0 = time.perf_counter()
            start = raw[int(np.argmin(st.stat_fn(raw)))]
            log.info("the likelihood check still fails: exact Goodman-Weare chain started from the "
                     "network's draws")
            chain_fit, mcmc_chain = fit_and_chain(st.stat_fn, start, box, free, length, burn, walkers,
                                                  st.rng, o.compute.progress,
                                                  covariance=np.atleast_2d(np.cov(raw.T)))
            chain_good = st.stat_fn.goodness(chain_fit.theta)
            samples, source = _thin(mcmc_chain.samples, o.budget.n_samples), "chain"
            st.timed("exact chain", t0)

        if stats_at is None:   # the network's draws or the exact chain's: not evaluated yet
            stats_at = st.stat_fn(samples)
        best = samples[int(np.argmin(stats_at))]
        median = np.median(samples, axis=0)
        goodness = st.stat_fn.goodness(best)
        if x_train is not None and x_train.shape[1] > sim.n_outputs:
            x_train = x_train[:, :sim.n_outputs]   # the counts, without the exposure input
        trust = trust_checks(x_train, samples, st, exact=source in ("corrected", "chain"),
                             why_not=_why_no_exact_draws(correct, o.refine, correction))

        if run_chain and mcmc_chain is None:
            t0 = time.perf_counter()
            chain_fit, mcmc_chain = fit_and_chain(st.stat_fn, best, box, free, length, burn, walkers,
                                                  st.rng, o.compute.progress,
                                                  covariance=np.atleast_2d(np.cov(samples.T)))
            chain_good = st.stat_fn.goodness(chain_fit.theta)
            st.timed("chain", t0)

    st.stat_fn = st.stat_fn.using(None)   # the pool has ended with the block above
    xspec_side = None
    if session.xspec is not None:
        t0 = time.perf_counter()
        xspec_side = session.xspec.compare(
            names=tuple(box.names), samples=samples, median=median, chain=run_chain,
            chain_length=length, chain_burn=burn, walkers=walkers,
            load_chain=chain.load_into_xspec, progress=o.compute.progress, stat=stats_at,
            prior=box)   # XSPEC's chain under SBI's priors where this XSPEC can (Fit.bayes)
        st.timed("XSPEC fit+chain", t0)
    st.timed("total", t_all)
    record = RunRecord(
        model=mdl.expression, prior=box.to_dict(), restrict=str(restrict),
        n_simulations=o.first_round_simulations, rounds=o.budget.rounds, npe=repr(cfg), seed=seed,
        abund=session.settings.abund, xsect=session.settings.xsect, statistic=st.stat_fn.name,
        spectra=tuple(s.label for s in session.spectra), simulations_run=st.n_simulated,
        versions=_versions())
    return SBIResult(
        names=tuple(box.names), samples=samples, samples_raw=raw,
        summaries=summarize(box.names, samples), statistic=st.stat_fn.name, best_theta=best,
        stat_median=float(st.stat_fn(median)[0]), stat_best=float(st.stat_fn(best)[0]),
        goodness=goodness, session=session, prior=box, posterior=posterior, chain=mcmc_chain,
        chain_fit=chain_fit, chain_goodness=chain_good, correction=correction, trust=trust,
        timings=st.timings, settings=record, restriction=restriction, xspec=xspec_side,
        samples_source=source, rounds=rounds, checked_draws=st.checked, moves=moves)


def _moves(samples, stats, st: _Stage):
    """Metropolis moves of the resampled corrected draws (``RefineOptions.moves``), as many
    steps as ``Budget.check_seconds`` affords at the statistic's measured cost.

    ``stats`` are the draws' statistics (from the check); returns (draws, their
    statistics, the record or None)."""
    steps = st.options.refine.moves
    if st.per_draw > 0:
        steps = min(steps, int(st.options.budget.check_seconds / (st.per_draw * len(samples))))
    if steps < 2:
        log.info("no Metropolis moves of the corrected draws: the statistic is too costly here "
                 "(%.1f ms per draw, Budget.check_seconds %.0f s)", 1e3 * st.per_draw,
                 st.options.budget.check_seconds)
        return samples, stats, None
    moved, log_like, record = metropolis_moves(samples, lambda t: -0.5 * st.stat_fn(t), st.box,
                                               rng=st.rng, log_like_start=-0.5 * stats,
                                               max_steps=steps)
    log.info("corrected draws refreshed: %s", record)
    return moved, -2.0 * log_like, record


def _first_kind(o: RunOptions) -> str:
    if o.network.load is not None:
        return "loaded"
    return "multi-round" if o.budget.rounds > 1 else "trained"


def _thin(samples: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows spread evenly over a chain (all of them when it is shorter)."""
    if len(samples) <= n:
        return samples
    return samples[np.linspace(0, len(samples) - 1, n).round().astype(int)]


def _why_no_exact_draws(correct, refine_options, correction) -> str:
    if not correct:
        return "the likelihood check was switched off (correct=False): the draws are the network's, unchecked"
    if correction is not None and not correction.reliable:
        return ("the likelihood check failed and no exact draws were made (refinement off or "
                "fallback='none'): the network's draws are not the posterior")
    return ""


def _network(st: _Stage, cfg, fingerprint, restrict):
    """Load the trained posterior, or restrict, simulate and train.

    Returns (posterior, restriction, theta_train, x_train); the training set is
    None for a loaded network and for multi-round training.
    """
    o = st.options
    if o.network.load is not None and hasattr(o.network.load, "sample"):
        # a posterior the caller loaded and checked (the command line, for another set-up)
        return o.network.load, None, None, None
    if o.network.load is not None:
        posterior = NeuralPosterior.load(o.network.load, fingerprint, device=o.network.device)
        log.info("loaded trained posterior from %s", o.network.load)
        return posterior, None, None, None
    kind, args = parse_restriction(restrict)
    proposal = restriction = x_train = theta = None
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
        n = o.first_round_simulations
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
    return posterior, restriction, theta, x_train


def restrict_prior(kind, args, st: _Stage, cfg):
    """The restricted prior (paper Sec. 3), always a truncation of the user's prior."""
    from xspec_sbi.inference import restrict as R
    if kind == "counts":
        # the chance of a count in the window is known from the expected counts: exact, and no
        # classifier to train (inference/count_region.py); the classifier where that rejects too much
        from xspec_sbi.inference.count_region import MIN_ACCEPTANCE, restrict_by_expected_counts
        lo, hi = args
        sim = st.sim

        def totals(theta):
            return sum(p.expected(theta).sum(axis=1) for p in sim.parts)

        out = restrict_by_expected_counts(totals, st.box, lo, hi, rng=st.rng,
                                          exposure_factors=cfg.exposure_range or (1.0, 1.0))
        if out is not None:
            log.info("restricted the prior to spectra with %g-%g counts: %s, prior mass %.3g",
                     lo, hi, out.prior.label, out.prior.mass)
            return out
        log.info("the %g-%g count window holds under %.0f%% of the prior: learning it with the "
                 "classifier", lo, hi, 100 * MIN_ACCEPTANCE)
    if kind in ("counts", "classifier"):
        lo, hi = args
        log.info("restricting the prior to spectra with %g-%g source counts (classifier)", lo, hi)
        sim = st.sim

        class SourceCountWindow(R.CountWindow):
            # background counts, when simulated, are not part of the window
            def scores(self, theta, x):
                total = _source_counts(sim, x)
                return np.maximum(np.maximum(self.lower - total, total - self.upper), 0.0)

        return R.restrict_by_classifier(st.simulate_fn, st.box, SourceCountWindow(lo, hi), rng=st.rng)
    if kind == "cstat":
        # a condition on theta alone: evaluated exactly, no simulation and no classifier
        from xspec_sbi.inference.region import restrict_by_statistic
        log.info("restricting the prior to the best %g%% in %s", 100 * args[0], st.stat_fn.name)
        return restrict_by_statistic(st.stat_fn, st.box, rng=st.rng, fraction=args[0])
    log.info("coarse inference with %d simulations to restrict the prior", args[0])
    return R.restrict_by_coarse_inference(st.simulate_fn, st.box, st.x_obs, rng=st.rng,
                                          n_simulations=args[0], config=cfg,
                                          device=st.options.network.device)


def likelihood_check(raw, posterior, st: _Stage, *, log_q=None):
    """Importance-weight the network's draws by the exact Poisson likelihood (PSIS, ESS, evidence).

    The work is sized to its cost: when one statistic costs more than
    ``check_seconds / n_draws`` (XSPEC folding the model one ``setPars`` at a
    time on the XSPEC path), only as many draws as fit in
    ``Budget.check_seconds`` are weighed (never fewer than 1,000), and the
    corrected sample is resampled from them; ``st.checked`` records how many.
    ``log_q(theta) -> (n,)`` replaces the network's density when the draws
    come from another proposal (:func:`xspec_sbi.refine.defensive_check`).
    """
    n = len(raw)
    probe = min(20, n)
    t0 = time.perf_counter()
    st.stat_fn(raw[:probe])   # timed, to size the check
    per_draw = (time.perf_counter() - t0) / probe
    budget = st.options.budget.check_seconds
    n_check = n if per_draw * n <= budget else min(n, max(1000, int(budget / per_draw)))
    if n_check < n:
        log.info("likelihood check: %d of %d draws (%.1f ms per statistic; about %.0f s)",
                 n_check, n, 1e3 * per_draw, per_draw * n_check)
    st.checked = n_check
    draws = raw[:n_check]
    log_q = posterior.log_prob(draws, st.x_obs) if log_q is None else log_q(draws)
    log_prior = st.box.log_prob(draws)
    t0 = time.perf_counter()
    log_like = -0.5 * st.stat_fn(draws)   # in one call, as always: the probe only sized the work
    # the cost the moves are sized on: this whole call, not the probe (per-call overhead, load)
    st.per_draw = (time.perf_counter() - t0) / len(draws)
    const = log_like_constant(st.sim, st.x_obs)
    return importance_correct(draws, log_q, log_prior, log_like, st.rng, log_like_constant=const,
                              n_resample=None if n_check == n else n)


def trust_checks(x_train, samples, st: _Stage, *, exact: bool = True, why_not: str = "") -> TrustChecks:
    """Out-of-distribution check, posterior predictive p-value, and posteriors piled at a prior bound.

    The posterior predictive check needs posterior draws: it runs on exact
    draws only (corrected, or the exact chain); otherwise it is "not computed"
    and ``why_not`` says why.
    """
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
    bounds = bound_warnings(samples, st.box)
    parts = getattr(sim, "parts", (sim,))
    labels = [s.label for s in st.session.spectra] if len(st.session.spectra) == len(parts) \
        else [f"spectrum {i + 1}" for i in range(len(parts))]
    background = empty_background_warnings([getattr(p, "background_counts", None) for p in parts],
                                           labels)
    if not exact:
        return TrustChecks(ood=ood, ppc=None, ppc_not_computed=why_not or "no exact posterior draws",
                           bounds=bounds, background=background)
    ppc = ppc_pvalue(stat_data, lambda th, r: sim(th, r), samples, st.x_obs, st.rng, n=200,
                     model_counts=model_counts)
    return TrustChecks(ood=ood, ppc=ppc, bounds=bounds, background=background)


def _versions():
    import sbi
    import torch

    from xspec_sbi._version import __version__
    return {"xspec_sbi": __version__, "sbi": sbi.__version__, "torch": torch.__version__,
            "numpy": np.__version__}
