"""Figures from results only: corner plot (SBI over MCMC) and folded spectra."""
from __future__ import annotations

import numpy as np

__all__ = ["corner", "spectrum_plot", "track_plot"]

SBI_COLOR = "#2a9d8f"
MCMC_COLOR = "#e76f51"


def _figure(*args, **kw):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kw)


def _levels(h, fractions=(0.393, 0.865)):
    """Density thresholds enclosing the given probability (1 and 2 sigma in 2-D)."""
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / flat.sum()
    return sorted({flat[min(np.searchsorted(cum, f), flat.size - 1)] for f in fractions})


def corner(result, path=None, bins: int = 40):
    """Corner plot of ``result.samples`` over ``result.chain.samples`` when present."""
    sets = [("SBI-NPE", result.samples, SBI_COLOR)]
    if result.chain is not None:
        sets.append(("Goodman-Weare MCMC", result.chain.samples, MCMC_COLOR))
    k = len(result.names)
    fig, axes = _figure(k, k, figsize=(2.3 * k + 1, 2.3 * k + 1), squeeze=False)
    lo = np.min([np.quantile(s, 0.001, axis=0) for _, s, _ in sets], axis=0)
    hi = np.max([np.quantile(s, 0.999, axis=0) for _, s, _ in sets], axis=0)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            for label, s, color in sets:
                if i == j:
                    ax.hist(s[:, i], bins=bins, range=(lo[i], hi[i]), density=True,
                            histtype="step", color=color, label=label)
                else:
                    h, xe, ye = np.histogram2d(s[:, j], s[:, i], bins=bins,
                                               range=[[lo[j], hi[j]], [lo[i], hi[i]]])
                    if h.sum() > 0:
                        xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
                        ax.contour(xc, yc, h.T, levels=_levels(h), colors=color, linewidths=1)
            if i == k - 1:
                ax.set_xlabel(result.names[j], fontsize=8)
            if j == 0 and i > 0:
                ax.set_ylabel(result.names[i], fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def spectrum_plot(result, path=None):
    """Counts per keV with the SBI (median) and best-fit folded models, and residuals."""
    session = result.session
    stat = session.statistic_function()
    models = {"SBI median": np.array([s.median for s in result.summaries])}
    if result.chain_fit is not None:
        models["best fit"] = np.asarray(result.chain_fit.theta)
    folded = {k: stat.expected_counts(v[None, :]) for k, v in models.items()}
    n = len(session.spectra)
    fig, axes = _figure(2, n, figsize=(6.5 * n, 5.5), squeeze=False,
                        gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for c, spec in enumerate(session.spectra):
        lo, hi = spec.bin_energies()
        mid, width = 0.5 * (lo + hi), hi - lo
        data = spec.binned_counts()
        ax, rax = axes[0, c], axes[1, c]
        ax.errorbar(mid, data / width, xerr=width / 2, yerr=np.sqrt(np.maximum(data, 1)) / width,
                    fmt="none", ecolor="0.4", lw=0.8, label="data")
        for (label, mus), color in zip(folded.items(), (SBI_COLOR, MCMC_COLOR)):
            mu = mus[c][0]
            if spec.background is not None and session.spectra[c].background is not None:
                mu = mu + spec.background_scale() * spec.binned_background_counts()
            ax.step(hi, mu / width, where="pre", color=color, label=label)
            rax.step(hi, (data - mu) / np.sqrt(np.maximum(mu, 1e-9)), where="pre", color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("counts / keV")
        ax.set_title(spec.label, fontsize=9)
        ax.legend(fontsize=8)
        rax.axhline(0, color="0.5", lw=0.8)
        rax.set_xlabel("energy (keV)")
        rax.set_ylabel("(data-model)/sqrt(model)", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def track_plot(times, axis_label: str, summaries, parameters, title: str, path=None):
    """Parameter tracks of many spectra: posterior median and 68% interval against time or index.

    Parameters
    ----------
    times : array_like, (n_spectra,)
        x positions: seconds since the first spectrum, or the file index.
    axis_label : str
        x-axis label (with its unit).
    summaries : sequence of sequence of ParameterSummary
        Per spectrum, one summary per parameter (``median``, ``lo68``, ``hi68``).
    parameters : sequence of PriorParameter
        The box prior's parameters (``name``, ``unit``, ``kind``: log axes for log priors).
    title : str
    path : path-like, optional
        Save the figure there (PNG).
    """
    k = len(parameters)
    fig, axes = _figure(k, 1, figsize=(7, 1.9 * k + 1), sharex=True, squeeze=False)
    for i, (ax, p) in enumerate(zip(axes[:, 0], parameters)):
        med = np.array([s[i].median for s in summaries])
        lo = np.array([s[i].lo68 for s in summaries])
        hi = np.array([s[i].hi68 for s in summaries])
        ax.errorbar(times, med, yerr=[med - lo, hi - med], fmt="o", ms=3, capsize=2, color=SBI_COLOR)
        ax.set_ylabel(f"{p.name}" + (f" ({p.unit})" if p.unit else ""), fontsize=8)
        if p.kind == "log":
            ax.set_yscale("log")
    axes[-1, 0].set_xlabel(axis_label)
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
