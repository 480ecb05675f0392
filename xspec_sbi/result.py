"""The result of :func:`xspec_sbi.sbi_fit`: posterior samples beside XSPEC's chain and C-stat."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ParameterSummary", "summarize", "SBIResult"]


@dataclass(frozen=True)
class ParameterSummary:
    """Median and central intervals of one parameter's samples (parameter units)."""

    name: str
    median: float
    lo68: float
    hi68: float
    lo90: float
    hi90: float

    def __str__(self) -> str:
        return f"{self.name} = {self.median:.4g} (+{self.hi68 - self.median:.3g} -{self.median - self.lo68:.3g})"


def summarize(names, samples: np.ndarray) -> tuple[ParameterSummary, ...]:
    """Median, 68 % and 90 % central intervals of each column of ``samples`` (n, k)."""
    q = np.quantile(samples, [0.5, 0.16, 0.84, 0.05, 0.95], axis=0)
    return tuple(ParameterSummary(n, *map(float, q[:, i])) for i, n in enumerate(names))


@dataclass(frozen=True, eq=False)
class SBIResult:
    """Neural posterior of a session, with XSPEC-side comparisons.

    Attributes
    ----------
    names : tuple of str
        Free parameter names (PyXspec's).
    samples : ndarray (n_samples, n_free)
        Posterior samples from the network (after likelihood correction when
        ``correction`` is reliable, see ``samples_raw``).
    samples_raw : ndarray (n_samples, n_free)
        Samples straight from the network.
    summaries : tuple of ParameterSummary
    statistic : str
        ``"cstat"`` or ``"wstat"``.
    best_theta : ndarray (n_free,)
        Posterior sample with the lowest statistic.
    stat_median, stat_best : float
        Statistic at the posterior median and at ``best_theta``.
    goodness : GoodnessOfFit
        Statistic at ``best_theta`` against its Kaastra (2017) expectation.
    chain : ChainResult or None
        Goodman-Weare chain on the same data and prior.
    chain_fit : FitResult or None
        Best fit (C-stat minimisation) that started the chain.
    chain_goodness : GoodnessOfFit or None
    correction : ImportanceResult or None
        Exact-likelihood importance correction of the network's samples.
    trust : dict
        Out-of-distribution and posterior-predictive checks.
    timings : dict
        Seconds per step.
    xspec : object or None
        XSPEC's own fit, chain and statistics when the session came from
        PyXspec (see :mod:`xspec_sbi.pyxspec`).
    settings : dict
        Run settings and versions.
    """

    names: tuple
    samples: np.ndarray
    samples_raw: np.ndarray
    summaries: tuple
    statistic: str
    best_theta: np.ndarray
    stat_median: float
    stat_best: float
    goodness: object
    session: object = field(repr=False)
    prior: object = field(repr=False)
    posterior: object = field(repr=False)
    chain: object = None
    chain_fit: object = None
    chain_goodness: object = None
    correction: object = None
    trust: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    restriction: object = field(default=None, repr=False)
    xspec: object = None

    # -- tables --------------------------------------------------------------------
    def chain_summaries(self) -> tuple[ParameterSummary, ...] | None:
        return None if self.chain is None else summarize(self.names, self.chain.samples)

    def table(self) -> str:
        """Side-by-side SBI vs MCMC table, as printed by the command line."""
        rows = [f"{'parameter':<22}{'SBI median':>12}{'SBI 68% interval':>26}"]
        chain = self.chain_summaries()
        if chain:
            rows[0] += f"{'MCMC median':>13}{'MCMC 68% interval':>26}{'|d|/sd':>8}{'width':>7}"
        for i, s in enumerate(self.summaries):
            line = f"{s.name:<22}{s.median:>12.5g}{f'[{s.lo68:.4g}, {s.hi68:.4g}]':>26}"
            if chain:
                c = chain[i]
                sd = np.std(self.chain.samples[:, i])
                ratio = (s.hi68 - s.lo68) / (c.hi68 - c.lo68) if c.hi68 > c.lo68 else np.nan
                line += (f"{c.median:>13.5g}{f'[{c.lo68:.4g}, {c.hi68:.4g}]':>26}"
                         f"{abs(s.median - c.median) / sd if sd > 0 else np.nan:>8.2f}{ratio:>7.2f}")
            rows.append(line)
        rows.append("")
        if self.correction is not None and self.correction.reliable:
            rows.append("SBI samples are the network's, reweighted by the exact likelihood "
                        "(importance sampling, reliable here)")
        rows.append(f"{self.statistic} at SBI median: {self.stat_median:.2f}; "
                    f"at best SBI sample: {self.stat_best:.2f}")
        rows.append(f"SBI best sample: {self.goodness}")
        if self.chain_fit is not None:
            rows.append(f"XSPEC-style fit ({self.statistic} minimisation): {self.chain_fit.stat:.2f}")
        if self.chain_goodness is not None:
            rows.append(f"best fit: {self.chain_goodness}")
        if self.correction is not None:
            c = self.correction
            rows.append(f"likelihood check: ESS {100 * c.ess_fraction:.1f}% , Pareto k {c.pareto_k:.2f}, "
                        f"log evidence {c.log_evidence:.2f} +/- {c.log_evidence_se:.2f}"
                        + (f"  -> {c.warning}" if c.warning else ""))
        if self.xspec is not None:
            rows.append(str(self.xspec))
        for key, value in self.trust.items():
            if value:
                rows.append(f"{key}: {value}")
        if self.timings:
            rows.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()

    # -- amortized use -------------------------------------------------------------
    def posterior_samples_for(self, observations, n_samples: int = 1000, seed: int = 0) -> np.ndarray:
        """Posterior samples for many observations of the same set-up in one batched call.

        Parameters
        ----------
        observations : ndarray (m, n_outputs) or sequence of Spectrum
            Data in the session's layout, or spectra with the session's
            response, grouping and notice state.
        n_samples : int

        Returns
        -------
        ndarray (m, n_samples, n_free)
        """
        x = _as_observations(observations, self.session)
        return self.posterior.sample(x, n_samples, rng=seed)

    # -- exports -------------------------------------------------------------------
    def to_xspec_chain(self, path, overwrite: bool = False):
        """Write the posterior samples as an XSPEC chain FITS file (``chain load`` reads it)."""
        from xspec_sbi.baseline.chainfile import write_chain_file
        stat_fn = self.session.statistic_function()
        stat = stat_fn(self.samples)
        params = {p.name: p for p in self.session.model.parameters}
        return write_chain_file(
            path, self.samples, stat, names=list(self.names),
            indices=[params[n].index for n in self.names],
            units=[params[n].unit for n in self.names], walkers=1,
            statistic="C-Statistic" if self.statistic == "cstat" else "W-Statistic",
            overwrite=overwrite)

    def plot_corner(self, path=None, **kw):
        """Corner plot of the SBI posterior over the MCMC chain; returns the figure."""
        from xspec_sbi.report.plots import corner
        return corner(self, path=path, **kw)

    def plot_spectrum(self, path=None, **kw):
        """Data, SBI and best-fit folded models, residuals; returns the figure."""
        from xspec_sbi.report.plots import spectrum_plot
        return spectrum_plot(self, path=path, **kw)


def _as_observations(observations, session) -> np.ndarray:
    if isinstance(observations, np.ndarray):
        x = np.atleast_2d(observations).astype(np.float64)
    else:
        rows = []
        for spec in observations:
            row = [spec.binned_counts()]
            if spec.background is not None and session.spectra[0].background is not None:
                row.append(spec.binned_background_counts())
            rows.append(np.concatenate(row))
        x = np.asarray(rows, dtype=np.float64)
    n_out = session.observed().size
    if x.shape[1] != n_out:
        raise ValueError(f"observations have {x.shape[1]} values per spectrum; the trained set-up "
                         f"expects {n_out} (same grouping, notice state and background)")
    return x
