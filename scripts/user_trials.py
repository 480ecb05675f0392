"""Try xspec_sbi as a new X-ray astronomer would, on set-ups built here (not from ../shared).

Every scenario writes its own OGIP files into a temporary folder (astropy: a
PHA type I with EXPOSURE, BACKSCAL, AREASCAL, RESPFILE/ANCRFILE/BACKFILE, an
RMF with MATRIX + EBOUNDS from a Gaussian redistribution, an ARF, optionally a
background PHA and GROUPING/QUALITY columns), draws its counts from a chosen
model with the package's own fakeit (:func:`xspec_sbi.forward.simulate.fakeit_spectrum`,
fixed seeds), then runs it end to end as a user would: ``xspec-sbi fit`` with
file names, ``--model`` and ``--prior`` (through ``python -m xspec_sbi.cli``,
stdin from /dev/null), or :func:`xspec_sbi.sbi_fit` on a session read from
the files.

Scenarios
    a  tbabs*(diskbb+powerlaw), 5 free, ~20,000 counts, background (W-stat), wide log norms
    b  tbabs*(powerlaw+gaussian), narrow 6.4 keV line, sigma frozen (5 free), moderate counts
    c  a faint source: ~150 source counts on a comparable background (W-stat)
    d  GROUPING column, QUALITY=bad channels, ``--ignore "**-0.5 10.-** bad"``
    d2 XSPEC's idiom ``--ignore "**-**" --notice "0.4-9.0"`` (key D in --only)
    e  nH's true value at its prior's lower bound (0.01, prior uniform 0.01-3), through sbi_fit
    g  AREASCAL 0.8, a BACKSCAL column in the background, background exposed 2.5x longer
    h  tbabs*(powerlaw+gaussian) with the line's sigma free too (6 free), through sbi_fit
    i  ~30 counts, no background (cstat), through ``sbi_fit(spectra=..., model=...)``
    j  two spectra fitted jointly (``xspec-sbi fit a.pha b.pha``), one with a background
    k  W-stat on 239 ungrouped bins with 80 background counts: the empty-background warning
    f  bad inputs: missing RESPFILE, unknown parameter in --prior, prior beyond XSPEC's hard
       limits, unknown model component, ...: each must be one clear line, exit 1 or 2, no
       traceback; and a second run into an existing report folder must be refused, leaving it

Printed per scenario: ran or the error, seconds, the exact-likelihood check (ESS fraction,
Pareto k, reliable), whether each true value falls inside the 95 % interval (and 99 %), the
warnings the tool printed. A truth outside the 99 % interval of a result flagged reliable is
a finding.

Usage: python scripts/user_trials.py [--quick] [--only a,c] [--keep DIR]
(--quick: 2,000 training simulations, 2,000 samples, no chain; a few minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from ogip_testfiles import write_arf, write_pha, write_rmf  # noqa: E402

EXPOSURE_S = 20_000.0


# -- files ------------------------------------------------------------------------
def write_response(folder: Path, stem: str = "inst") -> tuple[str, str]:
    """An RMF (Gaussian redistribution, FWHM 0.15 keV at 6 keV as sqrt(E)) and an ARF, keV grids.

    Returns the RMF and ARF file names (relative to ``folder``, as RESPFILE/ANCRFILE hold them).
    """
    from xspec_sbi.data.response import gaussian_response
    edges = np.geomspace(0.1, 12.0, 601)
    cedges = np.linspace(0.1, 12.0, 239 + 1)         # 0.05 keV channels
    fwhm = lambda e: 0.15 * np.sqrt(np.asarray(e) / 6.0)  # noqa: E731
    resp = gaussian_response(edges[:-1], edges[1:], cedges[:-1], cedges[1:], fwhm)
    centre = 0.5 * (edges[:-1] + edges[1:])
    # a mirror-like effective area: rises to ~400 cm^2 at 1.5 keV, falls above 7 keV
    area = 400.0 * np.exp(-0.5 * (np.log(centre / 1.5) / 0.9) ** 2) + 5.0
    rmf, arf = f"{stem}.rmf", f"{stem}.arf"
    write_rmf(folder / rmf, edges[:-1], edges[1:], cedges[:-1], cedges[1:], resp.matrix.toarray())
    write_arf(folder / arf, edges[:-1], edges[1:], area)
    return rmf, arf


def _keywords(rmf, arf, backfile, backscal=1.0, areascal=1.0):
    return {"RESPFILE": rmf, "ANCRFILE": arf, "BACKFILE": backfile or "none",
            "BACKSCAL": backscal, "AREASCAL": areascal, "TELESCOP": "TRIAL", "INSTRUME": "GAUSS"}


def make_spectrum(folder: Path, name: str, model_expr: str, truth: dict, *, seed: int,
                  background_counts: float = 0.0, background_backscal: float = 10.0,
                  grouping=None, quality=None, exposure: float = EXPOSURE_S,
                  areascal: float = 1.0, background_exposure: float | None = None,
                  backscal_column: bool = False) -> Path:
    """Write ``name``.pha (and a background) whose counts are fakeit draws of the model at ``truth``.

    The background file, when asked for, holds ``background_counts`` counts in all, flat
    in channels, over a region ``background_backscal`` times the source's (BACKSCAL 1),
    as a keyword or (``backscal_column``) a BACKSCAL column, exposed ``background_exposure``
    s (default the source's); ``areascal`` is the source's AREASCAL.
    """
    from xspec_sbi.forward.simulate import fakeit_spectrum
    from xspec_sbi.model.expression import Model
    from xspec_sbi.model.library import XspecSettings, configure
    from xspec_sbi.session import Session
    configure(XspecSettings())        # XSPEC's defaults (angr, vern), as the fits below use
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rmf, arf = write_response(folder)
    n_chan = 239
    backfile = None
    bkg_exposure = background_exposure or exposure

    def write_background(counts):
        keywords = _keywords("none", "none", None, backscal=background_backscal) | {"HDUCLAS2": "BKG"}
        columns = None
        if backscal_column:   # a BACKSCAL per channel, as some pipelines write it
            del keywords["BACKSCAL"]
            columns = {"BACKSCAL": np.full(n_chan, background_backscal)
                       * np.linspace(0.9, 1.1, n_chan)}
        write_pha(folder / backfile, counts, exposure=bkg_exposure, keywords=keywords,
                  columns=columns)

    if background_counts:
        backfile = f"{name}_bkg.pha"
        write_background(rng.poisson(background_counts / n_chan, n_chan))
    path = folder / f"{name}.pha"
    src_keywords = _keywords(rmf, arf, backfile, areascal=areascal)
    # a template (ones: not an all-zero spectrum) read back as XSPEC reads it, then faked
    write_pha(path, np.ones(n_chan, dtype=int), exposure=exposure, grouping=grouping,
              quality=quality, keywords=src_keywords)
    model = Model(model_expr)
    for k, v in truth.items():
        model = model.set(**{k: v})
    session = Session.from_files(str(path), model)
    theta = np.array([truth[n] for n in model.free_names])
    fake = fakeit_spectrum(session.spectra[0], model, theta, rng)
    write_pha(path, fake.counts.astype(int), exposure=exposure, grouping=grouping,
              quality=quality, keywords=src_keywords)
    if backfile:
        write_background(fake.background.counts.astype(int))
    return path


# -- results ----------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    what: str
    ran: bool = False
    seconds: float = 0.0
    error: str = ""
    ess_fraction: float = float("nan")
    pareto_k: float = float("nan")
    reliable: object = None
    source: str = ""
    statistic: str = ""
    inside95: dict = field(default_factory=dict)
    inside99: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    findings: list = field(default_factory=list)

    def judge(self, names, samples, truth, bounds=None):
        """Truth inside the central 95 % (99 %) interval; one-sided from a prior bound it sits on."""
        for i, n in enumerate(names):
            if n not in truth:
                continue
            x, t = samples[:, i], truth[n]
            lo, hi = (bounds or {}).get(n, (-np.inf, np.inf))
            if np.isclose(t, lo, rtol=1e-9, atol=0):
                lo95, hi95, lo99, hi99 = lo, np.quantile(x, 0.95), lo, np.quantile(x, 0.99)
            elif np.isclose(t, hi, rtol=1e-9, atol=0):
                lo95, hi95, lo99, hi99 = np.quantile(x, 0.05), hi, np.quantile(x, 0.01), hi
            else:
                lo95, hi95, lo99, hi99 = np.quantile(x, [0.025, 0.975, 0.005, 0.995])
            self.inside95[n] = bool(lo95 <= t <= hi95)
            self.inside99[n] = bool(lo99 <= t <= hi99)
            if not self.inside99[n] and self.reliable:
                self.findings.append(f"{n}: truth {truth[n]:g} outside the 99 % interval "
                                     f"[{lo99:.4g}, {hi99:.4g}] of a reliable result")


def _warnings(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines()
            if re.search(r"warn|WARNING|not the posterior|outside|piles", ln)]


def run_cli(args: list[str], timeout: float = 900.0):
    """``python -m xspec_sbi.cli ARGS`` with stdin from /dev/null, as a user's terminal run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    with open(os.devnull) as null:
        p = subprocess.run([sys.executable, "-m", "xspec_sbi.cli", *args], stdin=null,
                           capture_output=True, text=True, timeout=timeout, env=env)
    return p, time.perf_counter() - t0


def cli_fit(o: Outcome, spectrum: Path, model: str, priors: list[str], truth: dict, budget,
            extra=(), more_spectra=()) -> Outcome:
    out = spectrum.parent / f"out_{o.name}"
    args = ["fit", str(spectrum), *map(str, more_spectra), "--model", model, *sum((["--prior", p] for p in priors), []),
            "--sims", str(budget["sims"]), "--samples", str(budget["samples"]), "--seed", "1",
            "--out", str(out), "--workers", "1", "--quiet", *extra]
    if not budget["mcmc"]:
        args.append("--no-mcmc")
    p, o.seconds = run_cli(args)
    (spectrum.parent / f"cli_{o.name}.log").write_text(p.stdout + "\n--- stderr ---\n" + p.stderr)
    o.warnings = _warnings(p.stderr)
    if p.returncode != 0:
        o.error = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
        if "Traceback" in p.stderr:
            o.findings.append("traceback:\n" + p.stderr[-2000:])
        return o
    o.ran = True
    summary = json.loads((out / "summary.json").read_text())
    lc = summary.get("likelihood_correction") or {}
    o.ess_fraction, o.pareto_k = lc.get("ess_fraction", np.nan), lc.get("pareto_k", np.nan)
    o.reliable = lc.get("reliable")
    o.statistic = summary.get("statistic", "")
    npz = np.load(out / "posterior_samples.npz", allow_pickle=False)
    bounds = {p["name"]: (p["lower"], p["upper"]) for p in summary.get("priors", [])}
    o.judge([str(n) for n in npz["names"]], npz["samples"], truth, bounds)
    o.source = _samples_line(p.stdout)
    return o


def _samples_line(stdout: str) -> str:
    for ln in stdout.splitlines():
        if "samples" in ln.lower() and ("corrected" in ln.lower() or "chain" in ln.lower()
                                        or "network" in ln.lower()):
            return ln.strip()[:80]
    return ""


def api_fit(o: Outcome, spectrum: Path, model: str, prior: dict, truth: dict, budget,
            **kw) -> Outcome:
    import xspec_sbi
    t0 = time.perf_counter()
    try:
        session = xspec_sbi.Session.from_files(str(spectrum), model, **kw)
        r = xspec_sbi.sbi_fit(session, prior=prior, n_simulations=budget["sims"],
                              n_samples=budget["samples"], mcmc=budget["mcmc"], seed=1,
                              workers=1, progress=False)
    except Exception as exc:  # a user's script would stop here: the message is the finding
        o.error = f"{type(exc).__name__}: {exc}"
        o.seconds = time.perf_counter() - t0
        return o
    o.seconds = time.perf_counter() - t0
    return from_result(o, r, truth)


def from_result(o: Outcome, r, truth: dict) -> Outcome:
    """The outcome of an :class:`~xspec_sbi.result.SBIResult`: its check, warnings, intervals."""
    o.ran = True
    c = r.correction
    if c is not None:
        o.ess_fraction, o.pareto_k, o.reliable = c.ess_fraction, c.pareto_k, c.reliable
    o.statistic, o.source = r.statistic, r.samples_source
    o.warnings = [str(w) for w in (*(r.trust.bounds or ()), *getattr(r.trust, "background", ()))]
    o.judge(list(r.names), r.samples, truth, {p.name: (p.lower, p.upper) for p in r.prior.parameters})
    return o


# -- scenarios --------------------------------------------------------------------
def scenario_a(tmp: Path, budget) -> Outcome:
    o = Outcome("a", "tbabs*(diskbb+powerlaw), 5 free, bkg, wide log norms")
    truth = {"TBabs.nH": 0.5, "diskbb.Tin": 1.0, "diskbb.norm": 0.6,
             "powerlaw.PhoIndex": 2.0, "powerlaw.norm": 1.2e-3}
    spec = make_spectrum(tmp / "a", "src", "tbabs*(diskbb+powerlaw)", truth, seed=11,
                         background_counts=5000.0)
    priors = ["TBabs.nH=uniform:0.01:3", "diskbb.Tin=log:0.1:5", "diskbb.norm=log:0.01:1e5",
              "powerlaw.PhoIndex=uniform:0:4", "powerlaw.norm=log:1e-6:1"]
    return cli_fit(o, spec, "tbabs*(diskbb+powerlaw)", priors, truth, budget)


def scenario_b(tmp: Path, budget) -> Outcome:
    o = Outcome("b", "tbabs*(powerlaw+gaussian), narrow line, sigma frozen")
    truth = {"TBabs.nH": 1.0, "powerlaw.PhoIndex": 1.7, "powerlaw.norm": 1e-3,
             "gaussian.LineE": 6.4, "gaussian.Sigma": 0.01, "gaussian.norm": 5e-5}
    spec = make_spectrum(tmp / "b", "src", "tbabs*(powerlaw+gaussian)", truth, seed=12)
    fit_truth = {k: v for k, v in truth.items() if k != "gaussian.Sigma"}
    priors = ["TBabs.nH=uniform:0.01:5", "powerlaw.PhoIndex=uniform:0.5:3.5",
              "powerlaw.norm=log:1e-5:1e-1", "gaussian.LineE=uniform:6:7",
              "gaussian.norm=log:1e-7:1e-2"]
    return cli_fit(o, spec, "tbabs*(powerlaw+gaussian)", priors, fit_truth, budget,
                   extra=["--freeze", "gaussian.Sigma=0.01"])


def scenario_c(tmp: Path, budget) -> Outcome:
    o = Outcome("c", "faint: ~150 source counts on a comparable background")
    truth = {"TBabs.nH": 0.3, "powerlaw.PhoIndex": 1.8, "powerlaw.norm": 2.5e-6}
    spec = make_spectrum(tmp / "c", "src", "tbabs*powerlaw", truth, seed=13,
                         background_counts=1500.0, background_backscal=10.0)
    priors = ["TBabs.nH=uniform:0.01:3", "powerlaw.PhoIndex=uniform:0:4",
              "powerlaw.norm=log:1e-8:1e-3"]
    return cli_fit(o, spec, "tbabs*powerlaw", priors, truth, budget)


def scenario_d(tmp: Path, budget) -> Outcome:
    o = Outcome("d", "GROUPING + QUALITY=bad, --ignore '**-0.5 10.-** bad'")
    truth = {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 2.2, "powerlaw.norm": 5e-4}
    n = 239
    grouping = np.ones(n, dtype=int)
    for start in range(0, n, 3):      # three channels a bin (+1 starts a bin, -1 continues it)
        grouping[start + 1:start + 3] = -1
    quality = np.zeros(n, dtype=int)
    quality[:4] = 5                   # the lowest channels flagged bad, as a pipeline would
    quality[150:153] = 2
    spec = make_spectrum(tmp / "d", "src", "tbabs*powerlaw", truth, seed=14,
                         grouping=grouping, quality=quality)
    priors = ["TBabs.nH=uniform:0.01:3", "powerlaw.PhoIndex=uniform:0:4",
              "powerlaw.norm=log:1e-6:1e-1"]
    return cli_fit(o, spec, "tbabs*powerlaw", priors, truth, budget,
                   extra=["--ignore", "**-0.5 10.-** bad"])


def scenario_d2(tmp: Path, budget) -> Outcome:
    o = Outcome("d2", "channels: --ignore '**-**' --notice '0.4-9.0'")
    truth = {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 2.2, "powerlaw.norm": 5e-4}
    spec = make_spectrum(tmp / "d2", "src", "tbabs*powerlaw", truth, seed=19)
    priors = ["TBabs.nH=uniform:0.01:3", "powerlaw.PhoIndex=uniform:0:4",
              "powerlaw.norm=log:1e-6:1e-1"]
    # XSPEC's idiom: ignore everything, notice a band back; then channels by number
    return cli_fit(o, spec, "tbabs*powerlaw", priors, truth, budget,
                   extra=["--ignore", "**-**", "--notice", "0.4-9.0"])


def scenario_e(tmp: Path, budget) -> Outcome:
    o = Outcome("e", "nH true 0.01 at its prior's lower bound (sbi_fit)")
    truth = {"TBabs.nH": 0.01, "powerlaw.PhoIndex": 2.0, "powerlaw.norm": 1e-3}
    spec = make_spectrum(tmp / "e", "src", "tbabs*powerlaw", truth, seed=15)
    prior = {"TBabs.nH": ("uniform", 0.01, 3.0), "powerlaw.PhoIndex": ("uniform", 0, 4),
             "powerlaw.norm": ("log", 1e-6, 1e-1)}
    return api_fit(o, spec, "tbabs*powerlaw", prior, truth, budget, ignore="**-0.5 10.-**")


def scenario_f(tmp: Path, budget) -> list[Outcome]:
    """Bad inputs: each must fail in one line (exit 1 or 2) naming what is at fault, quickly."""
    folder = tmp / "f"
    folder.mkdir(parents=True, exist_ok=True)
    truth = {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 2.0, "powerlaw.norm": 1e-3}
    good = make_spectrum(folder, "src", "tbabs*powerlaw", truth, seed=16)
    from astropy.io import fits
    missing = folder / "missing_resp.pha"
    with fits.open(good) as hdul:
        hdul[1].header["RESPFILE"] = "nosuch.rmf"
        hdul.writeto(missing, overwrite=True)
    nobkg = folder / "missing_bkg.pha"
    with fits.open(good) as hdul:
        hdul[1].header["BACKFILE"] = "nosuch_bkg.pha"
        hdul.writeto(nobkg, overwrite=True)
    base = ["fit", "--sims", "200", "--samples", "200", "--no-mcmc", "--quiet", "--workers", "1"]
    cases = [
        ("f1", "missing RESPFILE", [str(missing), "-m", "tbabs*powerlaw"], ("nosuch.rmf",)),
        ("f2", "prior on a parameter not in the model",
         [str(good), "-m", "tbabs*powerlaw", "--prior", "bbody.kT=uniform:0.1:3"], ("bbody.kT",)),
        ("f3", "prior outside XSPEC's hard limits",
         [str(good), "-m", "tbabs*powerlaw", "--prior", "TBabs.nH=uniform:-1:3"], ("TBabs.nH",)),
        ("f4", "unknown model component", [str(good), "-m", "tbabs*powerlw2"], ("powerlw2",)),
        ("f5", "log prior with a zero lower bound",
         [str(good), "-m", "tbabs*powerlaw", "--prior", "powerlaw.norm=log:0:1"], ("powerlaw.norm",)),
        ("f6", "missing BACKFILE", [str(nobkg), "-m", "tbabs*powerlaw"], ("nosuch_bkg.pha",)),
        ("f7", "prior bounds reversed",
         [str(good), "-m", "tbabs*powerlaw", "--prior", "powerlaw.PhoIndex=uniform:3:1"],
         ("powerlaw.PhoIndex",)),
        ("f8", "garbled --ignore", [str(good), "-m", "tbabs*powerlaw", "--ignore", "**-0.5 ten-**"],
         ("--ignore",)),
        ("f9", "--freeze of an unknown parameter",
         [str(good), "-m", "tbabs*powerlaw", "--freeze", "TBabs.NH2=0.1"], ("TBabs.NH2",)),
    ]
    outcomes = [_rerun_refused(good, folder)]
    for name, what, args, must_name in cases:
        o = Outcome(name, f"bad input: {what}")
        out = folder / f"out_{name}"
        try:
            p, o.seconds = run_cli(base[:1] + args + base[1:] + ["--out", str(out)], timeout=120)
        except subprocess.TimeoutExpired:
            o.error, o.seconds = "HANG (no answer in 120 s)", 120.0
            o.findings.append(f"{what}: hangs")
            outcomes.append(o)
            continue
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        o.error = lines[-1] if lines else "(no message)"
        if p.returncode == 0:
            o.findings.append(f"{what}: accepted (exit 0)")
        elif p.returncode not in (1, 2):
            o.findings.append(f"{what}: exit status {p.returncode}")
        if "Traceback" in p.stderr:
            o.findings.append(f"{what}: traceback\n{p.stderr[-1500:]}")
        if p.returncode and not all(s.lower() in o.error.lower() for s in must_name):
            o.findings.append(f"{what}: the message does not name {', '.join(must_name)}")
        if out.exists():
            o.findings.append(f"{what}: left {out} behind")
        outcomes.append(o)
    return outcomes


def scenario_g(tmp: Path, budget) -> Outcome:
    o = Outcome("g", "AREASCAL 0.8, BACKSCAL column, bkg exposure x2.5")
    truth = {"TBabs.nH": 0.8, "powerlaw.PhoIndex": 1.5, "powerlaw.norm": 2e-4}
    spec = make_spectrum(tmp / "g", "src", "tbabs*powerlaw", truth, seed=17,
                         background_counts=6000.0, background_backscal=8.0, areascal=0.8,
                         background_exposure=2.5 * EXPOSURE_S, backscal_column=True)
    priors = ["TBabs.nH=uniform:0.01:5", "powerlaw.PhoIndex=uniform:0:4",
              "powerlaw.norm=log:1e-7:1e-1"]
    return cli_fit(o, spec, "tbabs*powerlaw", priors, truth, budget)


def scenario_h(tmp: Path, budget) -> Outcome:
    o = Outcome("h", "tbabs*(powerlaw+gaussian), 6 free (sigma too), sbi_fit")
    truth = {"TBabs.nH": 1.0, "powerlaw.PhoIndex": 1.7, "powerlaw.norm": 2e-3,
             "gaussian.LineE": 6.4, "gaussian.Sigma": 0.05, "gaussian.norm": 2e-4}
    spec = make_spectrum(tmp / "h", "src", "tbabs*(powerlaw+gaussian)", truth, seed=18)
    prior = {"TBabs.nH": ("uniform", 0.01, 5), "powerlaw.PhoIndex": ("uniform", 0.5, 3.5),
             "powerlaw.norm": ("log", 1e-5, 1e-1), "gaussian.LineE": ("uniform", 6.0, 7.0),
             "gaussian.Sigma": ("log", 1e-3, 0.5), "gaussian.norm": ("log", 1e-7, 1e-2)}
    return api_fit(o, spec, "tbabs*(powerlaw+gaussian)", prior, truth, budget,
                   ignore="**-0.5 10.-**")


def _rerun_refused(spectrum: Path, folder: Path) -> Outcome:
    """A second fit into the same --out is refused (exit 1), the first report left as it was."""
    o = Outcome("f0", "bad input: --out of an earlier report, no --overwrite")
    out = folder / "out_f0"
    args = ["fit", str(spectrum), "-m", "tbabs*powerlaw", "--prior", "powerlaw.norm=log:1e-5:1e-1",
            "--sims", "200", "--samples", "200",
            "--no-mcmc", "--quiet", "--workers", "1", "--restrict", "none", "--max-epochs", "20",
            "--out", str(out)]
    p, t_first = run_cli(args)
    if p.returncode != 0:
        o.error = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
        o.findings.append(f"the first small fit failed: {o.error}")
        return o
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    p, o.seconds = run_cli(args)
    o.error = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
    after = {f.name: f.read_bytes() for f in out.iterdir()}
    if p.returncode != 1:
        o.findings.append(f"second run into {out}: exit status {p.returncode}, not 1")
    if after != before:
        o.findings.append(f"second run into {out}: the earlier report changed")
    if "--overwrite" not in o.error:
        o.findings.append("the refusal does not mention --overwrite")
    return o


def scenario_j(tmp: Path, budget) -> Outcome:
    """Two observations of one source fitted jointly, one with a background, one without."""
    o = Outcome("j", "joint: 2 spectra (one with background), one model")
    truth = {"TBabs.nH": 0.4, "powerlaw.PhoIndex": 1.9, "powerlaw.norm": 3e-4}
    s1 = make_spectrum(tmp / "j", "obs1", "tbabs*powerlaw", truth, seed=31, background_counts=3000.0)
    s2 = make_spectrum(tmp / "j", "obs2", "tbabs*powerlaw", truth, seed=32, exposure=8000.0)
    priors = ["TBabs.nH=uniform:0.01:3", "powerlaw.PhoIndex=uniform:0:4",
              "powerlaw.norm=log:1e-6:1e-1"]
    return cli_fit(o, s1, "tbabs*powerlaw", priors, truth, budget, more_spectra=[s2])


def scenario_i(tmp: Path, budget) -> Outcome:
    """~30 counts and no background (cstat), through ``sbi_fit(spectra=..., model=...)``."""
    import xspec_sbi
    o = Outcome("i", "very faint, ~30 counts, no background, sbi_fit(spectra=)")
    truth = {"TBabs.nH": 0.1, "powerlaw.PhoIndex": 2.0, "powerlaw.norm": 2e-6}
    spec = make_spectrum(tmp / "i", "src", "tbabs*powerlaw", truth, seed=20)
    prior = {"TBabs.nH": ("uniform", 0.01, 3.0), "powerlaw.PhoIndex": ("uniform", 0, 4),
             "powerlaw.norm": ("log", 1e-8, 1e-3)}
    t0 = time.perf_counter()
    try:
        r = xspec_sbi.sbi_fit(spectra=str(spec), model="tbabs*powerlaw", ignore="**-0.3 10.-**",
                              prior=prior, n_simulations=budget["sims"], n_samples=budget["samples"],
                              mcmc=budget["mcmc"], seed=1, workers=1, progress=False)
    except Exception as exc:
        o.error, o.seconds = f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
        return o
    o.seconds = time.perf_counter() - t0
    return from_result(o, r, truth)


def scenario_k(tmp: Path, budget) -> Outcome:
    """W-stat on an ungrouped spectrum whose background leaves most bins empty: must be named."""
    o = Outcome("k", "W-stat, 239 ungrouped bins, 80 background counts (most bins empty)")
    truth = {"TBabs.nH": 0.4, "powerlaw.PhoIndex": 1.9, "powerlaw.norm": 3e-4}
    spec = make_spectrum(tmp / "k", "src", "tbabs*powerlaw", truth, seed=41, background_counts=80.0)
    prior = {"TBabs.nH": ("uniform", 0.01, 3.0), "powerlaw.PhoIndex": ("uniform", 0.0, 4.0),
             "powerlaw.norm": ("log", 1e-6, 1e-1)}
    o = api_fit(o, spec, "tbabs*powerlaw", prior, truth, budget)
    if o.ran and not any("background counts" in w for w in o.warnings):
        o.findings.append("W-stat with a mostly empty background was not named")
    return o


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "D": scenario_d2,
             "e": scenario_e, "f": scenario_f, "g": scenario_g, "h": scenario_h, "i": scenario_i,
             "j": scenario_j, "k": scenario_k}


def _fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small budgets: 2,000 simulations, no chain")
    ap.add_argument("--only", default="abcdDefghijk", help="scenarios to run, e.g. a,c (D: d2)")
    ap.add_argument("--keep", metavar="DIR", help="write the files and reports here (kept)")
    args = ap.parse_args(argv)
    budget = (dict(sims=2000, samples=2000, mcmc=False) if args.quick
              else dict(sims=10_000, samples=10_000, mcmc=True))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    chosen = [c for c in args.only.replace(",", "") if c in SCENARIOS]
    with tempfile.TemporaryDirectory(prefix="user_trials_") as scratch:
        tmp = Path(args.keep) if args.keep else Path(scratch)
        outcomes = []
        for key in chosen:
            (tmp / key).mkdir(parents=True, exist_ok=True)
            got = SCENARIOS[key](tmp, budget)
            got = got if isinstance(got, list) else [got]
            outcomes += got
            for o in got:
                print(f"[{o.name}] {o.what}: {'ran' if o.ran else 'error: ' + o.error} "
                      f"({o.seconds:.0f} s)", flush=True)
    print()
    print(f"{'':3} {'scenario':55} {'s':>5} {'stat':5} {'ESS%':>6} {'k':>5} {'rel':>5} "
          f"{'95%':>5} {'99%':>5} samples")
    for o in outcomes:
        n95 = f"{sum(o.inside95.values())}/{len(o.inside95)}" if o.inside95 else "-"
        n99 = f"{sum(o.inside99.values())}/{len(o.inside99)}" if o.inside99 else "-"
        print(f"{o.name:3} {o.what[:55]:55} {o.seconds:5.0f} {o.statistic:5} "
              f"{_fmt(100 * o.ess_fraction if o.ess_fraction == o.ess_fraction else None, '6.1f'):>6} "
              f"{_fmt(o.pareto_k, '5.2f'):>5} {str(o.reliable):>5} {n95:>5} {n99:>5} {o.source}")
        if not o.ran:
            print(f"      error: {o.error}")
        outside = [n for n, ok in o.inside95.items() if not ok]
        if outside:
            print(f"      truth outside 95 %: {', '.join(outside)}")
        for w in o.warnings[:6]:
            print(f"      warning: {w[:150]}")
    findings = [(o.name, f) for o in outcomes for f in o.findings]
    print("\nfindings:" if findings else "\nfindings: none")
    for name, f in findings:
        print(f"  [{name}] {f}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
