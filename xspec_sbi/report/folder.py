"""Report folder of a result: JSON summary, samples, XSPEC chain files, figures, HTML page."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from xspec_sbi.files import atomic_folder, atomic_write_bytes
from xspec_sbi.report.html import report_page

__all__ = ["summary_dict", "write_report", "write_report_files"]


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, overwrite=True)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def summary_dict(result) -> dict:
    """Every number of a result as plain JSON types (the keys are listed in docs/REPORT.md).

    ``schema`` is :data:`xspec_sbi.result.RECORD_SCHEMA`; it changes when a key
    changes meaning or goes away (new keys alone leave it as it is).
    """
    from xspec_sbi.report.coverage import coverage_unavailable, report_coverage
    from xspec_sbi.report.status import check_lines, prior_rows, round_tables
    from xspec_sbi.result import RECORD_SCHEMA

    coverage = report_coverage(result)
    d = {
        "schema": RECORD_SCHEMA,
        "names": list(result.names),
        "parameters": {s.name: {"median": s.median, "lo68": s.lo68, "hi68": s.hi68,
                                "lo90": s.lo90, "hi90": s.hi90} for s in result.summaries},
        "statistic": result.statistic,
        "stat_at_median": result.stat_median,
        "stat_at_best_sample": result.stat_best,
        "best_sample": result.best_theta,
        "goodness": {"stat": result.goodness.cstat, "expected": result.goodness.expected,
                     "sigma": result.goodness.sigma, "deviation": result.goodness.deviation},
        "timings_s": result.timings,
        "settings": None if result.settings is None else result.settings.to_dict(),
        "trust": result.trust.to_dict(),
        "priors": [{"name": n, "kind": k, "lower": lo, "upper": hi, "unit": u,
                    "restricted_lower": rlo, "restricted_upper": rhi,
                    "mu": p.mu, "sigma": p.sigma, "description": p.describe()}
                   for (n, k, lo, hi, u, rlo, rhi), p in zip(prior_rows(result),
                                                              result.prior.parameters)],
        "checks": [c.to_dict() for c in check_lines(result, coverage, coverage_unavailable(result))],
        "coverage": None if coverage is None else coverage.to_dict(),
        "rounds": {title: [dict(zip(header, row)) for row in rows]
                   for title, header, rows in round_tables(result)},
        "fluxes": [f.to_dict() for f in result.fluxes],
    }
    if result.restriction is not None:
        r = result.restriction
        d["restriction"] = {"label": r.prior.label, "prior_mass": r.prior.mass,
                            "acceptance": r.prior.acceptance, "converged": r.converged,
                            "n_simulations": r.n_simulations}
    chain = result.chain_summaries()
    if chain is not None:
        d["mcmc"] = {s.name: {"median": s.median, "lo68": s.lo68, "hi68": s.hi68,
                              "lo90": s.lo90, "hi90": s.hi90} for s in chain}
        d["mcmc_fit_stat"] = result.chain_fit.stat
        d["mcmc_acceptance"] = result.chain.acceptance_fraction
        sd = result.chain.samples.std(axis=0)
        d["comparison"] = {
            s.name: {"median_difference_in_chain_sd": abs(s.median - c.median) / sd[i],
                     "width_ratio_68": (s.hi68 - s.lo68) / (c.hi68 - c.lo68)}
            for i, (s, c) in enumerate(zip(result.summaries, chain))}
    if result.correction is not None:
        c = result.correction
        d["likelihood_correction"] = {"ess_fraction": c.ess_fraction, "pareto_k": c.pareto_k,
                                      "log_evidence": c.log_evidence,
                                      "log_evidence_se": c.log_evidence_se,
                                      "reliable": c.reliable, "advice": c.advice,
                                      "warning": c.warning}
    return _jsonable(d)


# -- writing mechanics (files.atomic_folder): the report is all there or not at all ---------
def write_report(result, out, title: str = "xspec_sbi result", notes=(), overwrite: bool = True) -> Path:
    """Write the report folder ``out``: ``summary.json``, samples, chain files, figures, ``report.html``.

    The folder is built beside ``out`` and renamed into place when complete
    (:func:`xspec_sbi.files.atomic_folder`): an error or interrupt leaves
    ``out`` as it was, and an existing ``out`` is replaced as a whole (no
    stale file of an earlier run stays), or refused without ``overwrite``.

    Parameters
    ----------
    result : SBIResult
    out : path-like
        The report folder.
    title : str
        Page title.
    notes : sequence of str
        Notes shown at the top of the page (an approximation used, say).
    overwrite : bool
        Replace an existing folder ``out``.

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_report_files(result, tmp, title=title, notes=notes)
    return out


def write_report_files(result, out, title: str = "xspec_sbi result", notes=()) -> Path:
    """Write the report's files into the existing, empty folder ``out`` (see :func:`write_report`).

    For callers that hold the folder themselves (the command line takes it
    through :func:`~xspec_sbi.files.atomic_folder` before any simulation).
    """
    import matplotlib.pyplot as plt

    out = Path(out)
    overwrite = True       # a fresh folder: nothing there to protect
    summary = summary_dict(result)
    _atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
    buf = out / "posterior_samples.npz"
    tmp = out / ".posterior_samples.tmp.npz"
    np.savez(tmp, names=np.array(result.names), samples=result.samples, samples_raw=result.samples_raw)
    os.replace(tmp, buf)
    result.to_xspec_chain(out / "sbi_chain.fits", overwrite=overwrite)
    if result.chain is not None:
        from xspec_sbi.baseline.chainfile import write_chain_file
        params = {p.name: p for p in result.session.model.parameters}
        write_chain_file(out / "mcmc_chain.fits", result.chain.samples, result.chain.stat,
                         names=list(result.names), indices=[params[n].index for n in result.names],
                         units=[params[n].unit for n in result.names], walkers=result.chain.walkers,
                         burn=result.chain.burn, overwrite=overwrite)
    fig = result.plot_corner(out / "corner.png")
    plt.close(fig)
    fig = result.plot_spectrum(out / "spectrum.png")
    plt.close(fig)
    page = report_page(result, title, notes, out)
    _atomic_write(out / "report.html", page.encode())
    return out
