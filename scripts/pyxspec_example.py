"""An ordinary PyXspec script, plus one call to xspec_sbi.sbi_fit().

Needs real PyXspec: HEASoft with PyXspec, initialised in the shell
(``source $HEADAS/headas-init.sh``) so that ``import xspec`` works::

    python scripts/pyxspec_example.py                  # the XMM PN spectrum of ../shared/data
    python scripts/pyxspec_example.py --data src.pha   # any spectrum with RESPFILE/ANCRFILE/BACKFILE

Against the XSPEC 12.9.1 / PyXspec 2.0.0 of ``../shared/pyxspec`` (``make
test`` unpacks it into ``.pyxspec/``; XSPEC writes ``$HOME/.xspec`` and may
prompt on stdin)::

    HOME=$(mktemp -d) bash -c 'source .pyxspec/heasoft/env.sh &&
        python scripts/pyxspec_example.py' </dev/null

The lines between "PyXspec as usual" and "one call" are what a PyXspec user
already writes; sbi_fit() then reads that session (spectra, notice states,
model, abundances, statistic), checks that the embedded engine folds the
model exactly as XSPEC does, trains the neural posterior, and compares it
with XSPEC's own fit, chain and C-stat. The session is left as it was, except
that ``load_chain=True`` leaves the SBI samples loaded in ``AllChains`` so that
XSPEC's ``error`` and ``flux ... err`` use them.

``--double`` runs the same lines against ``tests/pyxspec_double.py``, a TEST
DOUBLE of PyXspec backed by xspec_sbi's own engine, for a demonstration where
HEASoft is not installed. It is not PyXspec and not XSPEC: its output is NOT
evidence of compatibility with PyXspec or of agreement with XSPEC.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "xmm_pn_ngc7793_ulx4" / "PN.pha"


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="PHA file (default: %(default)s)")
    p.add_argument("--double", action="store_true",
                   help="run against the TEST DOUBLE of PyXspec (demonstration only, not PyXspec)")
    p.add_argument("--sims", type=int, default=5000, help="training simulations")
    p.add_argument("--samples", type=int, default=5000, help="posterior samples")
    p.add_argument("--chain-length", type=int, default=50000, help="chain samples (all walkers)")
    p.add_argument("--chain-burn", type=int, default=5000, help="chain burn-in (all walkers)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _pyxspec(double: bool):
    if not double:
        import xspec  # noqa: PLC0415 - real PyXspec
        return xspec
    sys.path.insert(0, str(REPO / "tests"))
    from pyxspec_double import PyXspecTestDouble  # noqa: PLC0415
    print("*** --double: running against the TEST DOUBLE of PyXspec (tests/pyxspec_double.py), "
          "backed by xspec_sbi's own engine. This is not PyXspec and not XSPEC: nothing below "
          "shows compatibility with either. ***\n", flush=True)
    return PyXspecTestDouble()


def main(argv=None) -> int:
    args = _arguments(argv)
    if not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such file")
    xspec = _pyxspec(args.double)
    import xspec_sbi  # noqa: PLC0415

    # XSPEC finds the response, ARF and background named in the header from here.
    os.chdir(args.data.parent)

    # --- PyXspec as usual -------------------------------------------------------
    xspec.Xset.chatter = 0
    xspec.AllData.clear()
    xspec.AllData(args.data.name)
    xspec.AllData.ignore("**-0.3 10.0-**")
    xspec.Model("tbabs*powerlaw")
    xspec.Fit.statMethod = "cstat"

    # --- one call -----------------------------------------------------------------
    result = xspec_sbi.sbi_fit(
        prior={"TBabs.nH": ("uniform", 0.0, 1.0), "powerlaw.PhoIndex": ("uniform", 1.0, 3.0),
               "powerlaw.norm": ("log", 1e-5, 1e-2)},   # photons keV^-1 cm^-2 s^-1 at 1 keV
        n_simulations=args.sims, n_samples=args.samples, chain_length=args.chain_length,
        chain_burn=args.chain_burn, load_chain=True, seed=args.seed,
        xspec=xspec if args.double else None)
    print(result.table())
    if args.double:
        print("\n*** produced with the TEST DOUBLE of PyXspec: not evidence of compatibility ***")
    return 0


if __name__ == "__main__":
    sys.exit(main())
