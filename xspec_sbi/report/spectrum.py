"""The folded spectrum as XSPEC users plot it: rebinned for display, counts/s/keV, a model band.

``setplot rebin MINSIG MAXBINS`` in XSPEC combines adjacent bins *for the plot
only* until each plotted point reaches a significance of MINSIG or holds MAXBINS
bins; :func:`display_groups` does the same, and the fit, the statistic and every
number of the result stay on the original grouping. The model is drawn as the
posterior predictive band of the folded source model: the median and the 68 %
and 95 % ranges over posterior draws (no Poisson noise added: the band is the
model's uncertainty, the error bars are the data's).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["display_groups", "SpectrumPanel", "spectrum_panels", "spectrum_plot", "RESIDUALS"]

SBI_COLOR = "#2a9d8f"
MCMC_COLOR = "#e76f51"
DATA_COLOR = "0.15"
BKG_COLOR = "#8d99ae"
#: Residual kinds: XSPEC's ``plot delchi`` and ``plot ratio``.
RESIDUALS = ("delchi", "ratio")


def display_groups(signal, variance, min_significance: float = 5.0, max_bins: int = 20,
                   breaks=None) -> np.ndarray:
    """Start index of each display bin, as XSPEC's ``setplot rebin`` groups a plot.

    Adjacent bins are added until ``sum(signal) / sqrt(sum(variance))`` reaches
    ``min_significance`` or the group holds ``max_bins`` bins. A group never
    crosses a break (a gap in energy left by ``ignore``). A last group that
    falls short of both limits is merged into the one before it, unless a
    break separates them.

    Parameters
    ----------
    signal : ndarray (n,), counts
        Net counts per bin (source minus scaled background).
    variance : ndarray (n,), counts²
        Their variance (``counts + scale² background``).
    min_significance : float
        Target significance per display bin (sigma); 0 keeps the fit's bins.
    max_bins : int
        Most fit bins in one display bin, >= 1.
    breaks : ndarray (n,) of bool, optional
        True where a bin must start a new group.

    Returns
    -------
    ndarray (n_groups,) of int
        Indices of the first bin of each group, increasing, starting at 0
        (use with ``numpy.add.reduceat``).
    """
    signal = np.asarray(signal, dtype=float)
    variance = np.asarray(variance, dtype=float)
    n = signal.size
    if variance.shape != signal.shape:
        raise ValueError(f"display_groups: signal {signal.shape} and variance {variance.shape} differ")
    if int(max_bins) < 1:
        raise ValueError(f"display_groups: max_bins={max_bins!r} must be >= 1")
    if n == 0:
        return np.zeros(0, dtype=int)
    if min_significance <= 0:
        return np.arange(n)
    brk = np.zeros(n, dtype=bool) if breaks is None else np.asarray(breaks, dtype=bool).copy()
    brk[0] = True
    starts, is_open = [], False
    s = v = 0.0
    k = 0
    for i in range(n):
        if brk[i] or not is_open:
            starts.append(i)
            s = v = 0.0
            k, is_open = 0, True
        s += signal[i]
        v += variance[i]
        k += 1
        if k >= max_bins or (v > 0 and s / np.sqrt(v) >= min_significance):
            is_open = False
    # an unfinished last group joins the one before (not across a break)
    if is_open and len(starts) > 1 and not brk[starts[-1]]:
        starts.pop()
    return np.array(starts, dtype=int)


@dataclass(frozen=True, eq=False)
class SpectrumPanel:
    """The numbers one panel of the folded-spectrum figure draws (display bins).

    Attributes
    ----------
    title : str
    e_lo, e_hi : ndarray (m,), keV
        Edges of the display bins.
    rate, rate_err : ndarray (m,), counts/s/keV
        Net data (background subtracted when there is one) and its 1-sigma error.
    band : ndarray (5, m), counts/s/keV
        Folded source model over posterior draws: 2.5, 16, 50, 84, 97.5 % quantiles.
    best : ndarray (m,) or None, counts/s/keV
        Folded model at the best fit (C-stat minimisation), when it ran.
    background : ndarray (m,) or None, counts/s/keV
        Background scaled to the source region and exposure.
    n_fit_bins : int
        Bins of the fit (before display rebinning).
    """

    title: str
    e_lo: np.ndarray
    e_hi: np.ndarray
    rate: np.ndarray
    rate_err: np.ndarray
    band: np.ndarray
    best: np.ndarray | None
    background: np.ndarray | None
    n_fit_bins: int

    @property
    def edges(self) -> np.ndarray:
        """(m + 1,) keV, for ``stairs``; gaps (ignored ranges) are drawn as steps to zero."""
        return np.r_[self.e_lo, self.e_hi[-1]]

    def residuals(self, kind: str = "delchi"):
        """(value, error, band) of ``kind``: ``(data - model) / error`` or ``data / model``.

        The model is the band's median; ``band`` is the 95 % and 68 % model
        ranges in the same units, shape (4, m).
        """
        med = self.band[2]
        if kind == "delchi":
            err = np.where(self.rate_err > 0, self.rate_err, np.nan)
            return (self.rate - med) / err, np.ones_like(med), (self.band[[0, 4, 1, 3]] - med) / err
        if kind == "ratio":
            m = np.where(med > 0, med, np.nan)
            return self.rate / m, self.rate_err / m, self.band[[0, 4, 1, 3]] / m
        raise ValueError(f"residuals={kind!r}: choose one of {RESIDUALS}")


def _title(spec, i: int, n: int, expression: str) -> str:
    name = os.path.basename(spec.path) if spec.path else f"simulated spectrum ({expression}, no file)"
    if spec.path and spec.row is not None:
        name += f"{{{spec.row}}}"
    return name if n == 1 else f"{i + 1}/{n}: {name}"


def _draws(samples: np.ndarray, n_draws: int) -> np.ndarray:
    """Evenly spaced rows: no random draw, the same panel for the same result."""
    n = len(samples)
    return samples[np.unique(np.linspace(0, n - 1, min(n_draws, n)).astype(int))]


def spectrum_panels(result, min_significance: float = 5.0, max_bins: int = 20,
                    n_draws: int = 300) -> list[SpectrumPanel]:
    """The display-rebinned numbers of every spectrum of ``result`` (one panel each).

    Parameters
    ----------
    result : SBIResult
    min_significance, max_bins :
        ``setplot rebin`` limits (see :func:`display_groups`).
    n_draws : int
        Posterior draws folded for the band.
    """
    session = result.session
    stat = session.statistic_function()
    draws = _draws(np.asarray(result.samples), n_draws)
    mus = stat.expected_counts(draws)
    best = (None if result.chain_fit is None else
            stat.expected_counts(np.asarray(result.chain_fit.theta)[None]))
    panels = []
    # a grouped session names each panel's data group (its own parameter copy folds it)
    groups = getattr(session, "groups", None)
    for c, (spec, part) in enumerate(zip(session.spectra, stat.simulator.parts)):
        lo, hi = spec.bin_energies()
        data = spec.binned_counts()
        if part.has_background:
            scale = spec.background_scale()
            bkg = scale * spec.binned_background_counts()
            net, var = data - bkg, data + scale * bkg
        else:
            bkg, net, var = None, data, data.astype(float)
        breaks = np.r_[True, ~np.isclose(lo[1:], hi[:-1], rtol=1e-6)]
        starts = display_groups(net, var, min_significance, max_bins, breaks)
        ends = np.r_[starts[1:], lo.size] - 1
        e_lo, e_hi = lo[starts], hi[ends]
        per = 1.0 / (spec.exposure * (e_hi - e_lo))      # counts -> counts/s/keV

        def group(a):
            return np.add.reduceat(a, starts, axis=-1) * per

        band = np.quantile(group(mus[c]), [0.025, 0.16, 0.5, 0.84, 0.975], axis=0)
        panels.append(SpectrumPanel(
            _title(spec, c, len(session.spectra), session.model.expression)
            + ("" if groups is None else f" (data group {groups[c]})"), e_lo, e_hi,
            group(net), np.sqrt(np.add.reduceat(var, starts)) * per, band,
            None if best is None else group(best[c][0]), None if bkg is None else group(bkg),
            lo.size))
    return panels


def _figure(*args, **kw):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt.figure(*args, **kw)


def spectrum_plot(result, path=None, residuals: str = "delchi", min_significance: float = 5.0,
                  max_bins: int = 20, n_draws: int = 300):
    """Folded spectrum per spectrum: data in counts/s/keV, posterior model band, residuals.

    Parameters
    ----------
    result : SBIResult
    path : str or Path, optional
        PNG written here when given.
    residuals : {"delchi", "ratio"}
        Lower panel: ``(data - model) / error`` (XSPEC's ``delchi``) or
        ``data / model`` (``ratio``); the model is the band's median.
    min_significance, max_bins :
        Display rebinning, as XSPEC's ``setplot rebin`` (the fit is unchanged).
    n_draws : int
        Posterior draws folded for the band.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if residuals not in RESIDUALS:
        raise ValueError(f"residuals={residuals!r}: choose one of {RESIDUALS}")
    panels = spectrum_panels(result, min_significance, max_bins, n_draws)
    ncol = min(len(panels), 2)
    nrow = -(-len(panels) // ncol)
    width = 8.4 if ncol == 1 else 6.6      # one spectrum: the page's full width
    fig = _figure(figsize=(width * ncol, 0.8 * width * nrow))
    outer = fig.add_gridspec(nrow, ncol, hspace=0.32, wspace=0.22)
    for k, p in enumerate(panels):
        inner = outer[k // ncol, k % ncol].subgridspec(2, 1, height_ratios=[3, 1.2], hspace=0.0)
        ax = fig.add_subplot(inner[0])
        rax = fig.add_subplot(inner[1], sharex=ax)
        _draw_panel(ax, rax, p, residuals, result)
        ax.set_title(f"{p.title}\ndisplay rebinned to {min_significance:g} sigma or {max_bins} bins "
                     f"({p.n_fit_bins} fit bins -> {p.e_lo.size} points; fit unchanged)", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _draw_panel(ax, rax, p: SpectrumPanel, residuals: str, result) -> None:
    edges, mid = p.edges, 0.5 * (p.e_lo + p.e_hi)
    half = (mid - p.e_lo, p.e_hi - mid)
    ax.stairs(p.band[4], edges, baseline=p.band[0], fill=True, color=SBI_COLOR, alpha=0.18,
              lw=0, label="SBI posterior 95 %")
    ax.stairs(p.band[3], edges, baseline=p.band[1], fill=True, color=SBI_COLOR, alpha=0.35,
              lw=0, label="SBI posterior 68 %")
    ax.stairs(p.band[2], edges, baseline=None, color=SBI_COLOR, lw=1.4, label="SBI posterior median")
    if p.best is not None:
        ax.stairs(p.best, edges, baseline=None, color=MCMC_COLOR, lw=1.1, ls="--",
                  label=f"best fit ({result.statistic})")
    if p.background is not None:
        ax.errorbar(mid, p.background, xerr=half, fmt="none", ecolor=BKG_COLOR, lw=0.8,
                    label="background (scaled)")
    ax.errorbar(mid, p.rate, xerr=half, yerr=p.rate_err, fmt="o", ms=2.2, color=DATA_COLOR,
                ecolor=DATA_COLOR, lw=0.8, label="data" + (" (background subtracted)"
                                                           if p.background is not None else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    positive = p.rate[p.rate > 0]
    lo_y = min(positive.min() if positive.size else np.inf, p.band[0][p.band[0] > 0].min(initial=np.inf))
    if np.isfinite(lo_y):
        ax.set_ylim(bottom=0.5 * lo_y)
    ax.set_ylabel("counts s$^{-1}$ keV$^{-1}$")
    ax.legend(fontsize=7.5, loc="lower left", framealpha=0.85)
    ax.tick_params(labelbottom=False, labelsize=8)
    value, err, band = p.residuals(residuals)
    rax.stairs(band[1], edges, baseline=band[0], fill=True, color=SBI_COLOR, alpha=0.18, lw=0)
    rax.stairs(band[3], edges, baseline=band[2], fill=True, color=SBI_COLOR, alpha=0.35, lw=0)
    rax.axhline(0.0 if residuals == "delchi" else 1.0, color=SBI_COLOR, lw=1.0)
    rax.errorbar(mid, value, xerr=half, yerr=err, fmt="o", ms=2.2, color=DATA_COLOR,
                 ecolor=DATA_COLOR, lw=0.8)
    rax.set_ylabel("(data-model)/error" if residuals == "delchi" else "data/model", fontsize=8)
    rax.set_xlabel("energy (keV)")
    rax.tick_params(labelsize=8)
    finite = value[np.isfinite(value)]
    if finite.size:   # every point shown, but one wild point (capped) should not squash the rest
        centre = 0.0 if residuals == "delchi" else 1.0
        reach = np.abs(finite - centre) + (err[np.isfinite(value)] if residuals == "ratio" else 0)
        span = 1.15 * np.max(reach)
        span = min(max(span, 3.5 if residuals == "delchi" else 0.3), 8.0 if residuals == "delchi" else 1.5)
        rax.set_ylim(centre - span, centre + span)
        # a tick label at the top edge would sit on the spectrum's lowest one
        rax.set_yticks([t for t in rax.get_yticks() if abs(t - centre) < 0.9 * span])
