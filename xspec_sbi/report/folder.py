"""Report folder of a result: JSON summary, samples, XSPEC chain files, figures, HTML page."""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

import numpy as np

from xspec_sbi.files import atomic_folder, atomic_write_bytes

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
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def summary_dict(result) -> dict:
    """Every number of a result as plain JSON types."""
    d = {
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
    }
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


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


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
    page = _html(result, title, notes, out)
    _atomic_write(out / "report.html", page.encode())
    return out


def _html(result, title, notes, out: Path) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{s.median:.5g}</td><td>[{s.lo68:.4g}, {s.hi68:.4g}]</td>"
        + (f"<td>{c.median:.5g}</td><td>[{c.lo68:.4g}, {c.hi68:.4g}]</td>" if c else "")
        + "</tr>"
        for s, c in zip(result.summaries, result.chain_summaries() or [None] * len(result.summaries)))
    head = "<tr><th>parameter</th><th>SBI median</th><th>SBI 68%</th>" + (
        "<th>MCMC median</th><th>MCMC 68%</th>" if result.chain is not None else "") + "</tr>"
    settings = html.escape(json.dumps(_jsonable(None if result.settings is None else result.settings.to_dict()), indent=1))
    note_html = "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}.note{{color:#7a4b00}}</style>
</head><body>
<h1>{html.escape(title)}</h1>{note_html}
<h2>Posterior</h2><table>{head}{rows}</table>
<h2>Fit statistic and checks</h2><pre>{html.escape(result.table())}</pre>
<h2>Corner plot (SBI over MCMC)</h2>{_img(out / 'corner.png')}
<h2>Folded spectrum</h2>{_img(out / 'spectrum.png')}
<h2>Run settings and versions</h2><pre>{settings}</pre>
</body></html>
"""
