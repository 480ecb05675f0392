"""The ``xspec-sbi`` command: fit, train, apply and demo from a shell.

``fit`` runs :func:`xspec_sbi.sbi_fit` on PHA files and writes the report
folder; ``train`` trains an amortized posterior and saves it with the set-up
that rebuilds its session (``setup.json`` inside the network folder);
``apply`` draws posteriors for many spectra of that set-up in one batched
call and writes parameter tracks (CSV and PNG); ``demo`` runs the paper's
reference case. Errors print as one line naming the file, option or
parameter at fault (``--debug`` shows the traceback); usage errors exit
with 2, failures with 1.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from xspec_sbi.model.library import DEFAULT_ABUND, DEFAULT_XSECT

__all__ = ["main", "build_parser", "UsageError", "CommandError", "parse_prior", "SETUP_NAME"]

#: Set-up file written inside a saved network folder.
SETUP_NAME = "setup.json"
_SETUP_FORMAT = "xspec_sbi.cli-setup/1"
_PROG = "xspec-sbi"


class UsageError(ValueError):
    """A malformed or inconsistent command line (exit status 2)."""


class CommandError(RuntimeError):
    """A command that cannot complete (exit status 1); the message names the file at fault."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``xspec-sbi fit: error: ... (see --help)``."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout; shows a default only where there is one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, [], False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


# -- parsing option values -------------------------------------------------------
def parse_prior(text: str) -> tuple[str, tuple | str]:
    """``NAME=KIND:LO:HI`` or ``NAME=KIND`` -> ``(name, (kind, lo, hi) or kind)``.

    KIND is ``log`` (log-uniform) or ``uniform`` (``lin`` accepted); ``NAME=KIND``
    keeps XSPEC's soft limits (bot, top) as bounds.
    """
    hint = "write NAME=KIND:LO:HI with KIND log or uniform, e.g. powerlaw.norm=log:1e-3:10"
    name, eq, spec = text.partition("=")
    name = name.strip()
    if not eq or not name or not spec.strip():
        raise UsageError(f"--prior {text!r}: {hint}")
    parts = [p.strip() for p in spec.split(":")]
    kind = {"lin": "uniform", "linear": "uniform"}.get(parts[0].lower(), parts[0].lower())
    if kind not in ("log", "uniform") or len(parts) not in (1, 3):
        raise UsageError(f"--prior {text!r}: {hint}")
    if len(parts) == 1:
        return name, kind
    try:
        lo, hi = float(parts[1]), float(parts[2])
    except ValueError:
        raise UsageError(f"--prior {text!r}: bounds {parts[1]!r}, {parts[2]!r} are not numbers; "
                         f"{hint}") from None
    return name, (kind, lo, hi)


def _parse_freeze(text: str) -> tuple[str, float | None]:
    name, eq, value = text.partition("=")
    if not name.strip() or (eq and not value.strip()):
        raise UsageError(f"--freeze {text!r}: write NAME or NAME=VALUE, e.g. TBabs.nH=0.2")
    if not eq:
        return name.strip(), None
    try:
        return name.strip(), float(value)
    except ValueError:
        raise UsageError(f"--freeze {text!r}: value {value!r} is not a number") from None


def _dask_address(spec: str) -> str:
    m = re.fullmatch(r"(?:dask|tcp)://([^:/\s]+):(\d+)/?", spec.strip())
    if not m:
        raise UsageError(f"--executor {spec!r}: write dask://HOST:PORT (a Dask scheduler address)")
    return f"tcp://{m.group(1)}:{m.group(2)}"


# -- the parser -------------------------------------------------------------------
_FIT_EXAMPLES = """examples:
  xspec-sbi fit src.pha --model "tbabs*powerlaw" --ignore "**-0.3 10.-**" \\
      --prior powerlaw.norm=log:1e-4:1 --prior TBabs.nH=uniform:0:2 --out runs/src
  xspec-sbi fit src.pha --model "tbabs*powerlaw" --abund wilm --restrict counts:1000-10000 \\
      --sims 20000 --executor dask://scheduler:8786 --save-network nets/src
  xspec-sbi fit burst.pha --model "tbabs*bbodyrad" --nicer-like-arf burst.arf --rounds 3
"""
_TRAIN_EXAMPLES = """examples:
  xspec-sbi train pre_burst.pha --model "tbabs*bbodyrad" --freeze TBabs.nH=0.2 \\
      --restrict counts:100-20000 --sims 20000 --save-network nets/bursts
  xspec-sbi apply nets/bursts b_*.pha --out runs/burst_tracks
"""
_APPLY_EXAMPLES = """examples:
  xspec-sbi apply nets/bursts b_001.pha b_002.pha b_003.pha --out runs/tracks
  xspec-sbi apply nets/bursts spectra/*.pha --times index --samples 5000 --out runs/tracks

Spectra must share the training set-up (response, exposure, grouping, notice
state, background): a mismatch is refused with the file named.
"""
_DEMO_EXAMPLES = """examples:
  xspec-sbi demo --quick --out runs/demo_quick
  xspec-sbi demo --sims 20000 --out runs/demo
"""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and errors")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or step messages")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also print the session, prior and network settings")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _setup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spectra", nargs="+", metavar="SPEC.pha",
                   help="PHA files (file.pha{N} for row N of a type II file), fitted jointly")
    g = p.add_argument_group("session set-up (as XSPEC's data, model, ignore, xset)")
    g.add_argument("-m", "--model", required=True, metavar="EXPR", help='XSPEC model expression, e.g. "tbabs*powerlaw"')
    g.add_argument("--prior", action="append", default=[], metavar="NAME=KIND:LO:HI",
                   help="prior of one free parameter, KIND log or uniform (repeat for several); "
                        "others are uniform over XSPEC's soft limits")
    g.add_argument("--freeze", action="append", default=[], metavar="NAME[=VALUE]",
                   help="freeze a parameter (at VALUE)")
    g.add_argument("--ignore", metavar="SEL", help='XSPEC channel selection to ignore, e.g. "**-0.3 10.-**"')
    g.add_argument("--notice", metavar="SEL", help="XSPEC channel selection to notice (after --ignore)")
    g.add_argument("--abund", default=DEFAULT_ABUND, metavar="TABLE", help="abundance table (Xset.abund)")
    g.add_argument("--xsect", default=DEFAULT_XSECT, metavar="TABLE", help="cross-section table (Xset.xsect)")
    g.add_argument("--respfile", metavar="FILE", help="RMF instead of the RESPFILE keyword (none: no file)")
    g.add_argument("--arffile", metavar="FILE", help="ARF instead of the ANCRFILE keyword (none: no file)")
    g.add_argument("--backfile", metavar="FILE", help="background instead of the BACKFILE keyword (none: no background)")
    g.add_argument("--nicer-like-arf", metavar="ARF",
                   help="use this NICER ARF with a Gaussian NICER-like redistribution "
                        "(when the real RMF is missing; an approximation, said in the report)")
    s = p.add_argument_group("inference")
    s.add_argument("--sims", type=int, default=10_000, metavar="N", help="training simulations (over all rounds)")
    s.add_argument("--restrict", default="cstat:0.25", metavar="KIND[:ARGS]",
                   help="restricted prior: counts:LO-HI, cstat:F, coarse:N or none")
    s.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="rounds of truncated sequential NPE (>1: posterior for this observation only)")
    s.add_argument("--estimator", default=None, metavar="NAME",
                   help="flow: cmaf (default: calibrated conditional MAF), zuko_maf, maf, nsf, ... "
                        "(see NPEConfig)")
    s.add_argument("--max-epochs", type=int, default=1000, metavar="N", help="training epochs at most")
    s.add_argument("--seed", type=int, default=0, metavar="N", help="seeds every random draw of the run")
    s.add_argument("--workers", type=int, metavar="N", help="simulation processes (default: all cores)")
    s.add_argument("--executor", metavar="dask://HOST:PORT",
                   help="simulate on a Dask cluster (needs dask[distributed])")
    s.add_argument("--device", default="cpu", metavar="DEV", help="torch device: cpu or cuda")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def build_parser() -> argparse.ArgumentParser:
    """The ``xspec-sbi`` argument parser with its four commands."""
    from xspec_sbi._version import __version__
    ap = _Parser(prog=_PROG, formatter_class=_Formatter,
                 description="Simulation-based inference (neural posterior estimation) for "
                             "X-ray spectral fitting, beside XSPEC's C-stat fit and chain.",
                 epilog="run 'xspec-sbi COMMAND --help' for the options of each command")
    ap.add_argument("--version", action="version", version=f"xspec_sbi {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    fit = sub.add_parser("fit", formatter_class=_Formatter, epilog=_FIT_EXAMPLES,
                         help="posterior of spectra beside XSPEC's fit and chain, with a report",
                         description="Neural posterior of one or several spectra (joint fit), "
                                     "the Goodman-Weare chain beside it, and a report folder.")
    _setup_options(fit)
    g = fit.add_argument_group("posterior, chain and report")
    g.add_argument("--samples", type=int, default=10_000, metavar="N", help="posterior samples")
    g.add_argument("--mcmc", action=argparse.BooleanOptionalAction, default=None,
                   help="run the Goodman-Weare chain (default: on for one spectrum)")
    g.add_argument("--correct", action=argparse.BooleanOptionalAction, default=True,
                   help="weight the samples by the exact likelihood (importance sampling) and "
                        "report ESS, Pareto k, evidence")
    g.add_argument("--chain-length", type=int, default=50_000, metavar="N", help="chain length (all walkers)")
    g.add_argument("--chain-burn", type=int, default=5_000, metavar="N", help="burn-in (all walkers)")
    g.add_argument("--walkers", type=int, default=None, metavar="N",
                   help="chain walkers (default: XSPEC's 8, or twice the free parameters when more)")
    g.add_argument("--save-network", metavar="DIR", help="save the trained posterior there")
    g.add_argument("--network", metavar="DIR", help="use a saved posterior instead of training")
    g.add_argument("--out", default="xspec_sbi_report", metavar="DIR", help="report folder")
    _common(fit)

    train = sub.add_parser("train", formatter_class=_Formatter, epilog=_TRAIN_EXAMPLES,
                           help="train an amortized posterior and save it for 'apply'",
                           description="Train a posterior on simulations of the set-up of the "
                                       "given spectra and save it with that set-up.")
    _setup_options(train)
    train.add_argument("--save-network", metavar="DIR", required=True,
                       help="folder for the network and its set-up (setup.json)")
    # a C-stat or coarse restriction centres the network on the training spectrum; apply
    # needs it valid for every spectrum of the set-up
    train.set_defaults(restrict="none")
    train.add_argument("--samples", type=int, default=2000, metavar="N",
                       help="posterior samples drawn at the training spectrum as a check")
    _common(train)

    apply = sub.add_parser("apply", formatter_class=_Formatter, epilog=_APPLY_EXAMPLES,
                           help="posteriors of many spectra from a saved network (parameter tracks)",
                           description="Apply a saved amortized posterior to many spectra of the "
                                       "same set-up in one batched call; write tracks.csv, "
                                       "tracks.png and the samples.")
    apply.add_argument("network", metavar="NETWORK", help="folder written by train or fit --save-network")
    apply.add_argument("spectra", nargs="+", metavar="SPEC.pha", help="spectra, in time order or not")
    apply.add_argument("--times", choices=("auto", "header", "index"), default="auto",
                       help="x axis: mid-time from TSTART/TSTOP (header), file order (index), or "
                            "header when every file has TSTART (auto)")
    apply.add_argument("--samples", type=int, default=2000, metavar="N", help="posterior samples per spectrum")
    apply.add_argument("--seed", type=int, default=0, metavar="N", help="seeds the posterior draws")
    apply.add_argument("--device", default="cpu", metavar="DEV", help="torch device: cpu or cuda")
    apply.add_argument("--out", default="xspec_sbi_tracks", metavar="DIR", help="output folder")
    apply.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _common(apply)

    demo = sub.add_parser("demo", formatter_class=_Formatter, epilog=_DEMO_EXAMPLES,
                          help="the paper's reference case end to end",
                          description="tbabs*powerlaw through a NICER-like response, restricted "
                                      "prior, NPE beside the chain, report folder.")
    demo.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="report folder")
    demo.add_argument("--sims", type=int, metavar="N", help="training simulations")
    demo.add_argument("--seed", type=int, metavar="N", help="seed")
    _common(demo)
    return ap


# -- shared steps -----------------------------------------------------------------
class _Say:
    def __init__(self, level: int):
        self.level = level

    def __call__(self, msg: str, level: int = 1) -> None:
        if self.level >= level:
            print(msg, flush=True)


def _check_positive(args, *names):
    for n in names:
        v = getattr(args, n, None)
        if v is not None and v < 1:
            raise UsageError(f"--{n.replace('_', '-')} must be >= 1, got {v}")


def _model_and_prior(expression: str, freeze, prior_texts):
    """Model with --freeze applied, and the prior overrides by canonical name (validated)."""
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.model.expression import Model
    try:
        model = Model(expression)
    except ValueError as exc:
        raise UsageError(f"--model {expression!r}: {exc}") from None
    for text in freeze:
        name, value = _parse_freeze(text)
        try:
            if value is not None:
                model = model.set(**{name: value})
            model = model.freeze(name)
        except ValueError as exc:
            raise UsageError(f"--freeze {text!r}: {exc}") from None
    overrides = {}
    for text in prior_texts:
        name, spec = parse_prior(text)
        try:
            canonical = model.parameters[model.index_of(name)].name
        except ValueError as exc:
            raise UsageError(f"--prior {text!r}: {exc}") from None
        overrides[canonical] = spec
    try:
        box = build_prior(model.parameters, overrides)
    except ValueError as exc:
        raise UsageError(f"--prior: {exc}") from None
    return model, overrides, box


def _abs(path):
    return None if path is None or str(path).lower() in ("", "none") else os.path.abspath(path)


def _setup_record(args, model, overrides) -> dict:
    """What rebuilds the session of a saved network (paths made absolute)."""
    keep = lambda v: v if v is None or str(v).lower() == "none" else os.path.abspath(v)  # noqa: E731
    return {
        "format": _SETUP_FORMAT,
        "model": model.expression,
        "frozen": {p.name: p.value for p in model.parameters if p.frozen},
        "prior": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "ignore": args.ignore, "notice": args.notice,
        "abund": args.abund, "xsect": args.xsect,
        "respfile": keep(args.respfile), "arffile": keep(args.arffile),
        "backfile": keep(args.backfile), "nicer_like_arf": _abs(args.nicer_like_arf),
        "training_spectra": [os.path.abspath(s) for s in args.spectra],
    }


def _session(spectra, model, *, ignore, notice, abund, xsect, respfile, arffile, backfile,
             nicer_like_arf):
    from xspec_sbi.session import Session
    response = None
    if nicer_like_arf:
        if respfile or arffile:
            raise UsageError("--nicer-like-arf replaces the response: drop --respfile/--arffile")
        if not Path(nicer_like_arf).is_file():
            raise CommandError(f"--nicer-like-arf {nicer_like_arf}: file not found")
        from xspec_sbi.data.response import nicer_like_response
        response = nicer_like_response(nicer_like_arf)
    for s in spectra:
        bare = re.sub(r"\{\d+\}$", "", str(s))
        if not Path(bare).is_file():
            raise CommandError(f"{s}: spectrum file not found")
    return Session.from_files(list(spectra), model, ignore=ignore, notice=notice, respfile=respfile,
                              ancrfile=arffile, backfile=backfile, response=response,
                              abund=abund, xsect=xsect)


def _describe(session, say) -> None:
    for s in session.spectra:
        resp = s.response
        rtext = resp.rmf_path or getattr(resp, "description", None) or "response from arrays"
        say(f"  {s.label}: {s.binned_counts().sum():.0f} counts in {s.n_bins} bins, "
            f"exposure {s.exposure:g} s" + (", with background" if s.background is not None else "")
            + f"\n    response: {rtext}" + (f" + {resp.arf_path}" if resp.arf_path and resp.rmf_path else ""),
            2)
    say(f"model {session.model.expression}, free: {', '.join(session.model.free_names)} "
        f"(abund {session.settings.abund}, xsect {session.settings.xsect})")


def _describe_prior(box, say) -> None:
    for p in box.parameters:
        say(f"  prior {p.name}: {p.kind} [{p.lower:g}, {p.upper:g}] {p.unit}", 2)


@contextlib.contextmanager
def _executor(spec: str | None, say):
    if spec is None:
        yield None
        return
    address = _dask_address(spec)
    try:
        from distributed import Client
    except ImportError:
        raise CommandError(f"--executor {spec}: needs the dask[distributed] package "
                           "(pip install 'xspec_sbi[dask]')") from None
    try:
        client = Client(address, timeout=30)
    except OSError as exc:
        raise CommandError(f"--executor {spec}: cannot reach the Dask scheduler at {address} ({exc})") \
            from None
    with client:
        say(f"simulating on the Dask cluster at {address} "
            f"({len(client.scheduler_info().get('workers', {}))} workers)")
        yield client.get_executor()


def _refuse_existing(path: Path, what: str, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise CommandError(f"{path}: {what} exists; pass --overwrite to replace it")


def _atomic_write_text(path: Path, text: str, overwrite: bool) -> None:
    _refuse_existing(path, "file", overwrite)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _npe_config(args):
    from xspec_sbi.inference.config import NPEConfig
    network = getattr(args, "network", None)
    if network and (Path(network) / SETUP_NAME).is_file():
        # a saved network is checked against the settings it was trained with
        return NPEConfig(**load_setup(network)["npe_config"])
    chosen = {"max_epochs": args.max_epochs}
    if args.estimator:
        chosen["estimator"] = args.estimator
    return NPEConfig(**chosen)


def _run_sbi(args, say, *, save, network=None, mcmc=False, n_samples, correct, chain=None):
    from xspec_sbi.api import parse_restriction, sbi_fit
    _check_positive(args, "sims", "rounds", "max_epochs", "workers", "samples")
    try:
        parse_restriction(args.restrict)
    except ValueError as exc:
        raise UsageError(f"--restrict {args.restrict!r}: {exc}") from None
    if args.executor:
        _dask_address(args.executor)
    if args.rounds > 1 and args.sims < 2 * args.rounds:
        raise UsageError(f"--sims {args.sims} is too few for --rounds {args.rounds}")
    model, overrides, box = _model_and_prior(args.model, args.freeze, args.prior)
    session = _session(args.spectra, model, ignore=args.ignore, notice=args.notice,
                       abund=args.abund, xsect=args.xsect, respfile=args.respfile,
                       arffile=args.arffile, backfile=args.backfile,
                       nicer_like_arf=args.nicer_like_arf)
    _describe(session, say)
    _describe_prior(box, say)
    cfg = _npe_config(args)
    say(f"  network: {cfg}", 2)
    chain = chain or {}
    with _executor(args.executor, say) as executor:
        result = sbi_fit(session, prior=overrides, restrict=args.restrict,
                         n_simulations=args.sims, rounds=args.rounds, n_samples=n_samples, correct=correct, mcmc=mcmc, seed=args.seed,
                         workers=args.workers, executor=executor, network=network, save=save,
                         overwrite=args.overwrite, device=args.device, progress=say.level >= 1,
                         config=cfg, **chain)
    return result, model, overrides


def _note(args) -> list[str]:
    if args.nicer_like_arf:
        return [f"NICER-like response: ARF {args.nicer_like_arf} with Gaussian redistribution "
                "(the real NICER RMF was not used)"]
    return []


# -- commands ---------------------------------------------------------------------
def cmd_fit(args, say) -> int:
    from xspec_sbi.report.folder import write_report
    _check_positive(args, "chain_length", "walkers")
    if args.network and args.save_network:
        raise UsageError("--network loads a trained posterior; --save-network saves a new one: "
                         "give one of them")
    out = Path(args.out)
    _refuse_existing(out / "summary.json", "report", args.overwrite)
    if args.save_network:
        _refuse_existing(Path(args.save_network), "network folder", args.overwrite)
    if args.network and not Path(args.network).is_dir():
        raise CommandError(f"--network {args.network}: folder not found")
    result, model, overrides = _run_sbi(
        args, say, save=args.save_network, network=args.network, mcmc=args.mcmc,
        n_samples=args.samples, correct=args.correct,
        chain=dict(chain_length=args.chain_length, chain_burn=args.chain_burn, walkers=args.walkers))
    if args.save_network:
        _write_setup(Path(args.save_network), args, model, overrides, result)
    print()
    print(result.table())
    title = f"xspec-sbi fit: {model.expression} on " + ", ".join(Path(s).name for s in args.spectra)
    write_report(result, out, title=title, notes=_note(args), overwrite=args.overwrite)
    print(f"\nreport: {out / 'report.html'}")
    if args.save_network:
        print(f"network: {args.save_network}")
    return 0


def _write_setup(folder: Path, args, model, overrides, result) -> None:
    from xspec_sbi.api import network_fingerprint
    record = _setup_record(args, model, overrides)
    record["npe_config"] = asdict(result.posterior.config)
    record["prior_box"] = result.prior.to_dict()
    record["fingerprint"] = network_fingerprint(result.session, result.prior, result.posterior.config)
    record["settings"] = {k: getattr(result.settings, k) for k in ("restrict", "n_simulations", "rounds",
                                                                   "seed", "versions")}
    _atomic_write_text(folder / SETUP_NAME, json.dumps(record, indent=1, default=str),
                       overwrite=args.overwrite)


def cmd_train(args, say) -> int:
    folder = Path(args.save_network)
    _refuse_existing(folder, "network folder", args.overwrite)
    if args.restrict.split(":")[0].strip().lower() in ("cstat", "coarse") or args.rounds > 1:
        say(f"note: --restrict {args.restrict} / --rounds {args.rounds} fit the network to "
            f"{args.spectra[0]}; for 'apply' to other spectra use --restrict counts:LO-HI or none")
    result, model, overrides = _run_sbi(args, say, save=str(folder), n_samples=args.samples,
                                        mcmc=False, correct=False)
    _write_setup(folder, args, model, overrides, result)
    summary = result.posterior.summary
    if summary is not None:
        say(f"trained on {summary.n_train} simulations (+{summary.n_validation} validation), "
            f"{summary.epochs} epochs in {summary.seconds:.1f} s, best validation loss "
            f"{summary.best_validation_loss:.3f}")
    say("posterior at the training spectrum (a check):")
    for s in result.summaries:
        say(f"  {s}")
    print(f"network: {folder}  (set-up: {folder / SETUP_NAME})")
    return 0


def load_setup(network) -> dict:
    """Read ``setup.json`` of a saved network folder, with the file named in any error."""
    path = Path(network) / SETUP_NAME
    if not Path(network).is_dir():
        raise CommandError(f"{network}: network folder not found")
    if not path.is_file():
        raise CommandError(f"{path}: not found; apply needs a network saved by "
                           "'xspec-sbi train' or 'xspec-sbi fit --save-network'")
    try:
        setup = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON ({exc})") from None
    if setup.get("format") != _SETUP_FORMAT:
        raise CommandError(f"{path}: format {setup.get('format')!r}, expected {_SETUP_FORMAT!r}")
    return setup


def _setup_model(setup):
    from xspec_sbi.model.expression import Model
    model = Model(setup["model"])
    for name, value in setup["frozen"].items():
        model = model.set(**{name: value}).freeze(name)
    return model


def _spectrum_time(path: str) -> float | None:
    """Mid-time (TSTART+TSTOP)/2, or TSTART, of a PHA file's SPECTRUM header, s (mission time)."""
    from astropy.io import fits
    bare = re.sub(r"\{\d+\}$", "", path)
    with fits.open(bare) as hdul:
        headers = [h.header for h in hdul if h.header.get("HDUCLAS1", "").upper() == "SPECTRUM"
                   or h.header.get("EXTNAME", "").upper() == "SPECTRUM"] + [hdul[0].header]
        for h in headers:
            if "TSTART" in h:
                t0 = float(h["TSTART"])
                return 0.5 * (t0 + float(h["TSTOP"])) if "TSTOP" in h else t0
    return None


def cmd_apply(args, say) -> int:
    from xspec_sbi.api import network_fingerprint
    from xspec_sbi.inference.config import FingerprintMismatch, NPEConfig
    from xspec_sbi.inference.posterior import NeuralPosterior
    from xspec_sbi.inference.priors import build_prior
    from xspec_sbi.result import summarize
    _check_positive(args, "samples")
    setup = load_setup(args.network)
    if len(setup["training_spectra"]) != 1:
        raise CommandError(f"{args.network}: trained on {len(setup['training_spectra'])} spectra "
                           "jointly; apply handles networks trained on one spectrum per observation")
    out = Path(args.out)
    _refuse_existing(out / "tracks.csv", "track table", args.overwrite)
    model = _setup_model(setup)
    box = build_prior(model.parameters, {k: tuple(v) if isinstance(v, list) else v
                                         for k, v in setup["prior"].items()})
    cfg = NPEConfig(**setup["npe_config"])
    from tqdm.auto import tqdm
    xs, fps, labels, counts = [], [], [], []
    for spec in tqdm(args.spectra, desc="reading spectra", disable=say.level < 1 or len(args.spectra) < 20,
                     leave=False):
        session = _session([spec], model, ignore=setup["ignore"], notice=setup["notice"],
                           abund=setup["abund"], xsect=setup["xsect"], respfile=setup["respfile"],
                           arffile=setup["arffile"], backfile=setup["backfile"],
                           nicer_like_arf=setup["nicer_like_arf"])
        fps.append(network_fingerprint(session, box, cfg))
        xs.append(session.observed())
        labels.append(session.spectra[0].label)
        counts.append(float(session.spectra[0].binned_counts().sum()))
    posterior = None
    groups: dict[str, list[str]] = {}
    for fp, label in zip(fps, labels):
        groups.setdefault(json.dumps(fp, sort_keys=True, default=str), []).append(label)
    for key, members in groups.items():
        try:
            posterior = NeuralPosterior.load(args.network, json.loads(key), device=args.device)
        except FingerprintMismatch as exc:
            which = members[0] + (f" (and {len(members) - 1} more)" if len(members) > 1 else "")
            hint = (" (spectra_setup: response, exposure, scaling, grouping, notice state and "
                    "background must be those of the training spectrum)"
                    if "spectra_setup" in str(exc) else "")
            raise CommandError(f"{which}: set-up differs from the network's training spectrum "
                               f"{setup['training_spectra'][0]}: {exc}{hint}") from None
    x = np.stack(xs)
    say(f"{len(x)} spectra of {model.expression}; sampling {args.samples} posterior draws each")
    samples = posterior.sample(x, args.samples, rng=args.seed)
    times, axis_label = _times(args.times, args.spectra, say)
    summaries = [summarize(box.names, s) for s in samples]
    out.mkdir(parents=True, exist_ok=True)
    _write_tracks_csv(out / "tracks.csv", labels, times, axis_label, counts, summaries, box)
    _plot_tracks(out / "tracks.png", times, axis_label, summaries, box, model.expression)
    tmp = out / ".samples.tmp.npz"
    np.savez(tmp, names=np.array(box.names), spectra=np.array(labels), times=times, samples=samples)
    os.replace(tmp, out / "samples.npz")
    _print_tracks(labels, summaries, say)
    print(f"tracks: {out / 'tracks.csv'}, {out / 'tracks.png'}")
    return 0


def _times(mode, spectra, say):
    index = np.arange(len(spectra), dtype=float)
    if mode == "index":
        return index, "spectrum index (file order)"
    found = [_spectrum_time(s) for s in spectra]
    missing = [s for s, t in zip(spectra, found) if t is None]
    if missing:
        if mode == "header":
            raise CommandError(f"{missing[0]}: no TSTART keyword; use --times index")
        say(f"no TSTART in {missing[0]}: tracks use the file order")
        return index, "spectrum index (file order)"
    t = np.asarray(found)
    t0 = float(t.min())
    return t - t0, f"time since {t0:.3f} s (mission time, mid-exposure)"


def _write_tracks_csv(path, labels, times, axis_label, counts, summaries, box):
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["spectrum", "time_s" if axis_label.startswith("time") else "index", "counts"]
    for n in box.names:
        head += [f"{n}_median", f"{n}_lo68", f"{n}_hi68"]
    w.writerow(head)
    for label, t, n, summ in zip(labels, times, counts, summaries):
        row = [label, f"{t:.6f}", f"{n:.0f}"]
        for s in summ:
            row += [f"{s.median:.6g}", f"{s.lo68:.6g}", f"{s.hi68:.6g}"]
        w.writerow(row)
    # the caller refused an existing table unless --overwrite
    _atomic_write_text(path, buf.getvalue(), overwrite=True)


def _plot_tracks(path, times, axis_label, summaries, box, expression):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    k = box.n_dim
    fig, axes = plt.subplots(k, 1, figsize=(7, 1.9 * k + 1), sharex=True, squeeze=False)
    for i, (ax, p) in enumerate(zip(axes[:, 0], box.parameters)):
        med = np.array([s[i].median for s in summaries])
        lo = np.array([s[i].lo68 for s in summaries])
        hi = np.array([s[i].hi68 for s in summaries])
        ax.errorbar(times, med, yerr=[med - lo, hi - med], fmt="o", ms=3, capsize=2, color="#2a9d8f")
        ax.set_ylabel(f"{p.name}" + (f" ({p.unit})" if p.unit else ""), fontsize=8)
        if p.kind == "log":
            ax.set_yscale("log")
    axes[-1, 0].set_xlabel(axis_label)
    axes[0, 0].set_title(f"{expression}: posterior median and 68% interval", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _print_tracks(labels, summaries, say):
    if say.level < 1:
        return
    width = max(len(Path(lab).name) for lab in labels) + 2
    names = [s.name for s in summaries[0]]
    say(f"{'spectrum':<{width}}" + "".join(f"{n:>30}" for n in names))
    for lab, summ in zip(labels, summaries):
        cells = "".join(f"{f'{s.median:.4g} [{s.lo68:.4g}, {s.hi68:.4g}]':>30}" for s in summ)
        say(f"{Path(lab).name:<{width}}{cells}")


def cmd_demo(args, say) -> int:
    from xspec_sbi import demo
    argv = ["--out", args.out] + (["--quick"] if args.quick else [])
    if args.sims is not None:
        argv += ["--sims", str(args.sims)]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    return int(demo.main(argv) or 0)


_COMMANDS = {"fit": cmd_fit, "train": cmd_train, "apply": cmd_apply, "demo": cmd_demo}


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return " ".join(text.split())


def main(argv=None) -> int:
    """Run ``xspec-sbi``; returns the exit status (0 success, 1 failure, 2 usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{_PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    say = _Say(0 if args.quiet else 2 if args.verbose else 1)
    try:
        return _COMMANDS[args.command](args, say)
    except UsageError as exc:
        if debug:
            raise
        print(f"{_PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line; --debug shows the traceback
        if debug:
            raise
        print(f"{_PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
