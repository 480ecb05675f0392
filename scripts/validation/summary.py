"""The short table of measured values against the issue's targets (README and report).

Every row is read from ``metrics.json``; a study that was not run gives no row,
and a miss is printed as a miss.
"""
from __future__ import annotations

import numpy as np


def _params(d: dict) -> dict:
    """The per-parameter entries of a comparison dict (skips c2st, flags, ...)."""
    return {k: v for k, v in d.items() if isinstance(v, dict) and "median_diff_sd" in v}


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def _fmt_range(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    return f"{lo:.3g}" if np.isclose(lo, hi) else f"{lo:.3g} to {hi:.3g}"


def _chain_rows(label, comp, targets):
    rows = []
    p = _params(comp)
    md = [v["median_diff_sd"] for v in p.values()]
    wr = [v["width_ratio"] for v in p.values()]
    lo, hi = targets["width_ratio"]
    rows.append((f"{label}: max abs(median diff) / chain sd", f"<= {targets['median_diff_sd']}",
                 f"{max(md):.3f}", _verdict(max(md) <= targets["median_diff_sd"])))
    rows.append((f"{label}: 68% width ratio SBI/chain", f"[{lo}, {hi}]", _fmt_range(wr),
                 _verdict(all(lo <= w <= hi for w in wr))))
    c2st = comp.get("c2st")
    rows.append((f"{label}: C2ST accuracy", f"<= {targets['c2st']}",
                 "n/a (too few distinct draws)" if c2st is None else f"{c2st:.3f}",
                 _verdict(None if c2st is None else c2st <= targets["c2st"])))
    return rows


def _regime_rows(metrics, targets):
    rows = []
    for key, m in metrics.get("regimes", {}).items():
        counts = key.split("_")[-1]
        lo, hi = targets["slope"]
        slopes = list(m["slopes"].values())
        gaussian = counts == "20000"
        rows.append((f"{counts} counts: regression slopes (500 test spectra)",
                     f"[{lo}, {hi}]" + ("" if gaussian else " (target: Gaussian regime)"),
                     _fmt_range(slopes),
                     _verdict(all(lo <= s <= hi for s in slopes)) if gaussian else "reported"))
        comp = m["sbi_vs_chain"]
        rows += _chain_rows(f"{counts} counts, SBI result (corrected: {comp.get('corrected')})", comp,
                            targets)
        if "network_alone" in comp:
            rows += _chain_rows(f"{counts} counts, network alone", comp["network_alone"], targets)
        tol = targets["coverage_tol"]
        worst = max(abs(v - float(level)) for level, d in m["coverage"].items() for v in d.values())
        rows.append((f"{counts} counts: coverage 68/90/95%, worst deviation", f"<= {tol}",
                     f"{worst:.3f}", _verdict(worst <= tol)))
        p_min = min(m["sbc_ks_pvalues"].values())
        rows.append((f"{counts} counts: SBC KS p-value, smallest", f"> {targets['sbc_ks_p']}",
                     f"{p_min:.3g}", _verdict(p_min > targets["sbc_ks_p"])))
        if counts == "2000":
            rows.append(("2000 counts: time of SBI path / chain (same run)", "reported",
                         f"{m['sbi_path_over_chain_time']:.2f}", "reported"))
    return rows


def _brief(comp) -> str:
    """'max median diff X sd, widths A to B, C2ST C' of a comparison with the chain."""
    p = _params(comp)
    c2st = comp.get("c2st")
    return (f"max median diff {max(v['median_diff_sd'] for v in p.values()):.2f} sd, widths "
            f"{_fmt_range([v['width_ratio'] for v in p.values()])}, C2ST "
            + ("n/a" if c2st is None else f"{c2st:.2f}"))


def _method_rows(metrics):
    rows = []
    mr = metrics.get("multiround")
    if mr:
        for label in ("single", "multi"):
            d = mr[label]
            what = ("single round, 20,000 simulations" if label == "single"
                    else f"multi-round, {mr['rounds']} x {mr['per_round']}")
            alone = d["vs_chain"].get("network_alone")
            rows.append((f"2000 counts, {what}: SBI result vs chain", "reported",
                         _brief(d["vs_chain"]) + (f" (network alone: {_brief(alone)})" if alone else "")
                         + f"; total {d['timings_s']['total']:.0f} s", "reported"))
    pca = metrics.get("pca")
    if pca:
        for label, d in pca.items():
            rows.append((f"PCA {label}: input dimension, training time, slopes", "reported",
                         f"{d['features']}, {d['timings_s']['training']:.0f} s, "
                         f"{_fmt_range(list(d['slopes'].values()))}; {_brief(d['vs_chain'])}", "reported"))
    ppc = metrics.get("ppc")
    if ppc:
        rows.append(("prior predictive check: bins of the observation inside the 95% band", "reported",
                     f"{100 * ppc['fraction_of_bins_inside_95_band']:.0f}%", "reported"))
    return rows


def _local_minima_rows(metrics):
    m = metrics.get("local_minima")
    if not m or "methods" not in m:
        return []
    methods = m["methods"]
    rows = []
    sbi = methods.get("sbi_best", {}).get("outlier_fraction")
    if sbi is not None:
        rows.append(("local minima: SBI best-sample outliers (dC > 1)", "<= 0.5%", f"{100 * sbi:.1f}%",
                     _verdict(sbi <= 0.005)))
    for name, d in methods.items():
        if name != "sbi_best" and isinstance(d, dict) and "outlier_fraction" in d:
            rows.append((f"local minima: {name.replace('_', ' ')} outliers", "reported",
                         f"{100 * d['outlier_fraction']:.1f}%", "reported"))
    return rows


def _real_data_rows(metrics, targets):
    m = metrics.get("real_data", {})
    setups = {k: v for k, v in m.items() if isinstance(v, dict) and "sbi_vs_chain" in v}
    setups.update({f"nicer_burst_{k}": v for k, v in m.get("nicer_bursts", {}).items()
                   if isinstance(v, dict) and "sbi_vs_chain" in v})
    rows = []
    for name, d in setups.items():
        comp = d["sbi_vs_chain"]
        p = _params(comp)
        md = max(v["median_diff_sd"] for v in p.values())
        wr = _fmt_range([v["width_ratio"] for v in p.values()])
        c2st = comp.get("c2st")
        good = (d.get("stat") or {}).get("chain_goodness") or {}
        dev = good.get("deviation_sigma")
        c = d.get("correction") or {}
        measured = (f"max median diff {md:.2f} sd, widths {wr}, C2ST "
                    + ("n/a" if c2st is None else f"{c2st:.2f}")
                    + f"; {d.get('statistic')} of the best fit "
                    + ("n/a" if dev is None else f"{dev:+.1f} sigma from expected")
                    + (f"; ESS {100 * c['ess_fraction']:.1f}%" if c.get("ess_fraction") is not None else "")
                    + ("" if c.get("reliable", True) else " (correction unreliable: network alone)"))
        ok = md <= targets["median_diff_sd"] and all(
            targets["width_ratio"][0] <= v["width_ratio"] <= targets["width_ratio"][1] for v in p.values())
        rows.append((f"real data, {name.replace('_', ' ')}: SBI result vs chain",
                     "as the reference spectrum", measured, _verdict(ok)))
        remedy = d.get("remedy_multi_round")
        if remedy and "sbi_vs_chain" in remedy:
            rc = remedy.get("correction") or {}
            rows.append((f"real data, {name.replace('_', ' ')}: after the advised remedy "
                         f"(multi-round {remedy['rounds']} x {remedy['simulations_per_round']})", "reported",
                         _brief(remedy["sbi_vs_chain"])
                         + (f"; ESS {100 * rc['ess_fraction']:.1f}%" if rc.get("ess_fraction") is not None else "")
                         + ("" if rc.get("reliable", True) else " (correction still unreliable)"),
                         "reported"))
    return rows


def _correction_rows(metrics, targets):
    rows = []
    for key, m in metrics.get("correction", {}).items():
        if not isinstance(m, dict) or "sbi_alone" not in m:
            continue
        counts, _, net = key.replace("counts_", "").partition("_")
        label = f"{counts} counts, {net.replace('_', '-')} network"
        for which in ("sbi_alone", "sbi_corrected"):
            p = _params(m[which])
            md = max(v["median_diff_sd"] for v in p.values())
            wr = _fmt_range([v["width_ratio"] for v in p.values()])
            rows.append((f"correction, {label}, {which.replace('_', ' ')}: max median diff / "
                         f"width ratio", "reported", f"{md:.2f} / {wr}", "reported"))
        rows.append((f"correction, {label}: ESS fraction, Pareto k", "reported",
                     f"{100 * m['ess_fraction']:.1f}%, {m['pareto_k']:.2f}"
                     + ("" if m["reliable"] else " (unreliable: flagged)"), "reported"))
    return rows


def summary_rows(metrics: dict) -> list[tuple[str, str, str, str]]:
    """(what, target, measured, verdict) rows for every target the run measured."""
    targets = metrics["targets"]
    return (_regime_rows(metrics, targets) + _method_rows(metrics) + _local_minima_rows(metrics)
            + _real_data_rows(metrics, targets) + _correction_rows(metrics, targets))


def summary_markdown(metrics: dict) -> str:
    """A Markdown table of :func:`summary_rows` with the run's mode and total time."""
    lines = ["| what | target | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(metrics)]
    seconds = metrics.get("seconds", {})
    lines += ["", f"Mode: {metrics.get('mode')}; study times (s): "
              + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
              + f"; total {sum(seconds.values()) / 60:.1f} min."]
    return "\n".join(lines)
