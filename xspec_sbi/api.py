"""``sbi_fit``: one call from a fitting session to a calibrated neural posterior.

Steps, each timed: prior from the model's free parameters; restricted prior
(classifier on counts or C-stat, or a coarse inference); simulations through
the engine in a process pool; NPE training (single-round amortized or
multi-round); posterior at the observation; exact-likelihood check and
correction; trust checks; the Goodman-Weare chain on the same data and prior.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.checks.importance import cstat_log_like_constant, importance_correct, wstat_log_like_constant
from xspec_sbi.baseline.mcmc import resolve_walkers
from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.inference.posterior import NeuralPosterior
from xspec_sbi.inference.rounds import fit_multi_round
from xspec_sbi.inference.training import fit_single_round, simulate_training_set, train_npe
from xspec_sbi.inference.priors import build_prior
from xspec_sbi.result import SBIResult, summarize
from xspec_sbi.session import Session
from xspec_sbi.forward.simulate import JointSimulator, make_pool, simulate

__all__ = ["sbi_fit", "parse_restriction", "network_fingerprint", "fit_and_chain"]


def _log(progress, msg):
    if progress:
        print(f"[xspec_sbi] {msg}", flush=True)


def _normalise_prior(model, prior):
    """Accept parameter names in any case, as XSPEC does."""
    if not prior:
        return {}
    out = {}
    for name, spec in prior.items():
        out[model.parameters[model.index_of(name)].name] = spec
    return out


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
        if kind == "counts":
            try:
                lo, hi = (float(v) for v in arg.replace(",", "-").split("-"))
            except ValueError:
                raise ValueError(f"restrict={restrict!r}: write counts:LO-HI, e.g. counts:1000-10000") from None
            return "counts", (lo, hi)
        if kind == "cstat":
            return "cstat", (float(arg) if arg else 0.25,)
        if kind == "coarse":
            return "coarse", (int(float(arg)) if arg else 5000,)
        raise ValueError(f"restrict={restrict!r}: choose counts:LO-HI, cstat[:F], coarse[:N] or none")
    kind, *args = restrict
    return parse_restriction(f"{kind}:{'-'.join(str(a) for a in args)}" if kind == "counts"
                             else f"{kind}:{args[0]}" if args else kind)


def network_fingerprint(session: Session, prior, config: NPEConfig) -> dict:
    """What a saved network is checked against on load: session set-up, prior box, NPE settings.

    Parameters
    ----------
    session : Session
    prior : BoxPrior
        The prior the network was trained under.
    config : NPEConfig
    """
    return dict(session.fingerprint(), prior=repr(prior.to_dict()), npe=repr(config))


def _total_source_counts(sim, x):
    parts = sim.parts if isinstance(sim, JointSimulator) else (sim,)
    blocks = sim.split(x) if isinstance(sim, JointSimulator) else [x]
    return sum(b[:, :p.n_bins].sum(axis=1) for p, b in zip(parts, blocks))


def sbi_fit(session: Session | None = None, *, spectra=None, model=None, ignore=None,
            prior=None, restrict="cstat", n_simulations: int = 10_000, rounds: int = 1,
            simulations_per_round: int = 1000, estimator: str | None = None,
            x_transform: str | None = None,
            pca: float | None = None, n_samples: int = 10_000, correct: bool = True,
            mcmc: bool | None = None, chain_length: int = 50_000, chain_burn: int = 5_000,
            walkers: int | None = None, seed: int = 0, workers: int | None = None, executor=None,
            network=None, save=None, overwrite: bool = False, device: str = "cpu",
            load_chain: bool = False, xspec=None,
            progress: bool = True, config: NPEConfig | None = None) -> SBIResult:
    """Neural posterior estimation for an X-ray spectral fit, beside XSPEC's chain and C-stat.

    Parameters
    ----------
    session : Session, optional
        Spectra, model and XSPEC settings. Default: the live PyXspec session
        when ``import xspec`` works, else built from ``spectra`` and ``model``.
    spectra, model, ignore : optional
        Build a session from files: PHA path(s), XSPEC expression, channel
        selection (``"**-0.3 10.-**"``).
    prior : dict, optional
        Per-parameter prior ``{"powerlaw.norm": ("log", 0.01, 100)}``; other
        free parameters are uniform over XSPEC's soft limits (bot, top).
    restrict : str or tuple or None
        Restricted prior (paper Sec. 3): ``"counts:LO-HI"`` (total counts in a
        window), ``"cstat[:F]"`` (best fraction F of C-stat against the data,
        default 0.25), ``"coarse[:N]"`` (a coarse NPE with N simulations) or None.
        The restriction truncates the prior; the posterior stays the one under
        ``prior``.
    n_simulations : int
        Training simulations (single round).
    rounds, simulations_per_round : int
        ``rounds > 1``: multi-round (truncated sequential) NPE for this observation.
    estimator, x_transform, pca : optional
        See :class:`~xspec_sbi.inference.npe.NPEConfig` (default: its measured choice, a
        calibrated conditional MAF on log1p counts, no PCA).
    n_samples : int
        Posterior samples returned.
    correct : bool
        Weight the samples by the exact Poisson likelihood (importance
        sampling with Pareto smoothing) and report ESS, Pareto k and evidence.
    mcmc : bool, optional
        Run the Goodman-Weare chain (default: on for a single spectrum).
    chain_length, chain_burn : int
        XSPEC's chain settings (samples over all walkers).
    walkers : int, optional
        Chain walkers (even, at least twice the free parameters). Default:
        XSPEC's 8, raised to ``2 n_free`` for more than 4 free parameters, with
        burn and length rounded up to multiples of it (and a warning).
    seed : int
        Seeds every random draw of the run.
    workers : int, optional
        Simulation processes (default: all cores).
    executor : concurrent.futures.Executor, optional
        Run simulations there instead (e.g. a Dask client's executor).
    network : path, optional
        Load a trained posterior instead of training (its set-up must match).
    save : path, optional
        Save the trained posterior there (refuses to overwrite unless ``overwrite``).
    device : str
        ``"cpu"`` or ``"cuda"``.
    load_chain : bool
        PyXspec sessions: load the SBI samples into ``AllChains`` so XSPEC's
        ``error`` and ``flux ... err`` use them.
    xspec : module, optional
        PyXspec sessions: the module to read and compare with (default
        ``import xspec``; tests pass a test double).

    Returns
    -------
    SBIResult
    """
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    if session is None:
        session = _default_session(spectra, model, ignore, xspec)
    mdl = session.model
    free = mdl.free_parameters
    if not free:
        raise ValueError(f"model {mdl.expression} has no free parameter to infer")
    xslibrary.configure(session.settings)
    mdl.probe(session.settings)
    if session.origin == "pyxspec":
        from xspec_sbi import pyxspec
        pyxspec.check_agreement(session, xspec)   # the engine must reproduce XSPEC's folded model
    overrides = _normalise_prior(mdl, prior)
    _refuse_unusable_defaults(free, overrides)
    box = build_prior(mdl.parameters, overrides)
    sim = session.simulator()
    x_obs = session.observed()
    stat_fn = session.statistic_function(sim)
    rng = np.random.default_rng(seed)
    if config is None:
        chosen = {k: v for k, v in dict(estimator=estimator, x_transform=x_transform,
                                         pca_variance=pca).items() if v is not None}
        config = NPEConfig(**chosen)
    cfg = config
    fingerprint = network_fingerprint(session, box, cfg)
    single = len(session.spectra) == 1
    mcmc = single if mcmc is None else mcmc
    if mcmc or session.origin == "pyxspec":
        walkers, chain_burn, chain_length = resolve_walkers(walkers, chain_burn, chain_length, len(free))
    n_calls = [0]

    with ExitStack() as stack:
        pool = executor
        if pool is None and (workers or 2) > 1 and network is None:
            pool = stack.enter_context(make_pool(sim, workers))

        def simulate_fn(theta, r):
            n_calls[0] += theta.shape[0]
            return simulate(sim, theta, seed=int(r.integers(2**63 - 1)), executor=pool,
                            progress=progress and theta.shape[0] >= 2000)

        proposal = restriction = x_train = None
        if network is not None:
            posterior = NeuralPosterior.load(network, fingerprint, device=device)
            _log(progress, f"loaded trained posterior from {network}")
        else:
            kind, args = parse_restriction(restrict)
            t0 = time.perf_counter()
            if kind is not None:
                restriction = _restrict(kind, args, simulate_fn, box, x_obs, sim, stat_fn, rng, cfg,
                                        device, progress)
                proposal = restriction.prior
                timings["restriction"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if rounds > 1:
                _log(progress, f"multi-round NPE: {rounds} rounds x {simulations_per_round} simulations")
                posterior = fit_multi_round(simulate_fn, box, x_obs, rng=rng, rounds=rounds,
                                            simulations_per_round=simulations_per_round,
                                            proposal=proposal, config=cfg, device=device).posterior
                timings["simulation+training"] = time.perf_counter() - t0
            else:
                _log(progress, f"simulating {n_simulations} spectra"
                     + (" from the restricted prior" if proposal is not None else ""))
                theta, x = simulate_training_set(simulate_fn, proposal or box, n_simulations, rng=rng)
                x_train = x
                timings["simulation"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                _log(progress, f"training {cfg.estimator} on {n_simulations} simulations")
                posterior = train_npe(theta, x, box, rng=rng, config=cfg, device=device)
                timings["training"] = time.perf_counter() - t0
            if save is not None:
                posterior.save(save, fingerprint, overwrite=overwrite)
                _log(progress, f"saved the trained posterior to {save}")

        t0 = time.perf_counter()
        raw = posterior.sample(x_obs[None, :], n_samples, rng=rng)[0]
        timings["sampling"] = time.perf_counter() - t0

        correction, samples = None, raw
        if correct:
            t0 = time.perf_counter()
            correction = _correct(raw, posterior, box, stat_fn, x_obs, sim, rng)
            if correction.reliable:
                samples = correction.theta
            timings["likelihood check"] = time.perf_counter() - t0

        stats_at = stat_fn(samples)
        best = samples[int(np.argmin(stats_at))]
        median = np.median(samples, axis=0)
        goodness = stat_fn.goodness(best)
        trust = _trust(x_train, x_obs, samples, sim, stat_fn, rng)

        chain = chain_fit = chain_good = None
        if mcmc:
            t0 = time.perf_counter()
            chain_fit, chain = fit_and_chain(stat_fn, best, box, free, chain_length, chain_burn,
                                          walkers, rng, progress)
            chain_good = stat_fn.goodness(chain_fit.theta)
            timings["chain"] = time.perf_counter() - t0

    xspec_side = None
    if session.origin == "pyxspec":
        from xspec_sbi.pyxspec import compare_with_xspec
        t0 = time.perf_counter()
        xspec_side = compare_with_xspec(names=tuple(box.names), samples=samples, median=median,
                                        chain=mcmc, chain_length=chain_length, chain_burn=chain_burn,
                                        walkers=walkers, load_chain=load_chain, progress=progress,
                                        stat=stats_at, xspec=xspec)
        timings["XSPEC fit+chain"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    settings = dict(model=mdl.expression, prior=box.to_dict(), restrict=str(restrict),
                    n_simulations=n_simulations if rounds == 1 else rounds * simulations_per_round,
                    rounds=rounds, npe=repr(cfg), seed=seed, abund=session.settings.abund,
                    xsect=session.settings.xsect, statistic=stat_fn.name,
                    spectra=[s.label for s in session.spectra], simulations_run=n_calls[0],
                    versions=_versions())
    return SBIResult(
        names=tuple(box.names), samples=samples, samples_raw=raw,
        summaries=summarize(box.names, samples), statistic=stat_fn.name, best_theta=best,
        stat_median=float(stat_fn(median)[0]), stat_best=float(stat_fn(best)[0]),
        goodness=goodness, session=session, prior=box, posterior=posterior, chain=chain,
        chain_fit=chain_fit, chain_goodness=chain_good, correction=correction, trust=trust,
        timings=timings, settings=settings, restriction=restriction, xspec=xspec_side)


def _refuse_unusable_defaults(free, overrides):
    """XSPEC's soft limits of norms (0 to 1e24) are limits, not a prior one can simulate from."""
    for p in free:
        if p.name in overrides:
            continue
        if p.top - p.bot > 1e6 or (p.bot > 0 and p.top / p.bot > 1e8):
            raise ValueError(
                f"parameter {p.name}: XSPEC's soft limits [{p.bot:g}, {p.top:g}] are too wide to "
                f"simulate from; give a prior, e.g. prior={{'{p.name}': ('log', lo, hi)}} "
                f"(command line: --prior {p.name}=log:LO:HI)")


def _default_session(spectra, model, ignore, xspec=None) -> Session:
    if spectra is not None:
        if model is None:
            raise ValueError("sbi_fit(spectra=...) needs model=, an XSPEC expression")
        return Session.from_files(spectra, model, ignore=ignore)
    from xspec_sbi import pyxspec
    if xspec is None and not pyxspec.available():
        raise ValueError("sbi_fit() without a session needs PyXspec (import xspec failed); "
                         "pass session=Session.from_files(...) or spectra= and model=")
    return pyxspec.read_session(xspec)


def _restrict(kind, args, simulate_fn, box, x_obs, sim, stat_fn, rng, cfg, device, progress):
    from xspec_sbi.inference import restrict as R
    if kind == "counts":
        lo, hi = args
        _log(progress, f"restricting the prior to spectra with {lo:g}-{hi:g} source counts")

        class SourceCountWindow(R.CountWindow):
            # background counts, when simulated, are not part of the window
            def scores(self, theta, x):
                total = _total_source_counts(sim, x)
                return np.maximum(np.maximum(self.lower - total, total - self.upper), 0.0)

        return R.restrict_by_classifier(simulate_fn, box, SourceCountWindow(lo, hi), rng=rng)
    if kind == "cstat":
        _log(progress, f"restricting the prior to the best {100 * args[0]:g}% in {stat_fn.name}")
        condition = R.BestFraction(lambda theta, x: stat_fn(theta), fraction=args[0])
        return R.restrict_by_classifier(simulate_fn, box, condition, rng=rng)
    _log(progress, f"coarse inference with {args[0]} simulations to restrict the prior")
    return R.restrict_by_coarse_inference(simulate_fn, box, x_obs, rng=rng, n_simulations=args[0],
                                          config=cfg, device=device)


def _correct(raw, posterior, box, stat_fn, x_obs, sim, rng):
    log_q = posterior.log_prob(raw, x_obs)
    log_prior = box.log_prob(raw)
    log_like = -0.5 * stat_fn(raw)
    parts = sim.parts if isinstance(sim, JointSimulator) else (sim,)
    blocks = sim.split(x_obs) if isinstance(sim, JointSimulator) else [x_obs]
    const = 0.0
    for p, b in zip(parts, blocks):
        if p.has_background:
            const += wstat_log_like_constant(b[:p.n_bins], b[p.n_bins:])
        else:
            const += cstat_log_like_constant(b)
    return importance_correct(raw, log_q, log_prior, log_like, rng, log_like_constant=const)


def _trust(x_train, x_obs, samples, sim, stat_fn, rng):
    """Out-of-distribution check against the training spectra, and the posterior predictive p-value."""
    from xspec_sbi.forward.objective import PoissonStatistic
    from xspec_sbi.checks.trust import ood_check, ppc_pvalue
    out = {}
    if x_train is not None:   # single-round training in this call
        out["out-of-distribution"] = ood_check(x_obs, x_train).warning
    median = np.median(samples, axis=0)

    def stat_data(x, theta):
        return PoissonStatistic.of_rows(sim, x, theta)

    # The Kaastra check compares x_obs with source-model counts: only defined without background blocks.
    model_counts = None if stat_fn.name == "wstat" else \
        np.concatenate([m[0] for m in stat_fn.expected_counts(median[None])])
    ppc = ppc_pvalue(stat_data, lambda th, r: sim(th, r), samples, x_obs, rng, n=200,
                     model_counts=model_counts)
    out["posterior predictive p-value"] = f"{ppc.p_value:.3f}" + (f" ({ppc.warning})" if ppc.warning else "")
    return out


def fit_and_chain(stat_fn, start, box, free, length, burn, walkers, rng, progress=False):
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
        The free parameters; their deltas start the walkers.
    length, burn, walkers :
        XSPEC's chain settings (samples over all walkers; walkers None: XSPEC's rule).
    rng : numpy.random.Generator
        Seeds the fit's extra starts and the chain.

    Returns
    -------
    (FitResult, ChainResult)
    """
    from xspec_sbi.baseline.fit import fit
    from xspec_sbi.baseline.mcmc import run_chain
    lower, upper = box.lower, box.upper
    _log(progress, "fitting (C-stat minimisation) from the best SBI sample")
    best = fit(stat_fn, start, lower, upper, seed=int(rng.integers(2**31)))
    _log(progress, f"Goodman-Weare chain: {walkers} walkers, burn {burn}, length {length}")
    deltas = np.array([p.delta if p.delta > 0 else 0.01 * abs(p.value) + 1e-3 for p in free])
    chain = run_chain(stat_fn, best.theta, lower, upper, names=list(box.names), walkers=walkers,
                      burn=burn, length=length, deltas=deltas, log_uniform=box.is_log,
                      seed=int(rng.integers(2**31)), progress=progress)
    return best, chain


def _versions():
    import sbi
    import torch

    from xspec_sbi import __version__
    return {"xspec_sbi": __version__, "sbi": sbi.__version__, "torch": torch.__version__,
            "numpy": np.__version__}
