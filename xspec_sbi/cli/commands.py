"""``fit``, ``train`` and ``demo``: the commands that run :func:`xspec_sbi.sbi_fit`.

Each command checks everything it can before any simulation, in this order:
the options (syntax and ranges, by the parser), the spectra, model and prior
(:mod:`~xspec_sbi.cli.inputs`), then its output folders, which it takes and
locks (:mod:`~xspec_sbi.cli.outputs`) until they are complete. A saved
network folder holds the network (``weights.pt``, ``config.json``), its
``setup.json``, the training reference ``ood_reference.npz`` and a
``manifest.json`` with the digest of each of them.
"""
from __future__ import annotations

import json
import logging
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from xspec_sbi.cli.errors import CommandError, UsageError
from xspec_sbi.cli.executors import executor
from xspec_sbi.cli.inputs import (build_session, check_soft_limits, describe, model_and_prior,
                                  response_note)
from xspec_sbi.cli.outputs import check_network, distinct_folders, output_folder, refuse_existing
from xspec_sbi.cli.parser import dask_address
from xspec_sbi.cli.reference import save_reference, simulate_reference
from xspec_sbi.cli.setup_file import SETUP_NAME, load_setup, setup_record
from xspec_sbi.cli.setups import network_for
from xspec_sbi.files import atomic_write_text, write_manifest
from xspec_sbi.options import DEFAULT_SIMULATIONS

__all__ = ["cmd_fit", "cmd_train", "cmd_demo", "Prepared", "prepare", "save_network"]

log = logging.getLogger("xspec_sbi")


@dataclass
class Prepared:
    """A checked run: the session, model, prior overrides and box, NPE settings."""

    args: object
    session: object
    model: object
    overrides: dict
    box: object
    config: object
    fluxes: tuple = ()
    cosmology: object = None


def _restriction(text: str) -> None:
    from xspec_sbi.api import parse_restriction
    try:
        parse_restriction(text)
    except ValueError as exc:
        # the library's message names its keyword (restrict=...): say the option instead
        reason = re.sub(r"^restrict=.*?: ", "", str(exc))
        raise UsageError(f"--restrict {text!r}: {reason}") from None


def _npe_config(args):
    from xspec_sbi.inference.config import NPEConfig
    network = getattr(args, "network", None)
    if network and (Path(network) / SETUP_NAME).is_file():
        # a saved network is checked against the settings it was trained with
        path = Path(network) / SETUP_NAME
        try:
            return NPEConfig.from_dict(load_setup(network)["npe_config"], source=str(path))
        except (TypeError, ValueError) as exc:
            raise CommandError(f"{path}: npe_config unusable ({exc}); the "
                               "file was edited: save the network again") from None
    chosen = {"max_epochs": args.max_epochs}
    if args.estimator:
        chosen["estimator"] = args.estimator
    if getattr(args, "exposure_range", None):
        try:
            NPEConfig(exposure_range=tuple(args.exposure_range))
        except ValueError as exc:   # the library names its field: say the option
            raise UsageError(f"--exposure-range {' '.join(f'{v:g}' for v in args.exposure_range)}: "
                             f"{str(exc).split(': ', 1)[-1]}") from None
        chosen["exposure_range"] = tuple(args.exposure_range)
    return NPEConfig(**chosen)


def prepare(args) -> Prepared:
    """Check the options and build the session: everything before the first simulation."""
    _restriction(args.restrict)
    if getattr(args, "group_free", None) and (args.command == "train"
                                              or getattr(args, "save_network", None)):
        # apply runs a saved network on one spectrum at a time: no data groups there
        raise UsageError("--group-free: data groups are for fit without --save-network; a "
                         "network for apply is trained on one spectrum")
    if args.executor:
        dask_address(args.executor)
        if args.workers is not None:
            raise UsageError("--workers and --executor both given: the Dask cluster decides its "
                             "workers; give one of them")
    if args.sims is None and (args.command == "train" or getattr(args, "save_network", None)):
        # a network kept for other spectra: the paper's 10,000 (a fit alone starts on
        # fewer and lets its exact-likelihood check ask for more: RunOptions.first_round_simulations)
        args.sims = DEFAULT_SIMULATIONS
    if args.rounds > 1 and args.sims is not None and args.sims < 20 * args.rounds:
        raise UsageError(f"--sims {args.sims} is too few for --rounds {args.rounds}: give at "
                         f"least {20 * args.rounds} (20 per round)")
    model, overrides, box = model_and_prior(args.model, args.freeze, args.prior,
                                            getattr(args, "group_free", ()), len(args.spectra))
    session = build_session(args.spectra, model, ignore=args.ignore, notice=args.notice,
                            abund=args.abund, xsect=args.xsect, respfile=args.respfile,
                            arffile=args.arffile, backfile=args.backfile,
                            nicer_like_arf=args.nicer_like_arf, group=args.group)
    fluxes, cosmology = _flux_requests(args, session)
    describe(session, box)
    cfg = _npe_config(args)
    if not getattr(args, "network", None):      # a saved network brings its prior
        check_soft_limits(model, overrides)
    log.debug("  network: %s", cfg)
    return Prepared(args, session, model, overrides, box, cfg, fluxes, cosmology)


def _flux_requests(args, session):
    """``--flux``/``--lumin``/``--cosmo`` as flux requests, each checked against the energy grid."""
    from xspec_sbi.model.cosmology import Cosmology, CosmologyError
    from xspec_sbi.model.flux import FluxError, FluxRequest, absorber_labels, band_weights
    flux, lumin = getattr(args, "flux", None) or [], getattr(args, "lumin", None) or []
    if not flux and not lumin:
        if getattr(args, "unabsorbed", False) or getattr(args, "cosmo", None):
            raise UsageError("--unabsorbed and --cosmo apply to --flux and --lumin: give one of them")
        return (), None
    if getattr(args, "cosmo", None) and not lumin:
        raise UsageError("--cosmo applies to --lumin: give one")
    try:
        cosmology = Cosmology(*args.cosmo) if args.cosmo else Cosmology()
    except CosmologyError as exc:
        raise UsageError(f"--cosmo: {exc}") from None
    edges = session.spectra[0].response.energy_edges
    requests = []
    for option, values in [("--flux", v) for v in flux] + [("--lumin", v) for v in lumin]:
        text = f"{option} {' '.join(f'{x:g}' for x in values)}"
        try:
            r = FluxRequest.parse(values)
            z = 1.0 if r.redshift is None else 1.0 + r.redshift
            band_weights(edges, r.lo / z, r.hi / z)
        except FluxError as exc:
            raise UsageError(f"{text}: {exc}") from None
        requests.append(r)
        if args.unabsorbed:
            requests.append(FluxRequest(r.lo, r.hi, r.redshift, unabsorbed=True))
    if args.unabsorbed and not absorber_labels(session.model):
        log.warning("--unabsorbed: %s has no absorber component; the unabsorbed values equal "
                    "the others", session.model.expression)
    return tuple(requests), cosmology


def _run(p: Prepared, *, network=None, mcmc=False, n_samples, correct, chain=None):
    from xspec_sbi.api import sbi_fit
    from xspec_sbi.options import NetworkOptions
    a = p.args
    progress = log.getEffectiveLevel() <= logging.INFO
    if network is not None and not isinstance(network, (str, Path)):
        network = NetworkOptions(load=network)   # loaded across set-ups (cli.apply.network_for)
    with executor(a.executor) as pool:
        return sbi_fit(p.session, prior=p.overrides, restrict=a.restrict, n_simulations=a.sims,
                       rounds=a.rounds, n_samples=n_samples, correct=correct, mcmc=mcmc,
                       seed=a.seed, workers=a.workers, executor=pool, network=network,
                       device=a.device, progress=progress, config=p.config, **(chain or {}))


def save_network(folder: Path, p: Prepared, result) -> None:
    """Fill a network folder being built: network, set-up, training reference, manifest."""
    from xspec_sbi.api import network_fingerprint
    fingerprint = network_fingerprint(result.session, result.prior, result.posterior.config)
    # the folder is this run's temporary one (files.atomic_folder): replacing it is safe
    result.posterior.save(folder, fingerprint, overwrite=True)
    record = setup_record(p.args, p.model, p.overrides, result)
    atomic_write_text(folder / SETUP_NAME, json.dumps(record, indent=1, default=str))
    log.info("simulating the training reference for apply's out-of-distribution check")
    save_reference(folder, simulate_reference(result, p.args.seed, p.args.restrict, p.args.sims))
    write_manifest(folder)


# -- commands ---------------------------------------------------------------------
def cmd_fit(args) -> int:
    """``xspec-sbi fit``: posterior, chain beside it, report folder (and optionally the network)."""
    from xspec_sbi.report.folder import write_report_files
    if args.network and args.save_network:
        raise UsageError("--network loads a trained posterior; --save-network saves a new one: "
                         "give one of them")
    distinct_folders(("--out", args.out), ("--save-network", args.save_network),
                     ("--network", args.network))
    if args.network:
        if not Path(args.network).is_dir():
            raise CommandError(f"--network {args.network}: folder not found")
        check_network(args.network, "--network")
    refuse_existing(args.out, "--out", args.overwrite)
    if args.save_network:
        refuse_existing(args.save_network, "--save-network", args.overwrite)
    p = prepare(args)
    with ExitStack() as stack:
        report = stack.enter_context(output_folder(args.out, "--out", args.overwrite))
        net = (stack.enter_context(output_folder(args.save_network, "--save-network", args.overwrite))
               if args.save_network else None)
        network = (network_for(args.network, p.session, p.box, p.config, args.device)
                   if args.network else None)
        result = _run(p, network=network, mcmc=args.mcmc, n_samples=args.samples,
                      correct=args.correct,
                      chain=dict(chain_length=args.chain_length, chain_burn=args.chain_burn,
                                 walkers=args.walkers))
        if net is not None:
            save_network(net, p, result)
        if p.fluxes:
            result = result.with_fluxes(p.fluxes, p.cosmology)
        print()
        print(result.table())
        title = (f"xspec-sbi fit: {p.model.expression} on "
                 + ", ".join(Path(s).name for s in args.spectra))
        write_report_files(result, report, title=title, notes=response_note(args.nicer_like_arf))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    if args.save_network:
        print(f"network: {args.save_network}")
    return 0


def cmd_train(args) -> int:
    """``xspec-sbi train``: an amortized posterior saved with its set-up, for ``apply``."""
    folder = Path(args.save_network)
    refuse_existing(folder, "--save-network", args.overwrite)
    if args.restrict.split(":")[0].strip().lower() in ("cstat", "coarse") or args.rounds > 1:
        log.warning("--restrict %s / --rounds %d fit the network to %s; for 'apply' to other "
                    "spectra use --restrict counts:LO-HI or none", args.restrict, args.rounds,
                    args.spectra[0])
    p = prepare(args)
    with output_folder(folder, "--save-network", args.overwrite) as net:
        result = _run(p, n_samples=args.samples, mcmc=False, correct=False)
        save_network(net, p, result)
    summary = result.posterior.summary
    if summary is not None:
        log.info("trained on %d simulations (+%d validation), %d epochs in %.1f s, best "
                 "validation loss %.3f", summary.n_train, summary.n_validation, summary.epochs,
                 summary.seconds, summary.best_validation_loss)
    log.info("posterior at the training spectrum (a check):")
    for s in result.summaries:
        log.info("  %s", s)
    print(f"network: {folder}  (set-up: {folder / SETUP_NAME})")
    return 0


def cmd_demo(args) -> int:
    """``xspec-sbi demo``: the paper's reference case (:mod:`xspec_sbi.demo`)."""
    from xspec_sbi import demo
    argv = (["--out", args.out] + (["--quick"] if args.quick else [])
            + (["--overwrite"] if args.overwrite else []))
    if args.sims is not None:
        argv += ["--sims", str(args.sims)]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    return int(demo.main(argv) or 0)
