"""Benchmark: fakeit spectra per second through the paper's NICER-like response.

Prints spectra/s for ``tbabs*powerlaw`` and ``tbabs*(powerlaw+bbodyrad)``,
in one process and in a process pool, and the ratio against a baseline run
in the same process: one direct XSPEC call per component and per spectrum,
folded with the same dense matrix (what a straightforward loop over XSPEC's
functions costs).

Then the case where the pool used to lose to one process (issue 12, item 8):
``tbabs*powerlaw`` through the XMM-pn response of ``../shared/data`` with its
background (~110 grouped bins, 220 outputs), ``--n-xmm`` spectra, one process
and the pool in the same run, with the ratio and a check that both give the
same spectra.

Usage: python scripts/bench_simulator.py [--n 20000] [--workers 2] [--n-xmm 100000] [--only-xmm]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from xspec_sbi.model import library as xslibrary
from xspec_sbi.forward.folding import build_transfer
from xspec_sbi.presets.nicer import find_nicer_arf, reference_spectrum
from xspec_sbi.forward.simulate import Simulator, make_pool, simulate
from xspec_sbi.model.expression import Model

PRIORS = {
    "tbabs*powerlaw": [(0.1, 0.3), (0.5, 2.5), (-2.0, 2.0)],                # norm in log10
    "tbabs*(powerlaw+bbodyrad)": [(0.15, 0.35), (1.0, 3.0), (-2.0, 1.0), (0.3, 3.0), (0.0, 5.0)],
}
LOG10 = {"tbabs*powerlaw": [2], "tbabs*(powerlaw+bbodyrad)": [2, 4]}


def draw(expr, n, rng):
    box = np.array(PRIORS[expr])
    theta = rng.uniform(box[:, 0], box[:, 1], size=(n, len(box)))
    theta[:, LOG10[expr]] = 10 ** theta[:, LOG10[expr]]
    return theta


def baseline(model, transfer, theta, rng):
    """One XSPEC call per component and spectrum, dense fold, Poisson draw."""
    edges = transfer.energy_edges
    dense = transfer.matrix if isinstance(transfer.matrix, np.ndarray) else transfer.matrix.toarray()
    out = np.empty((theta.shape[0], transfer.n_bins))
    for i, t in enumerate(theta):
        absorb = xslibrary.call_model("C_tbabs", edges, t[:1])
        flux = xslibrary.call_model("C_powerLaw", edges, t[1:2]) * t[2]
        if t.size == 5:
            flux = flux + xslibrary.call_model("C_bbodyrad", edges, t[3:4]) * t[4]
        out[i] = rng.poisson((absorb * flux) @ dense)
    return out


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


XMM_PN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xmm_pn_ngc7793_ulx4" / "PN.pha"


def xmm_case(n, workers, chunk):
    """One process against the pool on XMM-pn (cheap spectra: the transfer used to dominate)."""
    from xspec_sbi.data.spectrum import load_spectrum

    if not XMM_PN.is_file():
        print(f"\nXMM-pn case skipped: {XMM_PN} not found")
        return
    spec = load_spectrum(XMM_PN).ignore("**-0.3 10.-** bad")
    sim = Simulator.from_spectrum(spec, Model("tbabs*powerlaw"))
    rng = np.random.default_rng(3)
    theta = np.column_stack([rng.uniform(0.01, 1.0, n), rng.uniform(1.0, 3.0, n),
                             10 ** rng.uniform(-6, -3, n)])
    simulate(sim, theta[:2000], 1, None, chunk)                            # warm caches
    t0 = time.perf_counter()
    serial = simulate(sim, theta, 7, None, chunk)
    t_one = time.perf_counter() - t0
    with make_pool(sim, workers) as pool:
        simulate(sim, theta[:20000], 2, pool, chunk)                       # warm workers, measure cost
        t0 = time.perf_counter()
        pooled = simulate(sim, theta, 7, pool, chunk)
        t_pool = time.perf_counter() - t0
    if not np.array_equal(serial, pooled):
        raise SystemExit("XMM-pn case: the pool gave other spectra than one process for the same seed")
    print(f"\ntbabs*powerlaw, XMM-pn {XMM_PN.parent.name} with background: {spec.n_bins} bins "
          f"({sim.n_outputs} outputs), {n:,} spectra; load average {os.getloadavg()[0]:.1f}")
    print(f"  engine, 1 process:            {n / t_one:10,.0f} spectra/s")
    print(f"  engine, pool of {workers} processes: {n / t_pool:10,.0f} spectra/s"
          f"  (pool / one process = {t_one / t_pool:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="spectra per timing")
    ap.add_argument("--n-baseline", type=int, default=300, help="spectra for the baseline loop")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=256, help="spectra per seed block")
    ap.add_argument("--n-xmm", type=int, default=100_000, help="spectra for the XMM-pn case")
    ap.add_argument("--only-xmm", action="store_true", help="run the XMM-pn case only")
    args = ap.parse_args()
    if args.only_xmm:
        xmm_case(args.n_xmm, args.workers, args.chunk)
        return

    arf = find_nicer_arf()
    spec = reference_spectrum(20000)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"numpy {np.__version__}")
    print(f"response: {'NICER ARF ' + str(arf) if arf else 'built-in NICER-like table'} with "
          f"Gaussian redistribution; {spec.response.n_energies} energies, "
          f"{spec.response.n_channels} channels -> {spec.n_bins} noticed bins (0.3-10 keV, 5-channel groups)")
    rng = np.random.default_rng(0)
    for expr in PRIORS:
        model = Model(expr)
        sim = Simulator.from_spectrum(spec, model)
        theta = draw(expr, args.n, rng)
        simulate(sim, theta[:512], seed=1, chunk_size=args.chunk)          # warm caches
        t_one = timed(simulate, sim, theta, 1, None, args.chunk)
        full = build_transfer(spec, trim=False)
        sim_full = Simulator(model, full, sim.settings)
        t_full = timed(simulate, sim_full, theta[: args.n // 4], 1, None, args.chunk) * 4
        with make_pool(sim, args.workers) as pool:
            simulate(sim, theta[: 8 * args.chunk * args.workers], 2, pool, args.chunk)  # start workers
            t_pool = timed(simulate, sim, theta, 1, pool, args.chunk)
        nb = args.n_baseline
        t_base = timed(baseline, model, full, theta[:nb], np.random.default_rng(0)) * (args.n / nb)
        rate = lambda t: args.n / t
        print(f"\n{expr}  ({args.n} spectra, trimmed grid {sim.transfer.energy_edges.size - 1} energies)")
        print(f"  baseline (direct XSPEC call per component and spectrum): {rate(t_base):10,.0f} spectra/s")
        print(f"  engine, full energy grid, 1 process:                     {rate(t_full):10,.0f} spectra/s"
              f"  x{t_base / t_full:6.1f}")
        print(f"  engine, 1 process:                                       {rate(t_one):10,.0f} spectra/s"
              f"  x{t_base / t_one:6.1f}")
        print(f"  engine, pool of {args.workers} processes:                            "
              f"{rate(t_pool):10,.0f} spectra/s  x{t_base / t_pool:6.1f}")
    xmm_case(args.n_xmm, args.workers, args.chunk)


if __name__ == "__main__":
    main()
