"""The checks of a result as status lines, and its priors, rounds and settings as table rows.

Each check gets one of four states with the number behind it. The limits are
the checks' own (PSIS's k threshold and the reliability flag of the likelihood
correction, the posterior predictive check's alpha, the out-of-distribution
check's quantiles); the Kaastra deviation and the chain comparison use the
limits written beside them here (a warning past them, a failure past twice the
median limit or the square of the width-ratio limits).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np

from xspec_sbi.result import describe_samples

__all__ = ["STATES", "CheckLine", "check_lines", "prior_rows", "settings_rows", "npe_rows", "round_tables"]

#: The states of a check, best first.
STATES = ("passed", "warning", "failed", "not computed")
#: |C - E[C]| / sigma of the Kaastra (2017) goodness: warning beyond, failed beyond.
GOODNESS_LIMITS = (2.0, 3.0)
#: SBI against the chain: largest |median difference| in chain sd, and 68 % width ratio range.
CHAIN_LIMITS = (0.2, (0.8, 1.25))


@dataclass(frozen=True)
class CheckLine:
    """One line of the status panel.

    Attributes
    ----------
    name : str
    state : str
        One of :data:`STATES`.
    value : str
        The number behind the state, formatted.
    detail : str
        What it means, or what to do (the check's own advice when it has one).
    """

    name: str
    state: str
    value: str
    detail: str = ""

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"check {self.name!r}: state {self.state!r} is not one of {STATES}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _na(name: str, why: str) -> CheckLine:
    return CheckLine(name, "not computed", "-", why)


def _answer_line(result) -> CheckLine:
    """What the SBI samples are: the check decides (see SBIResult.samples_source)."""
    rounds = getattr(result, "rounds", ())
    text = describe_samples(result)
    return CheckLine("SBI answer", text.state, f"{len(rounds)} round(s)" if rounds else "-", text.short)


def _correction_lines(c) -> list[CheckLine]:
    if c is None:
        why = "likelihood correction switched off (correct=False)"
        return [_na("likelihood correction", why), _na("effective sample size", why),
                _na("Pareto k", why)]
    state = "failed" if not c.reliable else "warning" if c.warning else "passed"
    lines = [CheckLine("likelihood correction", state,
                       "reliable: samples reweighted" if c.reliable else "unreliable: network samples kept",
                       c.warning or "importance weights by the exact Poisson likelihood")]
    from xspec_sbi.checks.importance import LOW_ESS_FRACTION
    # 100: importance_correct's default min_ess, below which the correction is never reliable
    ess_state = ("failed" if c.ess_smoothed < 100 else
                 "warning" if c.ess_fraction < LOW_ESS_FRACTION else "passed")
    lines.append(CheckLine("effective sample size", ess_state,
                           f"{100 * c.ess_fraction:.1f} % ({c.ess:.0f} of {c.n})",
                           f"below {100 * LOW_ESS_FRACTION:.0f} %: the network alone is far from "
                           "the exact posterior"))
    k = c.pareto_k
    k_state = ("not computed" if math.isnan(k) else "passed" if k < 0.5 else
               "warning" if k < c.k_threshold else "failed")
    lines.append(CheckLine("Pareto k", k_state, "nan" if math.isnan(k) else f"{k:.2f}",
                           f"PSIS tail shape; below 0.5 good, limit {c.k_threshold:.2f} for {c.n} draws"))
    return lines


def _goodness_line(name: str, g) -> CheckLine:
    if g is None:
        return _na(name, "no fit in this run")
    z = g.deviation
    state = ("not computed" if not np.isfinite(z) else "passed" if abs(z) <= GOODNESS_LIMITS[0]
             else "warning" if abs(z) <= GOODNESS_LIMITS[1] else "failed")
    return CheckLine(name, state, f"{g.cstat:.1f} vs {g.expected:.1f} +/- {g.sigma:.1f} ({z:+.2f} sigma)",
                     f"Kaastra (2017) expectation over {g.n_bins} bins; warning beyond "
                     f"{GOODNESS_LIMITS[0]:g} sigma, failed beyond {GOODNESS_LIMITS[1]:g}")


def _chain_line(result) -> CheckLine:
    chain = result.chain_summaries()
    if chain is None:
        return _na("SBI vs chain", "no chain in this run (joint fits skip it unless asked)")
    sd = result.chain.samples.std(axis=0)
    d = max(abs(s.median - c.median) / sd[i] if sd[i] > 0 else 0.0
            for i, (s, c) in enumerate(zip(result.summaries, chain)))
    ratios = [(s.hi68 - s.lo68) / (c.hi68 - c.lo68) for s, c in zip(result.summaries, chain)
              if c.hi68 > c.lo68]
    lo, hi = min(ratios, default=1.0), max(ratios, default=1.0)
    dmax, (rlo, rhi) = CHAIN_LIMITS
    ok = d <= dmax and rlo <= lo and hi <= rhi
    far = d > 2 * dmax or lo < rlo ** 2 or hi > rhi ** 2
    return CheckLine("SBI vs chain", "passed" if ok else "failed" if far else "warning",
                     f"|median difference| <= {d:.2f} chain sd; 68 % width ratio {lo:.2f}-{hi:.2f}",
                     f"passed below {dmax:g} sd and within {rlo:g}-{rhi:g}; failed beyond "
                     f"{2 * dmax:g} sd or outside {rlo ** 2:.2f}-{rhi ** 2:.2f}")


def check_lines(result, coverage=None, coverage_why: str | None = None) -> list[CheckLine]:
    """The status panel of ``result``: one line per check.

    Parameters
    ----------
    result : SBIResult
    coverage : ReportCoverage, optional
        Coverage measured for the report (:mod:`xspec_sbi.report.coverage`).
    coverage_why : str, optional
        Why coverage was not measured.
    """
    lines = _correction_lines(result.correction)
    lines.append(_answer_line(result))
    lines.append(_goodness_line("goodness of fit (best SBI sample)", result.goodness))
    if result.chain_goodness is not None:
        lines.append(_goodness_line("goodness of fit (best fit)", result.chain_goodness))
    ppc = result.trust.ppc
    if ppc is None:
        lines.append(_na("posterior predictive", getattr(result.trust, "ppc_not_computed", "") or "not run"))
    else:
        state = "failed" if ppc.flagged else "warning" if ppc.warning else "passed"
        lines.append(CheckLine("posterior predictive", state,
                               f"p = {ppc.p_value:.3f} +/- {ppc.p_value_se:.3f} ({ppc.n} draws)",
                               ppc.warning or f"fraction of replicated spectra fitting worse; "
                                              f"flagged below {ppc.alpha:g}"))
    for b in getattr(result.trust, "bounds", ()):
        lines.append(CheckLine("prior bound", "warning", b.split(":")[0], b))
    for b in getattr(result.trust, "background", ()):
        lines.append(CheckLine("W-stat background", "warning", b.split(": ")[0], b))
    ood = result.trust.ood
    if ood is None:
        lines.append(_na("out-of-distribution", "needs this call's training spectra "
                                                "(loaded network or multi-round run)"))
    else:
        lines.append(CheckLine("out-of-distribution", "failed" if ood.flagged else "passed",
                               f"total counts at quantile {ood.total_quantile:.3f}; shape at "
                               f"{ood.shape_quantile:.3f}",
                               ood.warning or "the observation looks like the training spectra"))
    r = result.restriction
    if r is not None and r.valid_fractions:
        lines.append(CheckLine("restricted prior", "passed" if r.converged else "warning",
                               f"valid fraction {r.valid_fractions[-1]:.2f} after "
                               f"{len(r.valid_fractions)} rounds, {r.n_simulations} simulations",
                               "the region reached its target valid fraction" if r.converged else
                               "the restriction did not reach its target valid fraction"))
    elif r is not None:
        lines.append(CheckLine("restricted prior", "passed", r.prior.label or "restricted prior",
                               f"prior mass {r.prior.mass:.3g}"))
    if coverage is not None:
        worst = max(((lvl, f) for lvl, row in zip(coverage.levels, coverage.fractions) for f in row),
                    key=lambda t: abs(t[1] - t[0]))
        lines.append(CheckLine("coverage of the network's intervals", coverage.state(),
                               f"largest miss: {100 * worst[1]:.0f} % inside a "
                               f"{100 * worst[0]:.0f} % interval",
                               f"{coverage.n_test} fresh simulations from {coverage.source}; passed "
                               "within 2 binomial standard errors"))
    else:
        lines.append(_na("coverage of the network's intervals", coverage_why or "not measured"))
    lines.append(_chain_line(result))
    return lines


def prior_rows(result) -> list[tuple]:
    """(name, kind, lower, upper, unit, restricted lower, restricted upper) per free parameter.

    The restricted columns are the sub-box the restricted prior lies in (None
    without a restriction); inside it, the restricted prior is the user's prior
    cut to the region its classifier accepts.
    """
    r = None if result.restriction is None else result.restriction.prior
    return [(p.name, p.kind, p.lower, p.upper, p.unit,
             None if r is None else float(r.lower[i]), None if r is None else float(r.upper[i]))
            for i, p in enumerate(result.prior.parameters)]


def _npe_fields(text: str) -> list[tuple[str, str]]:
    """``NPEConfig(a=1, b='x')`` -> [("a", "1"), ("b", "x")]; the repr itself when it is not one."""
    inner = re.fullmatch(r"\w+\((.*)\)", text or "", flags=re.S)
    if inner is None:
        return [("npe", text)]
    return [(k, v.strip("'\"")) for k, v in re.findall(r"(\w+)=('[^']*'|\"[^\"]*\"|[^,]+)", inner.group(1))]


def settings_rows(result) -> list[tuple[str, str]]:
    """The run record as (setting, value) rows; the estimator's settings come separately."""
    s = result.settings
    if s is None:
        return []
    sims = f"{s.n_simulations} training"
    if s.simulations_run != s.n_simulations:
        sims += f", {s.simulations_run} in all (restriction included)"
    rows = [("model", s.model), ("statistic", s.statistic), ("spectra", ", ".join(s.spectra)),
            ("restricted prior", s.restrict), ("simulations", sims), ("rounds", str(s.rounds)),
            ("seed", str(s.seed)), ("abundances / cross-sections", f"{s.abund} / {s.xsect}"),
            ("posterior draws", str(len(result.samples)))]
    if result.chain is not None:
        rows.append(("chain", f"{result.chain.walkers} walkers, burn {result.chain.burn}, "
                              f"{len(result.chain.samples)} samples, acceptance "
                              f"{float(np.mean(result.chain.acceptance_fraction)):.2f} (mean over walkers)"))
    if result.timings:
        rows.append(("time", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in s.versions.items())))
    rows.append(("record schema", str(s.to_dict().get("schema"))))
    return rows


def npe_rows(result) -> list[tuple[str, str]]:
    """The estimator's settings (``NPEConfig``) as (field, value) rows."""
    return [] if result.settings is None else _npe_fields(result.settings.npe)


def _as_row(obj) -> dict:
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                if np.ndim(getattr(obj, f.name)) == 0}
    if isinstance(obj, dict):
        return dict(obj)
    return {"value": obj}


def round_tables(result) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every set of adaptive rounds in ``result``.

    The restriction's rounds (valid fraction and threshold per round) and, when
    the result carries them, the rounds of sequential inference
    (``result.rounds``: records with ``to_dict`` or dataclasses; scalar fields
    shown).
    """
    out = []
    r = result.restriction
    if r is not None and r.valid_fractions:
        thr = list(r.thresholds) + [None] * (len(r.valid_fractions) - len(r.thresholds))
        out.append(("restricted prior", ["round", "valid fraction", "threshold"],
                    [[i + 1, f, t] for i, (f, t) in enumerate(zip(r.valid_fractions, thr))]))
    rounds = getattr(result, "rounds", None)
    if rounds:
        dicts = [_as_row(x) for x in rounds]
        header = ["round"] + [k for k in dicts[0] if k != "round"]
        out.append(("sequential inference", header,
                    [[d.get("round", i + 1)] + [d.get(k) for k in header[1:]] for i, d in enumerate(dicts)]))
    return out
