"""The report page: one self-contained HTML file with the figures embedded.

Sections, in the order a talk would show them: the posterior table, the checks
as a status panel, the folded spectrum (residuals as ``delchi`` or ``ratio``,
switched without scripts), the corner plot, the priors (table and marginals),
the calibration of the network, the adaptive rounds when there were any, and
the run settings as tables. Every section is a ``<section id=...>`` so that a
browser test can check each one rendered.
"""
from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np

from xspec_sbi.report.coverage import coverage_unavailable, report_coverage
from xspec_sbi.report.status import (STATES, check_lines, npe_rows, prior_rows, round_tables,
                                     settings_rows)

__all__ = ["report_page", "SECTIONS"]

#: ``id`` of every section the page always has (fluxes, rounds and XSPEC appear when present).
SECTIONS = ("posterior", "checks", "spectrum", "corner", "priors", "calibration", "settings")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:2em auto;
 padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:2px solid #e5e5ea;padding-bottom:.2em}
.sub{color:#555;margin-top:0}.note{color:#7a4b00;background:#fff6e5;padding:.4em .8em;border-radius:4px}
table{border-collapse:collapse;margin:.6em 0;font-size:.93em}
td,th{border:1px solid #d8d8dc;padding:4px 9px;text-align:right;vertical-align:top}
th{background:#f4f4f6}td.l,th.l{text-align:left}td{white-space:nowrap}
table.checks{width:100%}table.checks td{white-space:normal}table.checks td:last-child{color:#444}
table.settings td{white-space:normal}
.kv{display:grid;grid-template-columns:repeat(4,1fr);gap:3px 1.5em;font-size:.92em}
.kv b{font-weight:600;color:#444}
img{max-width:100%;display:block;margin:.6em 0}
.state{display:inline-block;min-width:7.5em;text-align:center;border-radius:10px;padding:1px 8px;
 font-weight:600;font-size:.9em}
.passed{background:#d8f3dc;color:#1b4332}.warning{background:#fff3bf;color:#7a4b00}
.failed{background:#ffd6d6;color:#8b1e1e}.not-computed{background:#ececef;color:#555}
.counts{margin:.4em 0 .8em}.counts span{margin-right:1em}
.toggle input{display:none}.toggle label{border:1px solid #bbb;border-radius:4px;padding:2px 10px;
 margin-right:.4em;cursor:pointer;font-size:.9em}
.toggle .fig{display:none}
#res-delchi:checked~label[for=res-delchi],#res-ratio:checked~label[for=res-ratio]{background:#2a9d8f;
 color:white;border-color:#2a9d8f}
#res-delchi:checked~.fig-delchi,#res-ratio:checked~.fig-ratio{display:block}
.cols{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
pre{background:#f6f6f8;padding:.8em;overflow:auto}
"""


def _img_bytes(data: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _img(path: Path) -> str:
    return _img_bytes(path.read_bytes(), path.stem)


def _figure_png(fig, path: Path) -> bytes:
    """PNG bytes of ``fig``, also written to ``path`` (the folder keeps every figure)."""
    import matplotlib.pyplot as plt

    from xspec_sbi.files import atomic_write_bytes
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue(), overwrite=True)
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}" if np.isfinite(v) else "-"
    return escape(str(v))


def _table(header, rows, left: int = 1, cls_name: str = "") -> str:
    """HTML table; the first ``left`` columns are text (left-aligned)."""
    def cls(i):
        return ' class="l"' if i < left else ""

    head = "<tr>" + "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(header)) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_fmt(v)}</td>" for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    attr = f' class="{cls_name}"' if cls_name else ""
    return f"<table{attr}>{head}{body}</table>"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{body}</section>\n'


def _posterior(result) -> str:
    chain = result.chain_summaries()
    header = ["parameter", "unit", "SBI median", "SBI 68 %", "SBI 90 %"]
    if chain:
        header += ["chain median", "chain 68 %", "|Δ median| / chain sd", "68 % width ratio"]
    rows = []
    for i, s in enumerate(result.summaries):
        row = [s.name, result.prior.parameters[i].unit or "-", f"{s.median:.5g}",
               f"[{s.lo68:.4g}, {s.hi68:.4g}]", f"[{s.lo90:.4g}, {s.hi90:.4g}]"]
        if chain:
            c = chain[i]
            sd = float(np.std(result.chain.samples[:, i]))
            row += [f"{c.median:.5g}", f"[{c.lo68:.4g}, {c.hi68:.4g}]",
                    f"{abs(s.median - c.median) / sd:.2f}" if sd > 0 else "-",
                    f"{(s.hi68 - s.lo68) / (c.hi68 - c.lo68):.2f}" if c.hi68 > c.lo68 else "-"]
        rows.append(row)
    which = ("network draws reweighted by the exact likelihood"
             if result.correction is not None and result.correction.reliable
             else "network draws (no reliable likelihood correction)")
    lines = [f"SBI samples: {len(result.samples)} {which}.",
             f"{result.statistic} at the SBI median {result.stat_median:.2f}, at the best SBI sample "
             f"{result.stat_best:.2f}" + (f", at the best fit {result.chain_fit.stat:.2f}"
                                          if result.chain_fit is not None else "") + "."]
    return _table(header, rows, left=2) + "".join(f"<p>{escape(t)}</p>" for t in lines)


def _checks(lines) -> str:
    counts = {s: sum(line.state == s for line in lines) for s in STATES}
    summary = '<div class="counts">' + "".join(
        f'<span class="state {s.replace(" ", "-")}">{n} {s}</span>'
        for s, n in counts.items() if n) + "</div>"
    rows = "".join(
        f'<tr><td class="l">{escape(c.name)}</td><td class="l"><span class="state '
        f'{c.state.replace(" ", "-")}">{escape(c.state)}</span></td><td class="l">{escape(c.value)}</td>'
        f'<td class="l">{escape(c.detail)}</td></tr>' for c in lines)
    return (summary + '<table class="checks"><colgroup><col style="width:19%"><col style="width:10%">'
            '<col style="width:31%"><col style="width:40%"></colgroup><tr><th class="l">check</th>'
            f'<th class="l">state</th><th class="l">value</th><th class="l">meaning</th></tr>{rows}</table>')


def _spectrum(result, out: Path) -> str:
    from xspec_sbi.report.spectrum import spectrum_plot
    ratio = _figure_png(spectrum_plot(result, residuals="ratio"), out / "spectrum_ratio.png")
    return ('<p>Data rebinned for display only, as XSPEC\'s <code>setplot rebin</code> (5 sigma or 20 '
            'bins per point); the band is the folded model over posterior draws.</p>'
            '<div class="toggle">'
            '<input type="radio" name="res" id="res-delchi" checked>'
            '<label for="res-delchi">residuals: (data-model)/error</label>'
            '<input type="radio" name="res" id="res-ratio"><label for="res-ratio">residuals: ratio</label>'
            f'<div class="fig fig-delchi">{_img(out / "spectrum.png")}</div>'
            f'<div class="fig fig-ratio">{_img_bytes(ratio, "spectrum_ratio")}</div></div>')


def _priors(result, out: Path) -> str:
    from xspec_sbi.report.plots import prior_marginals
    restricted = result.restriction is not None
    header = ["parameter", "prior", "lower", "upper", "unit"]
    header += ["restricted: lower", "restricted: upper"] if restricted else []
    # the prior column in words (kind, mean and sigma of a Gaussian), as the result table has it
    rows = [[r[0], p.describe()] + list(r[2:5]) + (list(r[5:]) if restricted else [])
            for r, p in zip(prior_rows(result), result.prior.parameters)]
    rows = [r[:4] + [r[4] or "-"] + r[5:] for r in rows]
    text = ""
    if restricted:
        p = result.restriction.prior
        how = result.settings.restrict if result.settings is not None else "a region"
        text = (f"<p>The network was trained on your prior restricted by <code>{escape(how)}</code>: "
                f"{100 * p.mass:.3g} % of your prior's mass. The restricted columns bound the region; "
                "inside them, a classifier decides.</p>")
    fig = _figure_png(prior_marginals(result), out / "priors.png")
    return _table(header, rows, left=2) + text + _img_bytes(fig, "priors")


def _calibration(result, coverage, why) -> str:
    if coverage is None:
        return f"<p>Not computed: {escape(why)}.</p>"
    header = ["interval"] + [f"{n}" for n in coverage.names] + ["expected ± 1 s.e."]
    rows = [[f"{100 * lvl:.0f} %"] + [f"{100 * f:.0f} %" for f in row]
            + [f"{100 * lvl:.0f} ± {100 * coverage.standard_error(lvl):.0f} %"]
            for lvl, row in zip(coverage.levels, coverage.fractions)]
    return (f"<p>Fraction of {coverage.n_test} fresh simulations (parameters from {escape(coverage.source)}, "
            f"seed {coverage.seed}; {coverage.n_samples} network draws each, no likelihood correction) "
            "whose true value lies in the network's central interval. Computed for this report: "
            "the training's validation split is not kept in the result.</p>" + _table(header, rows))


def _fluxes(result) -> str:
    header = ["quantity", "band (keV)", "unit", "median", "68 %", "90 %", "set to 1"]
    rows = []
    for f in result.fluxes:
        band = f"{f.band[0]:g}-{f.band[1]:g}"
        absorbers = ", ".join(f.absorbers) or "-"
        if hasattr(f, "luminosity"):
            what = [("luminosity" + (" (unabsorbed)" if f.unabsorbed else "") + f" at z = {f.redshift:g}",
                     "erg/s", f.luminosity)]
            band += " (source)"
        else:
            what = [("energy flux" + (" (unabsorbed)" if f.unabsorbed else ""), "erg/cm²/s", f.energy),
                    ("photon flux" + (" (unabsorbed)" if f.unabsorbed else ""), "photons/cm²/s", f.photon)]
        rows += [[name, band, unit, f"{q.median:.4g}", f"[{q.lo68:.4g}, {q.hi68:.4g}]",
                  f"[{q.lo90:.4g}, {q.hi90:.4g}]", absorbers] for name, unit, q in what]
    notes = [line.strip() for f in result.fluxes for line in f.lines()[1:] if line.startswith("  (")]
    lum = [f for f in result.fluxes if hasattr(f, "luminosity")]
    if lum:
        notes.append(f"Luminosities: cosmology {lum[0].cosmology} (XSPEC's cosmo), exact luminosity distance.")
    return (_table(header, rows, left=3) + f"<p>From the {result.fluxes[0].n_draws} SBI samples, as "
            "XSPEC's <code>flux ... err</code> and <code>lumin ... err</code>.</p>"
            + "".join(f"<p>{escape(n)}</p>" for n in notes))


def _rounds(result) -> str:
    return "".join(f"<h3>{escape(title)}</h3>" + _table(header, rows)
                   for title, header, rows in round_tables(result))


def _settings(result) -> str:
    # the estimator's ~20 settings as a grid of "name value" cells: a two-column table of them
    # would be longer than the rest of the page's tables together
    npe = "".join(f"<div><b>{escape(k)}</b> {escape(v)}</div>" for k, v in npe_rows(result))
    return ("<h3>run</h3>" + _table(["setting", "value"], settings_rows(result), left=2, cls_name="settings")
            + f'<h3>estimator (NPEConfig)</h3><div class="kv">{npe}</div>')


def report_page(result, title: str, notes, out) -> str:
    """The report page of ``result`` (HTML text); figures not yet in ``out`` are written there.

    Parameters
    ----------
    result : SBIResult
    title : str
    notes : sequence of str
        Shown under the title (e.g. what the response is).
    out : Path
        The report folder; ``corner.png`` and ``spectrum.png`` must be in it.

    Returns
    -------
    str
    """
    out = Path(out)
    coverage, why = report_coverage(result), coverage_unavailable(result)
    s = result.settings
    sub = "" if s is None else (f"{escape(s.model)} · {escape(s.statistic)} · "
                                f"{len(s.spectra)} spectrum{'s' if len(s.spectra) != 1 else ''} · "
                                f"{s.n_simulations} simulations · seed {s.seed}")
    notes_html = "".join(f"<p class=note>{escape(n)}</p>" for n in notes)
    body = [_section("posterior", "Posterior", _posterior(result)),
            _section("checks", "Checks", _checks(check_lines(result, coverage, why)))]
    if result.fluxes:
        body.append(_section("fluxes", "Fluxes and luminosities", _fluxes(result)))
    body += [
            _section("spectrum", "Folded spectrum", _spectrum(result, out)),
            _section("corner", "Corner plot: SBI posterior over the chain", _img(out / "corner.png")),
            _section("priors", "Priors", _priors(result, out)),
            _section("calibration", "Calibration of the network", _calibration(result, coverage, why))]
    rounds = _rounds(result)
    if rounds:
        body.append(_section("rounds", "Adaptive rounds", rounds))
    if result.xspec is not None:
        body.append(_section("xspec", "XSPEC's own answer", f"<pre>{escape(str(result.xspec))}</pre>"))
    body.append(_section("settings", "Run settings and versions", _settings(result)))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1><p class="sub">{sub}</p>{notes_html}
{''.join(body)}<p class="sub" style="margin-top:2em">Numbers: <code>summary.json</code>
(keys in docs/REPORT.md); samples:
<code>posterior_samples.npz</code>; XSPEC chain files: <code>sbi_chain.fits</code>{
', <code>mcmc_chain.fits</code>' if result.chain is not None else ''}.</p>
</body></html>
"""
