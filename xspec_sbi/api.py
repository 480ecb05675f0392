"""``sbi_fit``: one call from a fitting session to a calibrated neural posterior.

This is the public entry point. It finds the session (given, built from
files, or read from the live PyXspec session through the adapter), gathers
the options into records (:mod:`xspec_sbi.options`) and runs the stages of
:mod:`xspec_sbi.pipeline`. It sits at the edge beside the command line: the
only place outside ``pyxspec/`` that reaches the adapter.
"""
from __future__ import annotations

import contextlib
import logging

from xspec_sbi.options import (Budget, ChainOptions, ComputeOptions, NetworkOptions, RefineOptions,
                               from_keywords)
from xspec_sbi.baseline.comparison import fit_and_chain
from xspec_sbi.files import check_folder_target
from xspec_sbi.model.flux import check_requests
from xspec_sbi.options import parse_restriction
from xspec_sbi.pipeline import network_fingerprint, run
from xspec_sbi.result import SBIResult
from xspec_sbi.session import Session

__all__ = ["sbi_fit", "refine_flagged", "parse_restriction", "network_fingerprint", "fit_and_chain"]

log = logging.getLogger("xspec_sbi")


def sbi_fit(session: Session | None = None, *, spectra=None, model=None, ignore=None,
            prior=None, restrict="cstat", seed: int = 0, correct: bool = True,
            budget: Budget | None = None, network: NetworkOptions | str | None = None,
            chain: ChainOptions | bool | None = None, compute: ComputeOptions | None = None,
            refine: RefineOptions | bool | None = None, xspec=None, fluxes=(),
            **shortcuts) -> SBIResult:
    """Neural posterior estimation for an X-ray spectral fit, beside XSPEC's chain and C-stat.

    Parameters
    ----------
    session : Session, optional
        Spectra, model and XSPEC settings. Default: built from ``spectra`` and
        ``model`` when given, else the live PyXspec session.
    spectra, model, ignore : optional
        Build a session from files: PHA path(s), XSPEC expression, channel
        selection (``"**-0.3 10.-**"``).
    prior : dict, optional
        Per-parameter prior ``{"powerlaw.norm": ("log", 0.01, 100)}``, or a
        Gaussian ``{"TBabs.nH": ("gauss", 0.05, 0.01)}`` (truncated at XSPEC's
        hard limits; ``("gauss", mu, sigma, lo, hi)`` at ``[lo, hi]``); other
        free parameters are uniform over XSPEC's soft limits (bot, top).
    restrict : str or tuple or None
        Restricted prior (paper Sec. 3): ``"counts:LO-HI"`` (total counts of
        the source spectrum in a window, from the exact expected counts),
        ``"classifier:LO-HI"`` (the same window learned by the paper's
        classifier), ``"cstat[:F]"`` (best fraction F of C-stat against
        the data, default 0.25), ``"coarse[:N]"`` (a coarse NPE with N
        simulations) or None. The restriction truncates the prior; the
        posterior stays the one under ``prior``.
    seed : int
        Seeds every random draw of the run: the same seed gives the same result.
    correct : bool
        Weight the network's draws by the exact Poisson likelihood (importance
        sampling with Pareto smoothing); report ESS, Pareto k and evidence.
    budget : Budget, optional
        Simulations, rounds and samples (:class:`~xspec_sbi.options.Budget`).
    network : NetworkOptions or path, optional
        Estimator settings, or a saved network to load (a path means
        ``NetworkOptions(load=path)``), or where to save the trained one.
    chain : ChainOptions or bool, optional
        The Goodman-Weare chain beside SBI (a bool means ``ChainOptions(run=...)``).
    compute : ComputeOptions, optional
        Simulation processes, executor, progress display.
    refine : RefineOptions or bool, optional
        Adaptive refinement (on by default): while the exact-likelihood check
        of the network's draws fails, truncated rounds on this observation;
        if it still fails, exact chain draws are returned instead
        (:class:`~xspec_sbi.options.RefineOptions`; ``False`` switches it off).
    xspec : module, optional
        PyXspec sessions: the module to read and compare with (default
        ``import xspec``).
    fluxes : sequence, optional
        Fluxes to compute from the posterior samples, as XSPEC's ``flux``/``lumin
        ... err``: ``(lo, hi)`` keV for a flux, ``(lo, hi, z)`` for a
        luminosity, or :class:`~xspec_sbi.model.flux.FluxRequest` (unabsorbed,
        cosmology); checked before the run, listed in ``result.fluxes``.
    **shortcuts
        Any field of the records as a flat keyword: ``n_simulations``,
        ``rounds``, ``simulations_per_round``, ``n_samples`` (budget);
        ``estimator``, ``x_transform``, ``pca``, ``exposure_range``, ``config``,
        ``save``, ``overwrite``, ``device`` (network); ``mcmc``, ``chain_length``,
        ``chain_burn``, ``walkers``, ``load_chain`` (chain); ``workers``,
        ``executor``, ``progress`` (compute). A field given both ways is refused.

    Returns
    -------
    SBIResult
    """
    options = from_keywords(dict(budget=budget, network=network, chain=chain, compute=compute,
                                 refine=refine), shortcuts)
    if options.network.save is not None:
        # Refused now, not after the training it would have held.
        check_folder_target(options.network.save, overwrite=options.network.overwrite)
    if session is None:
        session = _default_session(spectra, model, ignore, xspec)
    if session.origin == "pyxspec" and session.xspec is None:
        from xspec_sbi.pyxspec.link import XspecLink
        session = session.with_xspec(XspecLink(xspec))
    requests = check_requests(session.model, session.spectra[0].response.energy_edges, fluxes)
    with _console(options.compute.progress):
        result = run(session, prior, restrict, seed=seed, correct=correct, options=options)
    return result.with_fluxes(requests) if requests else result


def refine_flagged(checked, sessions, prior, *, config, n_samples: int,
                   n_simulations: int | None = None, seed: int = 0, device: str = "cpu",
                   workers: int | None = None):
    """The adaptive loop (as :func:`sbi_fit`) on each spectrum whose amortized check failed.

    A failed check means the network's draws miss that spectrum's posterior,
    so its highest-density region is no safe truncation to refine from. Each
    flagged spectrum is fitted on its own set-up as ``xspec-sbi fit`` would:
    the prior restricted by its exact C-stat (``cstat:0.25``, a truncation
    that holds the posterior mass), a network of its own, refinement rounds
    while the check fails and, when their
    budget is spent, an exact chain started from the network's draws (the
    answer is then never draws known to be wrong). ``xspec-sbi apply
    --refine`` runs this.

    Parameters
    ----------
    checked : AmortizedPosteriors
        The amortized result (:meth:`SBIResult.posteriors_for`).
    sessions : sequence of Session
        Each spectrum's own session, in the order of ``checked``.
    prior : mapping
        The user's prior overrides, as :func:`sbi_fit` takes them.
    config : NPEConfig
        For each spectrum's network (one exposure: its own set-up).
    n_samples : int
        Draws kept per spectrum.
    n_simulations : int, optional
        Simulations of each spectrum's first round. Default: a fit's own
        (:attr:`RunOptions.first_round_simulations`: 3,000, since each fit
        refines itself and its network is not kept).
    seed : int
        Spectrum ``i`` is fitted with seed ``seed + i``.
    device : str
    workers : int, optional
        Processes of each fit (its simulations and exact statistics); None:
        ``sbi_fit``'s default. The numbers do not depend on it.

    Returns
    -------
    (AmortizedPosteriors, list of str)
        The results with the refined spectra replaced, and per spectrum the
        rounds run (``""`` for a spectrum that needed none).
    """
    from dataclasses import replace

    import numpy as np
    samples, ess = checked.samples.copy(), checked.ess_fraction.copy()
    k, ok = checked.pareto_k.copy(), checked.reliable.copy()
    weighed = None if checked.weighed is None else checked.weighed.copy()
    rounds = [""] * len(sessions)
    for i in np.flatnonzero(~np.asarray(checked.reliable, bool)):
        label = checked.labels[i]
        log.info("%s: the check failed (ESS %.1f%%, Pareto k %.2f): the adaptive loop on this "
                 "spectrum", label, 100 * checked.ess_fraction[i], checked.pareto_k[i])
        r = sbi_fit(sessions[i], prior=prior, restrict="cstat:0.25", n_simulations=n_simulations,
                    n_samples=n_samples, correct=True, mcmc=False, seed=seed + int(i),
                    workers=workers, config=config, device=device, progress=False)
        for rec in r.rounds:
            log.info("%s: %s", label, rec)
        how = {"corrected": "passed", "chain": "exact chain (check still failed)"}.get(
            r.samples_source, "failed")
        rounds[i] = (f"{len(r.rounds)} ({sum(rec.simulations for rec in r.rounds)} simulations, "
                     f"{how})")
        if r.correction is not None:
            ess[i], k[i] = r.correction.ess_fraction, r.correction.pareto_k
            if weighed is not None:
                weighed[i] = r.correction.n
        ok[i] = r.samples_source in ("corrected", "chain")
        if ok[i]:
            samples[i] = r.samples[:n_samples]
        else:
            log.warning("%s: still unreliable after the adaptive loop; its draws are the network's",
                        label)
    return replace(checked, samples=samples, ess_fraction=ess, pareto_k=k, reliable=ok,
                   weighed=weighed), rounds


@contextlib.contextmanager
def _console(progress: bool):
    """Show the step messages on stderr during the call, unless the caller set up logging."""
    if not progress or log.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[xspec_sbi] %(message)s"))
    saved = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved)


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
