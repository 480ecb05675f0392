"""The result of :func:`xspec_sbi.sbi_fit`: posterior samples beside XSPEC's chain and C-stat.

Over 400 lines because a result's views (table, fluxes, plots, exports) are
its methods, as a user expects of it; each one delegates to its own module.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

log = logging.getLogger("xspec_sbi")

if TYPE_CHECKING:   # the types of the fields; importing them here would pull in torch
    from xspec_sbi.baseline.fit import FitResult
    from xspec_sbi.baseline.mcmc import ChainResult
    from xspec_sbi.checks.importance import ImportanceResult
    from xspec_sbi.checks.moves import MoveRecord
    from xspec_sbi.checks.ood import OODResult
    from xspec_sbi.checks.ppc import PPCResult
    from xspec_sbi.forward.stats import GoodnessOfFit
    from xspec_sbi.inference.posterior import NeuralPosterior
    from xspec_sbi.inference.priors import BoxPrior
    from xspec_sbi.inference.restrict import RestrictionResult
    from xspec_sbi.pyxspec.compare import XspecComparison
    from xspec_sbi.session import Session

__all__ = ["ParameterSummary", "summarize", "TrustChecks", "RunRecord", "SBIResult"]

#: Version of the layout of :meth:`RunRecord.to_dict` (and of the report's summary.json).
RECORD_SCHEMA = 1


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


@dataclass(frozen=True)
class TrustChecks:
    """The checks of a posterior that are not the likelihood correction.

    Attributes
    ----------
    ood : OODResult or None
        Out-of-distribution check of the observation against this call's
        training spectra; None when no network was trained in the call.
    ppc : PPCResult or None
        Posterior predictive check (p-value of the fit statistic).
    """

    ood: Optional["OODResult"] = None
    ppc: Optional["PPCResult"] = None
    ppc_not_computed: str = ""
    bounds: tuple = ()
    background: tuple = ()

    def lines(self) -> list[str]:
        """The checks as the table prints them (``name: value``); nothing for a check that passed silently."""
        out = []
        if self.ood is not None and self.ood.warning:
            out.append(f"out-of-distribution: {self.ood.warning}")
        if self.ppc is not None:
            out.append(f"posterior predictive p-value: {self.ppc.p_value:.3f}"
                       + (f" ({self.ppc.warning})" if self.ppc.warning else ""))
        elif self.ppc_not_computed:
            out.append(f"posterior predictive check: not computed ({self.ppc_not_computed})")
        out.extend(f"prior bound: {b}" for b in self.bounds)
        out.extend(f"W-stat background: {b}" for b in self.background)
        return out

    def to_dict(self) -> dict:
        """JSON-able summary (report, summary.json)."""
        return {"out-of-distribution": None if self.ood is None else (self.ood.warning or "passed"),
                "posterior predictive p-value": None if self.ppc is None else float(self.ppc.p_value),
                "posterior predictive warning": None if self.ppc is None else self.ppc.warning,
                "posterior predictive not computed": self.ppc_not_computed or None,
                "prior bounds": list(self.bounds),
                "W-stat background": list(self.background)}


@dataclass(frozen=True)
class RunRecord:
    """What a run did: settings, counts of simulations, versions (reproduces it with the same seed).

    Attributes
    ----------
    model : str
        XSPEC expression.
    prior : dict
        The prior box (kind and range per free parameter).
    restrict : str
        The restricted prior asked for.
    n_simulations : int
        Training simulations over all rounds (restriction excluded).
    rounds : int
    npe : str
        The estimator's settings.
    seed : int
    abund, xsect : str
        XSPEC's abundance and cross-section tables.
    statistic : str
        ``"cstat"`` or ``"wstat"``.
    spectra : tuple of str
        Labels (file names) of the spectra.
    simulations_run : int
        Every simulation of the call, restriction included.
    versions : dict
        Package versions.
    """

    model: str
    prior: dict
    restrict: str
    n_simulations: int
    rounds: int
    npe: str
    seed: int
    abund: str
    xsect: str
    statistic: str
    spectra: tuple
    simulations_run: int
    versions: dict

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spectra"] = list(self.spectra)
        d["schema"] = RECORD_SCHEMA
        return d


@dataclass(frozen=True)
class SamplesText:
    """What a result's SBI samples are, in the words of the table and of the check table.

    ``state`` is the check table's ``passed``/``warning``/``failed``; ``short``
    its detail; ``sentence`` the table's line.
    """

    state: str
    short: str
    sentence: str


def describe_samples(result) -> SamplesText:
    """:class:`SamplesText` of ``result`` (its ``samples_source`` and ``correction``)."""
    source = getattr(result, "samples_source", "corrected")
    n_rounds = len(getattr(result, "rounds", ()))
    if source == "corrected":
        moves = getattr(result, "moves", None)
        moved = "" if moves is None else f", then {moves.steps} Metropolis steps on it"
        return SamplesText("passed", f"network draws reweighted by the exact likelihood{moved}",
                           "SBI samples are the network's, reweighted by the exact likelihood "
                           f"(importance sampling, reliable here){moved}")
    if source == "chain":
        return SamplesText("warning", "the network failed its check within the budget: the samples "
                           "are an exact Goodman-Weare chain started from its draws",
                           f"the likelihood check still failed after {n_rounds} round(s): SBI "
                           "samples are an exact Goodman-Weare chain on the statistic, started "
                           "from the network's draws (the network's own draws: samples_raw)")
    if result.correction is None:
        return SamplesText("warning", "the network's own draws, unchecked (correct=False)",
                           "SBI samples are the network's own draws, not checked against the "
                           "exact likelihood (correct=False)")
    return SamplesText("failed", "the network's own draws, which failed the exact-likelihood check "
                       "(refinement off)",
                       "WARNING: the likelihood check failed and SBI samples are the network's "
                       "own draws, which are not the posterior (refinement off or fallback='none')")


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
    trust : TrustChecks
        Out-of-distribution and posterior-predictive checks.
    timings : dict of str to float
        Seconds per step.
    settings : RunRecord or None
        Run settings, simulation counts and versions.
    restriction : RestrictionResult or None
        The restricted prior the training set was drawn from.
    xspec : XspecComparison or None
        XSPEC's own fit, chain and statistics when the session came from
        PyXspec (see :mod:`xspec_sbi.pyxspec`).
    samples_source : str
        What ``samples`` are: ``"corrected"`` (the network's draws reweighted by
        the exact likelihood, the check passed), ``"chain"`` (the check failed
        within the refinement budget: an exact Goodman-Weare chain on the
        statistic, started from the network's draws) or ``"network"`` (the
        network's own draws: the check was off, or failed with no fallback).
    rounds : tuple of RoundRecord
        Every round of inference with its check (first network, refinements).
    checked_draws : int
        Network draws weighed by the exact likelihood in the last check (all of
        them unless the statistic is costly, see ``Budget.check_seconds``).
    fluxes : tuple of BandFlux or BandLuminosity
        Fluxes and luminosities asked for up front (:meth:`with_fluxes`),
        computed from ``samples``.
    moves : MoveRecord or None
        The Metropolis moves that refreshed the resampled corrected draws
        (``RefineOptions.moves``; :mod:`xspec_sbi.checks.moves`); None: no moves.
    """

    names: tuple[str, ...]
    samples: np.ndarray
    samples_raw: np.ndarray
    summaries: tuple[ParameterSummary, ...]
    statistic: str
    best_theta: np.ndarray
    stat_median: float
    stat_best: float
    goodness: "GoodnessOfFit"
    session: "Session" = field(repr=False)
    prior: "BoxPrior" = field(repr=False)
    posterior: "NeuralPosterior" = field(repr=False)
    chain: Optional["ChainResult"] = None
    chain_fit: Optional["FitResult"] = None
    chain_goodness: Optional["GoodnessOfFit"] = None
    correction: Optional["ImportanceResult"] = None
    trust: TrustChecks = TrustChecks()
    timings: dict[str, float] = field(default_factory=dict)
    settings: Optional[RunRecord] = None
    restriction: Optional["RestrictionResult"] = field(default=None, repr=False)
    xspec: Optional["XspecComparison"] = None
    samples_source: str = "corrected"
    rounds: tuple = ()
    checked_draws: int = 0
    fluxes: tuple = ()
    moves: Optional["MoveRecord"] = None

    # -- tables --------------------------------------------------------------------
    def chain_summaries(self) -> tuple[ParameterSummary, ...] | None:
        return None if self.chain is None else summarize(self.names, self.chain.samples)

    def table(self) -> str:
        """Side-by-side SBI vs MCMC table, as printed by the command line."""
        rows = [f"{'parameter':<22}{'SBI median':>12}{'SBI 68% interval':>26}"]
        chain = self.chain_summaries()
        if chain:
            rows[0] += f"{'MCMC median':>13}{'MCMC 68% interval':>26}{'|d|/sd':>8}{'width':>7}"
        # the prior of each parameter, as the report and summary.json give it
        priors = {p.name: p.describe() for p in self.prior.parameters}
        rows[0] += "  prior"
        for i, s in enumerate(self.summaries):
            line = f"{s.name:<22}{s.median:>12.5g}{f'[{s.lo68:.4g}, {s.hi68:.4g}]':>26}"
            if chain:
                c = chain[i]
                sd = np.std(self.chain.samples[:, i])
                ratio = (s.hi68 - s.lo68) / (c.hi68 - c.lo68) if c.hi68 > c.lo68 else np.nan
                line += (f"{c.median:>13.5g}{f'[{c.lo68:.4g}, {c.hi68:.4g}]':>26}"
                         f"{abs(s.median - c.median) / sd if sd > 0 else np.nan:>8.2f}{ratio:>7.2f}")
            rows.append(line + f"  {priors[s.name]}" if s.name in priors else line)
        rows.append("")
        rows.extend(self._source_lines())
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
            if 0 < self.checked_draws < len(self.samples_raw):
                rows.append(f"  (on {self.checked_draws} of the {len(self.samples_raw)} network draws: "
                            "the statistic is costly here, see Budget.check_seconds)")
            if self.moves is not None and self.samples_source == "corrected":
                rows.append(f"  corrected draws refreshed by {self.moves}")
        if self.xspec is not None:
            rows.append(str(self.xspec))
        rows.extend(self.trust.lines())
        for f in self.fluxes:
            rows.extend(f.lines())
        if self.timings:
            rows.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        return "\n".join(rows)

    def _source_lines(self) -> list[str]:
        rows = [str(r) for r in self.rounds] if len(self.rounds) > 1 else []
        return rows + [describe_samples(self).sentence]

    def __str__(self) -> str:
        return self.table()

    # -- fluxes (xspec_sbi.model.flux) ----------------------------------------------------
    def flux(self, lo: float, hi: float, unabsorbed: bool = False, *, absorbers=None,
             energies=None, group: int = 1):
        """XSPEC's ``flux lo hi err`` from the samples: a ``BandFlux`` (erg and photons cm^-2 s^-1).

        ``unabsorbed`` sets the absorbers (``model.flux.ABSORBERS``, or the
        component labels ``absorbers``) to 1; ``energies`` (keV edges, XSPEC's
        ``energies``) replaces the first spectrum's response grid. With data
        groups, ``group``'s parameters give the flux (group 1's by default, where
        a cross-normalisation constant is 1).
        """
        from xspec_sbi.model.flux import flux_summary
        return flux_summary(self._flux_model(group), self._flux_grid(energies, group),
                            self.samples, lo, hi, unabsorbed, absorbers)

    def lumin(self, lo: float, hi: float, redshift: float, unabsorbed: bool = False, *,
              cosmology=None, absorbers=None, energies=None, group: int = 1):
        """XSPEC's ``lumin lo hi z err`` (source-frame band, keV): a ``BandLuminosity`` (erg s^-1).

        ``cosmology``: a ``model.cosmology.Cosmology``, default ``cosmo 70 0 0.73``;
        ``group`` as in :meth:`flux`.
        """
        from xspec_sbi.model.flux import lumin_summary
        return lumin_summary(self._flux_model(group), self._flux_grid(energies, group),
                             self.samples, lo, hi, redshift, unabsorbed, absorbers, cosmology)

    def with_fluxes(self, requests, cosmology=None, energies=None) -> "SBIResult":
        """This result with ``requests`` (``(lo, hi)``, ``(lo, hi, z)`` or FluxRequest) in ``fluxes``."""
        from dataclasses import replace

        from xspec_sbi.model.flux import flux_summaries
        new = flux_summaries(self.session.model, self._flux_grid(energies), self.samples, requests,
                             cosmology)
        return replace(self, fluxes=self.fluxes + new)

    def _flux_model(self, group: int):
        model = self.session.model
        if hasattr(model, "for_group"):
            return model.for_group(group)
        if group != 1:
            raise ValueError(f"group={group}: this fit has one data group")
        return model

    def _flux_grid(self, energies, group: int = 1) -> np.ndarray:
        # XSPEC integrates on each spectrum's response grid, which differ in discretisation
        # only; the group's first spectrum stands for its group
        if energies is not None:
            return np.asarray(energies, dtype=np.float64)
        groups = getattr(self.session, "groups", None) or (1,) * len(self.session.spectra)
        first = next((i for i, g in enumerate(groups) if g == group), 0)
        return self.session.spectra[first].response.energy_edges

    # -- amortized use -------------------------------------------------------------
    def posteriors_for(self, observations, n_samples: int = 1000, seed: int = 0,
                       correct: bool = True, *, workers: int | None = None, executor=None,
                       min_effective: float | None = 1000):
        """Posteriors of many observations of the same set-up: one batched call, each checked.

        Each observation's draws are weighted by its own exact likelihood
        (see :mod:`xspec_sbi.amortized`); the result names the observations
        whose check failed. Spectra whose exposure, ARF, RMF values or
        background scaling differ from the training spectrum are accepted (the
        network reads their counts, their own set-up gives the likelihood) and
        their differences are listed; other bins are refused.

        Parameters
        ----------
        observations : ndarray (m, n_outputs) or sequence of Spectrum
            Data in the session's layout, or spectra with the session's
            response, grouping and notice state.
        n_samples : int
            Draws per observation.
        seed : int
        correct : bool
            Weight by the exact likelihood (default yes).
        workers : int, optional
            Processes for the exact statistics (default: all cores, when the
            work outweighs starting them; 1: this process). Same numbers either way.
        executor : SimulatorPool, optional
            A running pool to use instead.
        min_effective : float or None
            Each observation's draws are weighed in stages until this many are
            effective (default 1,000, :data:`xspec_sbi.amortized.MIN_EFFECTIVE`),
            or all ``n_samples`` are; None weighs them all.

        Returns
        -------
        AmortizedPosteriors
        """
        from xspec_sbi.amortized import amortized_posteriors, setup_differences
        self._note_single_observation_network()
        labels = simulators = factors = None
        differences = ()
        if not isinstance(observations, np.ndarray):
            labels = [s.label for s in observations]
            if len(self.session.spectra) == 1:
                # spectra of another exposure, ARF or background scaling: each is judged by its
                # own exact likelihood; other bins or channels are refused, naming the file
                template = self.session.spectra[0]
                differences = [setup_differences(template, s) for s in observations]
                # an exposure-conditioned network reads each spectrum's exposure ratio
                factors = [s.exposure / template.exposure for s in observations]
                if any(differences):
                    simulators = [self.session.__class__((s,), self.session.model,
                                                         self.session.settings).simulator()
                                  for s in observations]
        x = _as_observations(observations, self.session)
        return amortized_posteriors(self.posterior, self.session.simulator(), self.prior, x,
                                    n_samples=n_samples, seed=seed, correct=correct, labels=labels,
                                    simulators=simulators, differences=differences,
                                    exposure_factors=factors, workers=workers, executor=executor,
                                    min_effective=min_effective)

    def _note_single_observation_network(self) -> None:
        """Say when the network was made for this observation, not for many.

        A fit that refines itself trains its first network on 3,000
        simulations (``RunOptions.first_round_simulations``) and may retrain
        it on truncations around this observation's posterior: other spectra
        are still weighted by their exact likelihood, but fewer draws count.
        """
        from xspec_sbi.inference.config import DEFAULT_SIMULATIONS
        truncated = (any(r.kind == "refinement" for r in (self.rounds or ()))
                     or getattr(self.settings, "rounds", 1) > 1)
        n = getattr(self.settings, "n_simulations", None)
        if truncated:
            log.warning("this network was retrained on truncated rounds around this observation's "
                        "posterior: for many spectra train one on the whole prior (sbi_fit(..., "
                        "n_simulations=%d) or xspec-sbi train)", DEFAULT_SIMULATIONS)
        elif n is not None and n < DEFAULT_SIMULATIONS:
            log.info("this network was trained on %d simulations; one for many spectra is better "
                     "trained on %d (n_simulations=%d, as xspec-sbi train does): fewer draws of "
                     "each spectrum count", n, DEFAULT_SIMULATIONS, DEFAULT_SIMULATIONS)

    def posterior_samples_for(self, observations, n_samples: int = 1000, seed: int = 0,
                              correct: bool = True) -> np.ndarray:
        """Posterior samples (m, n_samples, n_free) of many observations; see :meth:`posteriors_for`.

        Where an observation's exact-likelihood check fails its draws are the
        network's, and a warning names it.
        """
        out = self.posteriors_for(observations, n_samples, seed, correct)
        if out.flagged:
            import warnings
            warnings.warn(out.summary(), stacklevel=2)
        return out.samples

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
        """Folded spectrum as XSPEC plots it (display rebinning, model band, residuals); returns the figure.

        Keywords go to :func:`xspec_sbi.report.spectrum.spectrum_plot`
        (``residuals="ratio"``, ``min_significance``, ``max_bins``).
        """
        from xspec_sbi.report.spectrum import spectrum_plot
        return spectrum_plot(self, path=path, **kw)

    def plot_priors(self, path=None, **kw):
        """Your prior, the restricted prior and the posterior per parameter; returns the figure."""
        from xspec_sbi.report.plots import prior_marginals
        return prior_marginals(self, path=path, **kw)

    def to_arviz(self, **kw):
        """The result as an ``arviz.InferenceData`` (needs the ``arviz`` extra).

        Groups: posterior, sample_stats (statistic, importance weights),
        network_posterior, prior, observed_data, constant_data and, when the
        chain ran, chain_posterior and chain_sample_stats; see
        :mod:`xspec_sbi.report.interchange`.
        """
        from xspec_sbi.report.interchange import to_inference_data
        return to_inference_data(self, **kw)


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
