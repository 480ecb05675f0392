"""W-stat's bias where the background leaves bins empty: best fits of fake XMM-pn spectra by binning.

Each fake is ``tbabs*powerlaw`` (nH 0.3, PhoIndex 2, norm 1e-4) through the
real PN response, with fake source counts on the real PN background and a fake
background drawn from it (XSPEC's fakeit), fitted by W-stat from the truth with
the norm 30 % high. The same fakes' seeds for every binning. Prints, per binning:
noticed bins, the share of them with no background counts, and the mean and
scatter of the best-fit parameters (``xspec_sbi/checks/background.py`` quotes it).

    python scripts/wstat_background_bias.py [--fakes 12]
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from xspec_sbi.baseline.fit import fit
from xspec_sbi.data.spectrum import load_spectrum
from xspec_sbi.forward.simulate import fakeit_spectrum
from xspec_sbi.model.expression import Model
from xspec_sbi.presets.nicer import paper_grouping
from xspec_sbi.session import Session

PN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xmm_pn_ngc7793_ulx4" / "PN.pha"
BAND = "**-0.5 10.-**"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fakes", type=int, default=12)
    args = ap.parse_args(argv)
    raw = load_spectrum(str(PN))
    model = Model("tbabs*powerlaw").set(**{"TBabs.nH": 0.3, "powerlaw.PhoIndex": 2.0,
                                           "powerlaw.norm": 1e-4})
    truth = model.free_values()
    binnings = {"ungrouped": None, **{f"{g} channels a bin": g for g in (2, 3, 4, 6, 8)}}
    print("| binning | noticed bins | empty background | nH | PhoIndex | norm |")
    print("|---|---|---|---|---|---|")
    rows = [(name, dataclasses.replace(raw, grouping=None if g is None else paper_grouping(raw.n_channels, g),
                                       noticed=None).ignore(BAND)) for name, g in binnings.items()]
    rows.append(("the file's grouping", raw.ignore(BAND)))
    for name, spec in rows:
        rng = np.random.default_rng(3)
        best, empty = [], []
        for _ in range(args.fakes):
            session = Session((fakeit_spectrum(spec, model, truth, rng),), model)
            sim, x = session.simulator(), session.observed()
            empty.append(np.mean(x[sim.parts[0].n_bins:] == 0))
            best.append(fit(session.statistic_function(), truth * [1, 1, 1.3], [0, -3, 1e-8],
                            [10, 10, 1.0]).theta)
        best = np.array(best)
        m, s = best.mean(0), best.std(0)
        print(f"| {name} | {sim.parts[0].n_bins} | {100 * np.mean(empty):.0f} % | "
              + " | ".join(f"{a:.3g} ({b:.2g})" for a, b in zip(m, s)) + " |")


if __name__ == "__main__":
    main()
