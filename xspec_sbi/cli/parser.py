"""The ``xspec-sbi`` argument parser: four commands, their options, examples, value syntax.

Numbers are checked here, by their option (``--sims 3`` is refused naming
``--sims`` before anything runs); values with a syntax of their own
(``--prior``, ``--freeze``, ``--executor``) have a parser each.
"""
from __future__ import annotations

import argparse
import re

from xspec_sbi.cli.errors import UsageError
from xspec_sbi.model.library import DEFAULT_ABUND, DEFAULT_XSECT

__all__ = ["build_parser", "parse_prior", "parse_freeze", "dask_address", "PROG"]

PROG = "xspec-sbi"
#: Fewest training simulations a network is trained on (options.Budget's floor).
MIN_SIMULATIONS = 20


def _integer(minimum: int, what: str = ""):
    """argparse type: an integer >= ``minimum``; argparse names the option in the error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give an integer >= {minimum}"
                                             + (f" ({what})" if what else ""))
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


_SIMS = _integer(MIN_SIMULATIONS, "a network needs at least 20 training spectra")
_SAMPLES = _integer(2, "posterior samples")
_SEED = _integer(0, "seeds are non-negative")
_POSITIVE = _integer(1)
_NON_NEGATIVE = _integer(0)


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
    """``NAME=KIND:LO:HI``, ``NAME=KIND`` or ``NAME=gauss:MU:SIGMA[:LO:HI]`` -> ``(name, spec)``.

    KIND is ``log`` (log-uniform) or ``uniform`` (``lin`` accepted); ``NAME=KIND``
    keeps XSPEC's soft limits (bot, top) as bounds. ``gauss`` (``gaussian``
    accepted) is a Gaussian of mean MU and standard deviation SIGMA, truncated
    at LO and HI, or at XSPEC's hard limits (min, max) without them.
    """
    hint = ("write NAME=KIND:LO:HI with KIND log or uniform, e.g. powerlaw.norm=log:1e-3:10, "
            "or NAME=gauss:MU:SIGMA[:LO:HI], e.g. TBabs.nH=gauss:0.05:0.01")
    name, eq, spec = text.partition("=")
    name = name.strip()
    if not eq or not name or not spec.strip():
        raise UsageError(f"--prior {text!r}: {hint}")
    parts = [p.strip() for p in spec.split(":")]
    kind = {"lin": "uniform", "linear": "uniform", "gaussian": "gauss"}.get(parts[0].lower(),
                                                                          parts[0].lower())
    counts = (3, 5) if kind == "gauss" else (1, 3)
    if kind not in ("log", "uniform", "gauss") or len(parts) not in counts:
        raise UsageError(f"--prior {text!r}: {hint}")
    if len(parts) == 1:
        return name, kind
    try:
        numbers = tuple(float(v) for v in parts[1:])
    except ValueError:
        what = "mean, sigma and bounds" if kind == "gauss" else "bounds"
        bad = ", ".join(repr(v) for v in parts[1:])
        raise UsageError(f"--prior {text!r}: {what} {bad} are not all numbers; {hint}") from None
    return name, (kind,) + numbers


def parse_freeze(text: str) -> tuple[str, float | None]:
    name, eq, value = text.partition("=")
    if not name.strip() or (eq and not value.strip()):
        raise UsageError(f"--freeze {text!r}: write NAME or NAME=VALUE, e.g. TBabs.nH=0.2")
    if not eq:
        return name.strip(), None
    try:
        return name.strip(), float(value)
    except ValueError:
        raise UsageError(f"--freeze {text!r}: value {value!r} is not a number") from None


def dask_address(spec: str) -> str:
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
  xspec-sbi fit src.pha --model "tbabs*powerlaw" --flux 0.5 2 --flux 2 10 --lumin 2 10 0.05 --unabsorbed
"""
_TRAIN_EXAMPLES = """examples:
  xspec-sbi train pre_burst.pha --model "tbabs*bbodyrad" --freeze TBabs.nH=0.2 \\
      --restrict counts:100-20000 --sims 20000 --save-network nets/bursts
  xspec-sbi apply nets/bursts b_*.pha --out runs/burst_tracks
"""
_APPLY_EXAMPLES = """examples:
  xspec-sbi apply nets/bursts b_001.pha b_002.pha b_003.pha --out runs/tracks
  xspec-sbi apply nets/bursts spectra/*.pha --times index --samples 5000 --out runs/tracks

  xspec-sbi apply nets/bursts b_004.pha b_008.pha --nicer-like-arf header --refine

Spectra may differ from the training spectrum in exposure, ARF, RMF values,
scaling or background level: each is weighted by its own exact likelihood and
its differences are listed (tracks.csv, column setup). Spectra the network
cannot read (other bins: another grouping or channel selection; a background
where there was none) are refused with the file and the property named. A
spectrum outside the training spectra (far brighter, say) is warned about, or
refused with --strict.
"""
_DEMO_EXAMPLES = """examples:
  xspec-sbi demo --quick --out runs/demo_quick
  xspec-sbi demo --sims 20000 --out runs/demo
"""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and errors")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or step messages (warnings and errors still show)")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also print the session, prior and network settings")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _setup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spectra", nargs="+", metavar="SPEC.pha",
                   help="PHA files (file.pha{N} for row N of a type II file), fitted jointly")
    g = p.add_argument_group("session set-up (as XSPEC's data, model, ignore, xset)")
    g.add_argument("-m", "--model", required=True, metavar="EXPR", help='XSPEC model expression, e.g. "tbabs*powerlaw"')
    g.add_argument("--prior", action="append", default=[], metavar="NAME=KIND:LO:HI",
                   help="prior of one free parameter, KIND log or uniform, or NAME=gauss:MU:SIGMA"
                        "[:LO:HI] (a Gaussian truncated at LO, HI or else at XSPEC's hard limits); "
                        "repeat for several; others are uniform over XSPEC's soft limits")
    g.add_argument("--freeze", action="append", default=[], metavar="NAME[=VALUE]",
                   help="freeze a parameter (at VALUE)")
    g.add_argument("--group-free", action="append", default=[], metavar="NAME",
                   help="one data group per spectrum, with this parameter of group 1 free in "
                        "each other group (XSPEC's untie; repeat for several), e.g. "
                        "constant.factor (then frozen at 1 in group 1); group g's copy is "
                        "NAME[g] in --prior")
    g.add_argument("--ignore", metavar="SEL", help='XSPEC channel selection to ignore, e.g. "**-0.3 10.-**"')
    g.add_argument("--notice", metavar="SEL", help="XSPEC channel selection to notice (after --ignore)")
    g.add_argument("--abund", default=DEFAULT_ABUND, metavar="TABLE", help="abundance table (Xset.abund)")
    g.add_argument("--xsect", default=DEFAULT_XSECT, metavar="TABLE", help="cross-section table (Xset.xsect)")
    g.add_argument("--respfile", metavar="FILE", help="RMF instead of the RESPFILE keyword (none: no file)")
    g.add_argument("--arffile", metavar="FILE", help="ARF instead of the ANCRFILE keyword (none: no file)")
    g.add_argument("--backfile", metavar="FILE", help="background instead of the BACKFILE keyword (none: no background)")
    g.add_argument("--regroup", dest="group", type=_POSITIVE, metavar="N",
                   help="regroup every spectrum by N channels a bin, file QUALITY kept (as "
                        "ftgrouppha grouptype=constant groupscale=N): spectra whose own GROUPING "
                        "differs then share one bin layout, which one network for many needs")
    g.add_argument("--nicer-like-arf", metavar="ARF",
                   help="use this NICER ARF with a Gaussian NICER-like redistribution "
                        "(when the real RMF is missing; an approximation, said in the report)")
    s = p.add_argument_group("inference")
    s.add_argument("--sims", type=_SIMS, default=None, metavar="N",
                   help="training simulations (over all rounds); default 10,000, but 3,000 for "
                        "the first network of a fit that refines itself (fit with --rounds 1, "
                        "no --save-network, no --exposure-range): its exact-likelihood check "
                        "asks for more when needed")
    s.add_argument("--restrict", default="cstat:0.25", metavar="KIND[:ARGS]",
                   help="restricted prior: counts:LO-HI (exact expected counts), classifier:LO-HI "
                        "(the paper's classifier), cstat:F, coarse:N or none")
    s.add_argument("--rounds", type=_POSITIVE, default=1, metavar="N",
                   help="rounds of truncated sequential NPE (>1: posterior for this observation only)")
    s.add_argument("--estimator", default=None, metavar="NAME",
                   help="flow: cmaf (default: calibrated conditional MAF), zuko_maf, maf, nsf, ... "
                        "(see NPEConfig)")
    s.add_argument("--max-epochs", type=_POSITIVE, default=1000, metavar="N", help="training epochs at most")
    s.add_argument("--exposure-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="train over exposures: each simulation's exposure is the spectrum's "
                        "times a factor drawn log-uniformly in LOW-HIGH (holding 1), given to "
                        "the network, so that apply serves spectra of other exposures, e.g. 0.25 4")
    s.add_argument("--seed", type=_SEED, default=0, metavar="N", help="seeds every random draw of the run")
    s.add_argument("--workers", type=_POSITIVE, metavar="N", help="simulation processes (default: all cores)")
    s.add_argument("--executor", metavar="dask://HOST:PORT",
                   help="simulate on a Dask cluster (needs dask[distributed])")
    s.add_argument("--device", default="cpu", metavar="DEV", help="torch device: cpu or cuda")
    s.add_argument("--overwrite", action="store_true",
                   help="replace existing output folders (as a whole: no stale file stays)")


def build_parser() -> argparse.ArgumentParser:
    """The ``xspec-sbi`` argument parser with its four commands."""
    from xspec_sbi._version import __version__
    ap = _Parser(prog=PROG, formatter_class=_Formatter,
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
    g.add_argument("--samples", type=_SAMPLES, default=10_000, metavar="N", help="posterior samples")
    g.add_argument("--mcmc", action=argparse.BooleanOptionalAction, default=None,
                   help="run the Goodman-Weare chain (default: on for one spectrum)")
    g.add_argument("--correct", action=argparse.BooleanOptionalAction, default=True,
                   help="weight the samples by the exact likelihood (importance sampling) and "
                        "report ESS, Pareto k, evidence")
    g.add_argument("--chain-length", type=_POSITIVE, default=50_000, metavar="N", help="chain length (all walkers)")
    g.add_argument("--chain-burn", type=_NON_NEGATIVE, default=5_000, metavar="N", help="burn-in (all walkers)")
    g.add_argument("--walkers", type=_POSITIVE, default=None, metavar="N",
                   help="chain walkers (default: XSPEC's 8, or twice the free parameters when more)")
    g.add_argument("--save-network", metavar="DIR", help="save the trained posterior there")
    g.add_argument("--network", metavar="DIR", help="use a saved posterior instead of training")
    g.add_argument("--out", default="xspec_sbi_report", metavar="DIR", help="report folder")
    f = fit.add_argument_group("fluxes (as XSPEC's flux and lumin with err, from the posterior samples)")
    f.add_argument("--flux", nargs=2, type=float, action="append", default=[], metavar=("LO", "HI"),
                   help="energy and photon flux over LO-HI keV; repeatable")
    f.add_argument("--lumin", nargs=3, type=float, action="append", default=[], metavar=("LO", "HI", "Z"),
                   help="luminosity over the source-frame band LO-HI keV at redshift Z; repeatable")
    f.add_argument("--unabsorbed", action="store_true",
                   help="also each value with the absorbers (tbabs, phabs, ...) set to 1")
    f.add_argument("--cosmo", nargs=3, type=float, metavar=("H0", "Q0", "L0"),
                   help="cosmology for --lumin as XSPEC's cosmo (default: 70 0 0.73)")
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
    train.add_argument("--samples", type=_SAMPLES, default=2000, metavar="N",
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
    apply.add_argument("--samples", type=_SAMPLES, default=2000, metavar="N", help="posterior samples per spectrum")
    apply.add_argument("--seed", type=_SEED, default=0, metavar="N", help="seeds the posterior draws")
    apply.add_argument("--device", default="cpu", metavar="DEV", help="torch device: cpu or cuda")
    apply.add_argument("--out", default="xspec_sbi_tracks", metavar="DIR", help="output folder")
    apply.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    apply.add_argument("--correct", action=argparse.BooleanOptionalAction, default=True,
                       help="weight each spectrum's draws by its own exact likelihood (C-stat or "
                            "W-stat) and report ESS and Pareto k per spectrum in tracks.csv")
    apply.add_argument("--nicer-like-arf", metavar="ARF|header",
                       help="NICER-like response of the spectra: this ARF, or 'header': each "
                            "spectrum's own ANCRFILE (default: the training spectrum's ARF)")
    apply.add_argument("--refine", action="store_true",
                       help="run the adaptive rounds (as fit) on each spectrum whose exact-"
                            "likelihood check fails; rounds per spectrum go to tracks.csv")
    apply.add_argument("--workers", type=_POSITIVE, metavar="N",
                       help="processes for the exact statistics (default: all cores when the "
                            "work outweighs starting them; 1: this process; same numbers)")
    apply.add_argument("--strict", action="store_true",
                       help="fail (exit 1, nothing written) when a spectrum lies outside the "
                            "network's training spectra, instead of a warning per spectrum")
    _common(apply)

    demo = sub.add_parser("demo", formatter_class=_Formatter, epilog=_DEMO_EXAMPLES,
                          help="the paper's reference case end to end",
                          description="tbabs*powerlaw through a NICER-like response, restricted "
                                      "prior, NPE beside the chain, report folder.")
    demo.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    demo.add_argument("--out", default="runs/demo", metavar="DIR", help="report folder")
    demo.add_argument("--sims", type=_SIMS, metavar="N", help="training simulations")
    demo.add_argument("--seed", type=_SEED, metavar="N", help="seed")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace --out whatever it holds (an earlier demo report is replaced "
                           "without it)")
    _common(demo)
    return ap


