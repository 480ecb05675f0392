"""The paper's reference case end to end, on the embedded engine, in a few minutes.

A ``tbabs*powerlaw`` spectrum of ~2,000 counts (nH = 0.2, PhoIndex = 1.7,
norm = 1; wilm abundances) through the NICER-like response (the real NICER ARF
when ``../shared/data`` is present, a built-in table of it otherwise, with a
Gaussian redistribution: NICER's RMF is not available here), Table 1's prior
(model 1, log-uniform norm), a prior restricted to spectra of 1,000-10,000
counts, single-round NPE, the posterior beside a Goodman-Weare chain, and a
report folder.

Run: ``python -m xspec_sbi.demo [--out runs/demo] [--sims 10000] [--quick]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "reference_session"]

DEMO_TITLE = "xspec_sbi demo: the paper's reference spectrum"
DEMO_MARK = "xspec_sbi demo:"    # survives HTML escaping of the title


def reference_session(counts: float = 2000.0, seed: int = 1):
    """Session holding one fake observation of the paper's reference model."""
    from xspec_sbi.presets.nicer import REFERENCE_PARAMETERS, find_nicer_arf, reference_spectrum
    from xspec_sbi.session import Session
    from xspec_sbi.forward.simulate import fakeit_spectrum
    from xspec_sbi.model.library import XspecSettings, configure
    from xspec_sbi.model.expression import Model

    settings = XspecSettings("wilm", "vern")   # the paper's tbabs set-up
    configure(settings)
    model = Model("tbabs*powerlaw").set(**REFERENCE_PARAMETERS)
    template = reference_spectrum(counts, model=model)
    observed = fakeit_spectrum(template, model, model.free_values(), np.random.default_rng(seed))
    note = ("NICER-like response: real NICER ARF " + str(find_nicer_arf()) if find_nicer_arf()
            else "NICER-like response: built-in NICER area table") + \
        " with Gaussian redistribution (NICER's RMF is not available)"
    return Session((observed,), model, settings), note


def _refuse_out(out: Path, overwrite: bool) -> str | None:
    """Why ``out`` may not be replaced, checked before any simulation (None: it may).

    Running ``make demo`` again replaces the demo's earlier report; a folder
    holding anything else is the user's and is kept unless ``--overwrite``.
    """
    if overwrite or not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out}: exists and is a file, not a folder; choose another name"
    held = {p.name for p in out.iterdir()}
    if not held or _is_demo_report(out):
        return None
    shown = ", ".join(sorted(held)[:8]) + (", ..." if len(held) > 8 else "")
    return (f"--out {out}: folder exists and holds files that are not a demo report ({shown}); "
            "choose another folder or pass --overwrite to replace it as a whole")


def _is_demo_report(out: Path) -> bool:
    """An earlier demo's report: its summary.json and a page titled as the demo titles it."""
    try:
        json.loads((out / "summary.json").read_text())["schema"]
        return DEMO_MARK in (out / "report.html").read_text(errors="replace")
    except (OSError, ValueError, KeyError, TypeError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xspec_sbi.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="report folder (default runs/demo)")
    ap.add_argument("--sims", type=int, default=10_000, help="training simulations (default 10000)")
    ap.add_argument("--counts", type=float, default=2000.0, help="counts of the reference spectrum")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out folder whatever it holds")
    args = ap.parse_args(argv)
    refusal = _refuse_out(Path(args.out), args.overwrite)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2

    from xspec_sbi.api import sbi_fit
    from xspec_sbi.presets.table1 import table1_prior
    from xspec_sbi.report.folder import write_report

    session, note = reference_session(args.counts, seed=args.seed + 1)
    print(f"xspec_sbi demo: tbabs*powerlaw, {session.observed().sum():.0f} counts in "
          f"{session.spectra[0].n_bins} bins over 0.3-10 keV\n  {note}")
    quick = args.quick
    result = sbi_fit(
        session, prior=table1_prior(1), restrict=f"counts:{args.counts / 2:g}-{args.counts * 5:g}",
        n_simulations=2000 if quick else args.sims, n_samples=2000 if quick else 10_000,
        chain_length=8000 if quick else 50_000, chain_burn=1000 if quick else 5_000,
        seed=args.seed)
    print()
    print(result.table())
    out = write_report(result, args.out, title=DEMO_TITLE,
                       notes=[note])
    print(f"\nreport: {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
