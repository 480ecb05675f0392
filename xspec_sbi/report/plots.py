"""Figures from results only: corner plot (SBI over the chain) and the prior marginals.

The folded spectrum lives in :mod:`xspec_sbi.report.spectrum`.
"""
from __future__ import annotations

import numpy as np

from xspec_sbi.report.spectrum import MCMC_COLOR, SBI_COLOR, spectrum_plot

__all__ = ["corner", "prior_marginals", "spectrum_plot", "axis_label", "SBI_COLOR", "MCMC_COLOR",
           "track_plot"]

BEST_COLOR = "0.1"
USER_PRIOR_COLOR = "0.45"
RESTRICTED_COLOR = "#6a4c93"


def _figure(*args, **kw):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kw)


def axis_label(result, i: int) -> str:
    """``name (unit)`` of free parameter ``i``, as the prior records it."""
    unit = result.prior.parameters[i].unit
    return f"{result.names[i]} ({unit})" if unit else result.names[i]


def _levels(h, fractions=(0.393, 0.865)):
    """Density thresholds enclosing the given probability (1 and 2 sigma in 2-D)."""
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / flat.sum()
    return sorted({flat[min(np.searchsorted(cum, f), flat.size - 1)] for f in fractions})


def _best(result):
    """(theta, label): the C-stat best fit when the chain ran, else the best SBI sample."""
    if result.chain_fit is not None:
        return np.asarray(result.chain_fit.theta, dtype=float), f"best fit ({result.statistic} minimisation)"
    return np.asarray(result.best_theta, dtype=float), f"best SBI sample (lowest {result.statistic})"


def corner(result, path=None, bins: int = 40):
    """Lower-triangle corner plot of the SBI samples over the chain, medians and best fit marked.

    Parameters
    ----------
    result : SBIResult
    path : str or Path, optional
        PNG written here when given.
    bins : int
        Histogram bins per axis.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from scipy.ndimage import gaussian_filter

    sets = [("SBI posterior", result.samples, SBI_COLOR, "-")]
    if result.chain is not None:
        sets.append(("Goodman-Weare chain", result.chain.samples, MCMC_COLOR, "--"))
    best, best_label = _best(result)
    k = len(result.names)
    size = max(2.6 * k, 4.5)
    fig, axes = _figure(k, k, figsize=(size, size), squeeze=False)
    lo = np.min([np.quantile(s, 0.002, axis=0) for _, s, _, _ in sets] + [best], axis=0)
    hi = np.max([np.quantile(s, 0.998, axis=0) for _, s, _, _ in sets] + [best], axis=0)
    pad = 0.04 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    medians = [np.median(s, axis=0) for _, s, _, _ in sets]
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                fig.delaxes(ax)     # lower triangle only: no empty frames
                continue
            for (label, s, color, ls), med in zip(sets, medians):
                if i == j:
                    ax.hist(s[:, i], bins=bins, range=(lo[i], hi[i]), density=True,
                            histtype="step", color=color, ls=ls, lw=1.3)
                    ax.axvline(med[i], color=color, ls=ls, lw=1.0)
                else:
                    # fewer bins and a one-bin Gaussian smoothing for small sample sets:
                    # contours of a raw 40x40 histogram of 500 draws are islands
                    nb = int(np.clip(np.sqrt(len(s)) / 2, 12, bins))
                    h, xe, ye = np.histogram2d(s[:, j], s[:, i], bins=nb,
                                               range=[[lo[j], hi[j]], [lo[i], hi[i]]])
                    h = gaussian_filter(h, 1.0)
                    if h.sum() > 0:
                        xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
                        ax.contour(xc, yc, h.T, levels=_levels(h), colors=color, linewidths=1.1,
                                   linestyles=ls)
                    ax.plot(med[j], med[i], "o", color=color, ms=4, mec="white", mew=0.5)
            if i == j:
                ax.axvline(best[i], color=BEST_COLOR, ls=":", lw=1.2)
                ax.set_yticks([])
                s0 = result.summaries[i]
                ax.set_title(f"{s0.median:.4g} +{s0.hi68 - s0.median:.2g} -{s0.median - s0.lo68:.2g}",
                             fontsize=8, color=SBI_COLOR)
            else:
                ax.plot(best[j], best[i], "*", color=BEST_COLOR, ms=9, mec="white", mew=0.6)
                ax.set_ylim(lo[i], hi[i])
            ax.set_xlim(lo[j], hi[j])
            if i == k - 1:
                ax.set_xlabel(axis_label(result, j), fontsize=9)
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(axis_label(result, i), fontsize=9)
            elif j > 0:
                ax.tick_params(labelleft=False)
            ax.tick_params(labelsize=7)
            for t in ax.get_xticklabels():
                t.set_rotation(35)
    handles = [Line2D([], [], color=c, ls=ls, lw=1.3, label=f"{label} (median: dot / line)")
               for label, _, c, ls in sets]
    handles.append(Line2D([], [], color=BEST_COLOR, ls=":", marker="*", ms=9, label=best_label))
    handles.append(Line2D([], [], color="none", label="contours: 39 % and 86 % (1 and 2 sigma in 2-D)"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False,
               bbox_to_anchor=(0.98, 0.98))
    fig.subplots_adjust(left=0.12, bottom=0.12, right=0.97, top=0.95, wspace=0.06, hspace=0.06)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def prior_marginals(result, path=None, n_draws: int = 4000, seed: int = 0, bins: int = 60):
    """The user's prior, the restricted prior the network was trained on, and the posterior, per parameter.

    Parameters
    ----------
    result : SBIResult
    path : str or Path, optional
        PNG written here when given.
    n_draws : int
        Draws from the restricted prior (rejection sampling, seeded with ``seed``).
    seed : int
        Seeds those draws only; the result is not touched.
    bins : int

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Log-uniform parameters are drawn on a log axis with densities per unit of
    ``ln(theta)``, so the user's uniform or log-uniform prior is a flat line; a
    Gaussian prior is its density, on mu +- 5 sigma and the posterior draws. Each
    curve is scaled to a peak of 1: a posterior a hundred times narrower than
    the prior stays readable beside it.
    """
    prior = result.prior
    restricted = None if result.restriction is None else result.restriction.prior
    draws = None if restricted is None else restricted.sample(n_draws, rng=seed)
    k = prior.n_dim
    ncol = min(k, 3)
    nrow = -(-k // ncol)
    fig, axes = _figure(nrow, ncol, figsize=(4.4 * ncol, 3.2 * nrow), squeeze=False)
    for i, p in enumerate(prior.parameters):
        ax = axes[i // ncol, i % ncol]
        log = p.kind == "log"
        g = np.log if log else (lambda t: t)
        xlo, xhi = _axis_range(p, np.asarray(result.samples)[:, i])
        glo, ghi = g(xlo), g(xhi)
        edges = np.linspace(glo, ghi, bins + 1)
        x_edges = np.exp(edges) if log else edges
        if p.kind == "gauss":
            mid = 0.5 * (edges[1:] + edges[:-1])
            dens = np.exp(-0.5 * ((mid - p.mu) / p.sigma) ** 2)
            shape = dens / max(dens.max(), 1e-300)
        else:
            shape = np.ones(bins)
        ax.stairs(shape, x_edges, color=USER_PRIOR_COLOR, lw=1.5,
                  label=f"your prior ({p.kind})")
        if draws is not None:
            h, _ = np.histogram(g(draws[:, i]), bins=edges)
            ax.stairs(h / max(h.max(), 1), x_edges, color=RESTRICTED_COLOR, fill=True, alpha=0.35,
                      lw=0, label="restricted prior (training)")
        h, _ = np.histogram(g(np.asarray(result.samples)[:, i]), bins=edges)
        ax.stairs(h / max(h.max(), 1), x_edges, baseline=None, color=SBI_COLOR, lw=1.3,
                  label="SBI posterior")
        if log:
            ax.set_xscale("log")
        ax.set_xlim(xlo, xhi)
        ax.set_ylim(0, 1.12)
        ax.set_xlabel(axis_label(result, i), fontsize=9)
        ax.set_ylabel("density, peak = 1" + (" (per ln unit)" if log else ""), fontsize=8)
        ax.tick_params(labelsize=8)
    for j in range(k, nrow * ncol):
        fig.delaxes(axes[j // ncol, j % ncol])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    if draws is None:
        fig.text(0.99, 0.99, "no restriction in this run", ha="right", va="top", fontsize=8, color="0.4")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _axis_range(p, samples: np.ndarray) -> tuple[float, float]:
    """The x range of one parameter's panel: its bounds, but for a Gaussian prior (whose default
    bounds are XSPEC's hard limits, 0 to 1e6 for an nH) mu +- 5 sigma and the posterior draws."""
    if p.kind != "gauss":
        return p.lower, p.upper
    lo = min(p.mu - 5 * p.sigma, float(np.min(samples)))
    hi = max(p.mu + 5 * p.sigma, float(np.max(samples)))
    return max(lo, p.lower), min(hi, p.upper)


def track_plot(times, x_label: str, summaries, parameters, title: str, path=None):
    """Parameter tracks of many spectra: posterior median and 68% interval against time or index.

    Parameters
    ----------
    times : array_like, (n_spectra,)
        x positions: seconds since the first spectrum, or the file index.
    x_label : str
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
    axes[-1, 0].set_xlabel(x_label)
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
