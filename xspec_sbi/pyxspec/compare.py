"""XSPEC's own answer beside the SBI posterior, at the end of :func:`xspec_sbi.sbi_fit`.

Inside :func:`~xspec_sbi.pyxspec.preserved_state`, XSPEC gives its
statistic at the SBI posterior median (``Model.setPars`` then
``Fit.statistic``), fits from there (``Fit.perform``) and runs its chain
from that best fit (``Chain``: XSPEC starts a chain at the current fit); the user's
parameters, notice states, settings and chains are then put back. With
``load_chain=True`` the SBI samples are written as an XSPEC chain file and
loaded into ``AllChains``, and left loaded (that is what was asked for):
XSPEC's ``error`` and ``flux ... err`` then use them.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace

import numpy as np

from xspec_sbi.baseline.fit import FitResult
from xspec_sbi.baseline.mcmc import ChainResult
from xspec_sbi.result import summarize
from xspec_sbi.pyxspec import native
from xspec_sbi.pyxspec._access import PyXspecError, xspec_module
from xspec_sbi.pyxspec.reader import read_spectra_records
from xspec_sbi.pyxspec.state import preserved_state

__all__ = ["XspecComparison", "compare_with_xspec"]


@dataclass(frozen=True, eq=False)
class XspecComparison:
    """XSPEC's fit, chain and statistic for the session an SBI posterior was computed on.

    Attributes
    ----------
    names : tuple of str
        Free parameters (PyXspec names), the column order everywhere below.
    statistic : str
        ``"cstat"``, or ``"wstat"`` when a background is loaded (XSPEC's
        ``cstat`` is then the W statistic).
    fit : FitResult
        XSPEC's ``Fit.perform()`` started at the SBI median: ``theta`` (n_free,)
        and ``stat``.
    stat_at_sbi_median : float
        XSPEC's ``Fit.statistic`` at the SBI posterior median.
    sbi : tuple of ParameterSummary
        SBI posterior median and intervals, for the side-by-side table.
    chain : ChainResult or None
        XSPEC's own chain, read back from its file (columns in ``names`` order).
    chain_summaries : tuple of ParameterSummary or None
    sbi_chain_file : str or None
        The XSPEC chain file holding the SBI samples (``load_chain=True``).
    chain_loaded : bool
        True when ``sbi_chain_file`` was loaded into ``AllChains`` and left there.
    priors : str
        Which priors SBI and XSPEC's chain used (one line, printed under the table).
    same_priors : bool
        XSPEC's chain ran with SBI's priors (``Fit.bayes`` on, ``Parameter.prior``).
    """

    names: tuple
    statistic: str
    fit: FitResult
    stat_at_sbi_median: float
    sbi: tuple
    chain: ChainResult | None = None
    chain_summaries: tuple | None = None
    sbi_chain_file: str | None = None
    chain_loaded: bool = False
    priors: str = ""
    same_priors: bool = False

    @property
    def chain_samples(self) -> np.ndarray | None:
        """XSPEC's chain samples (length, n_free), or None when no chain was run."""
        return None if self.chain is None else self.chain.samples

    def __str__(self) -> str:
        label = "W-stat: cstat with a background" if self.statistic == "wstat" else "C-stat"
        rows = [f"XSPEC itself ({label}):",
                f"  {'parameter':<22}{'XSPEC fit':>12}"
                + (f"{'XSPEC chain median [68%]':>34}" if self.chain_summaries else "")
                + f"{'SBI median [68%]':>34}"]
        for i, name in enumerate(self.names):
            s = self.sbi[i]
            line = f"  {name:<22}{self.fit.theta[i]:>12.5g}"
            if self.chain_summaries:
                c = self.chain_summaries[i]
                line += f"{f'{c.median:.5g} [{c.lo68:.4g}, {c.hi68:.4g}]':>34}"
            rows.append(line + f"{f'{s.median:.5g} [{s.lo68:.4g}, {s.hi68:.4g}]':>34}")
        rows.append(f"  XSPEC statistic: {self.fit.stat:.2f} at its best fit (Fit.perform), "
                    f"{self.stat_at_sbi_median:.2f} at the SBI median, where the fit started "
                    f"({self.stat_at_sbi_median - self.fit.stat:+.2f})")
        if self.chain is not None:
            rows.append(f"  XSPEC chain: {self.chain.walkers} walkers, burn {self.chain.burn}, "
                        f"length {self.chain.length}")
        if self.priors:
            rows.append(f"  {self.priors}")
        if self.chain_loaded:
            rows.append(f"  SBI samples loaded into AllChains from {self.sbi_chain_file}: "
                        "XSPEC's error and flux ... err use them")
        return "\n".join(rows)


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[xspec_sbi] {message}", flush=True)


def _in_order(chain: ChainResult, names: tuple) -> ChainResult:
    """``chain`` with its columns in the order of ``names`` (matched case-insensitively)."""
    have = [n.lower() for n in chain.names]
    missing = [n for n in names if n.lower() not in have]
    if missing:
        raise PyXspecError(f"XSPEC's chain file has no column for {missing} (it has "
                           f"{list(chain.names)})")
    order = [have.index(n.lower()) for n in names]
    return replace(chain, samples=chain.samples[:, order], names=tuple(names),
                   log_uniform=tuple(chain.log_uniform[k] for k in order))


def _describe(prior, names) -> str:
    by_name = {p.name.lower(): p for p in prior.parameters}
    return "; ".join(f"{n} {by_name[n.lower()].describe()}" for n in names)


def _supports_priors(xs) -> bool:
    """``Fit.bayes`` and ``Parameter.prior`` exist (PyXspec 2.0.0 / XSPEC 12.9.1 have both)."""
    try:
        str(xs.Fit.bayes)
        tuple(xs.AllModels(1)(1).prior)
    except AttributeError:
        return False
    return True


def _set_xspec_priors(xs, prior, free) -> None:
    """XSPEC's Bayesian priors set to SBI's: uniform -> ``cons``, log-uniform -> ``jeffreys``,
    Gaussian -> ``gauss`` with hyperparameters (mu, sigma).

    The parameter's hard and soft limits become the prior's bounds (XSPEC's
    ``cons`` and ``jeffreys`` priors are flat in the value, resp. its log,
    between the limits; its ``gauss`` prior, ``Bayes::lPrior`` of XSPEC
    12.9.1, is the Gaussian density, which the chain's hard limits truncate
    as SBI's bounds do), and ``Fit.bayes = "on"``. Inside preserved_state.
    """
    by_name = {p.name.lower(): p for p in prior.parameters}
    for spec in free:
        p = by_name[spec.name.lower()]
        par = native.parameter_of(xs, spec)   # in its own data group
        value, delta = float(par.values[0]), float(par.values[1])
        value = min(max(value, p.lower), p.upper)
        par.values = [value, delta, p.lower, p.lower, p.upper, p.upper]
        par.prior = (("gauss", p.mu, p.sigma) if p.kind == "gauss"
                     else "jeffreys" if p.kind == "log" else "cons")
    xs.Fit.bayes = "on"


def compare_with_xspec(*, names, samples, median, chain: bool = True, chain_length: int = 50_000,
                       chain_burn: int = 5_000, walkers: int = 8, algorithm: str = "gw",
                       load_chain: bool = False, stat=None, samples_file=None,
                       progress: bool = False, xspec=None, prior=None,
                       same_priors: bool = True) -> XspecComparison:
    """XSPEC's fit, chain and statistic beside an SBI posterior of the live session.

    Parameters
    ----------
    names : sequence of str
        The posterior's free parameters; they must be XSPEC's current free
        parameters of data group 1, in order.
    samples : array_like (n, n_free)
        SBI posterior samples (parameter units).
    median : array_like (n_free,)
        SBI posterior median.
    chain : bool
        XSPEC first fits, from the SBI median. Then, when True, it runs its chain: ``Chain(file, burn=chain_burn, runLength=chain_length,
        algorithm=algorithm, walkers=walkers)``, from XSPEC's best fit.
    chain_length, chain_burn, walkers : int
        Samples kept and discarded over all walkers, and walkers (XSPEC's rules).
    algorithm : {"gw", "mh"}
    load_chain : bool
        Write ``samples`` as an XSPEC chain file and load it into ``AllChains``,
        where it stays (XSPEC's ``error`` and ``flux ... err`` use it).
    stat : array_like (n,), optional
        Fit statistic of each sample for the chain file's statistic column;
        default: XSPEC's ``Fit.statistic`` at each sample (one call each).
    prior : BoxPrior, optional
        SBI's prior (``.parameters``: ``name``, ``kind`` "uniform"/"log"/"gauss",
        ``lower``, ``upper``, ``mu``, ``sigma``). With ``same_priors`` and a
        PyXspec that has ``Fit.bayes`` and ``Parameter.prior``, XSPEC's chain
        runs with the same priors: ``cons`` (uniform), ``jeffreys``
        (log-uniform) or ``gauss`` (mu, sigma) between hard limits set to the
        bounds. The comparison's ``priors`` says
        which priors each side used.
    same_priors : bool
        Set XSPEC's priors to SBI's for the chain (default); False keeps XSPEC's own.
    samples_file : str, optional
        Where to write that file (must not exist); default a new temporary folder.
    progress : bool
        Print each step.
    xspec : module, optional
        PyXspec (default ``import xspec``).

    Returns
    -------
    XspecComparison

    Raises
    ------
    PyXspecError
        ``names`` are not XSPEC's free parameters (the session changed).
    ChainConfigError
        Chain settings XSPEC refuses, before anything runs.
    """
    xs = xspec_module(xspec)
    names = tuple(names)
    samples = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    median = np.asarray(median, dtype=np.float64).reshape(-1)
    free = native.free_parameters(xs)
    if [n.lower() for n in names] != [p.name.lower() for p in free]:
        raise PyXspecError(f"XSPEC's free parameters are now {[p.name for p in free]}, the "
                           f"posterior's {list(names)}: the session changed during the run")
    if samples.shape[1] != len(names) or median.size != len(names):
        raise ValueError(f"samples {samples.shape} and median {median.shape} must have one "
                         f"column per free parameter ({len(names)})")
    if chain:
        native.check_chain_settings(chain_burn, chain_length, walkers, algorithm)
    if load_chain and stat is not None and np.shape(stat) != (samples.shape[0],):
        raise ValueError(f"stat has shape {np.shape(stat)}; expected ({samples.shape[0]},)")
    statistic = ("wstat" if any(r.background is not None for r in read_spectra_records(xs))
                 else "cstat")

    if prior is not None:
        missing = [n for n in names if n.lower() not in {p.name.lower() for p in prior.parameters}]
        if missing:
            raise ValueError(f"prior has no entry for {missing}")
    use_same = bool(chain and prior is not None and same_priors and _supports_priors(xs))

    xspec_chain = None
    with preserved_state(xs):
        native.set_free_values(median, xs)
        at_median = float(xs.Fit.statistic)
        # XSPEC's fit starts at the SBI median: the user's current parameters may be
        # anywhere (a fresh model's norm of 1), where a local fit can stall.
        _log(progress, "XSPEC: Fit.perform() from the SBI median")
        best = native.xspec_fit(xs, keep=True)   # kept so that XSPEC's chain starts there
        if use_same:   # after the fit: its statistic stays the likelihood's
            _set_xspec_priors(xs, prior, free)
        if chain:
            _log(progress, f"XSPEC: Chain (algorithm {algorithm}, {walkers} walkers, "
                           f"burn {chain_burn}, length {chain_length})")
            with tempfile.TemporaryDirectory(prefix="xspec_sbi_") as folder:
                xspec_chain = _in_order(native.xspec_chain(
                    os.path.join(folder, "xspec_chain.fits"), burn=chain_burn,
                    length=chain_length, walkers=walkers, algorithm=algorithm, xspec=xs), names)
    # XSPEC 12.9.1's Goodman-Weare chain leaves the hard limits (measured; its
    # Metropolis-Hastings chain keeps to them): say how much of it did.
    outside = _outside(xspec_chain, prior, names) if use_same else 0.0

    sbi_file = None
    if load_chain:
        values = native.xspec_statistics(samples, xs) if stat is None else np.asarray(stat, float)
        sbi_file = os.fspath(samples_file) if samples_file is not None else os.path.join(
            tempfile.mkdtemp(prefix="xspec_sbi_"), "sbi_samples.fits")
        native.export_samples(sbi_file, samples, free, values, walkers=1,
                              statistic="W-Statistic" if statistic == "wstat" else "C-Statistic")
        native.load_chain(sbi_file, xs)
        _log(progress, f"XSPEC: SBI samples loaded into AllChains from {sbi_file}")
    return XspecComparison(
        names=names, statistic=statistic, fit=best, stat_at_sbi_median=at_median,
        sbi=summarize(names, samples), chain=xspec_chain,
        chain_summaries=None if xspec_chain is None else summarize(names, xspec_chain.samples),
        sbi_chain_file=sbi_file, chain_loaded=sbi_file is not None,
        priors=_priors_line(prior, names, chain, use_same, same_priors, outside),
        same_priors=use_same and outside == 0.0)


def _outside(chain: ChainResult, prior, names) -> float:
    """Fraction of XSPEC's chain samples outside SBI's prior box."""
    by_name = {p.name.lower(): p for p in prior.parameters}
    lo = np.array([by_name[n.lower()].lower for n in names])
    hi = np.array([by_name[n.lower()].upper for n in names])
    out = np.any((chain.samples < lo) | (chain.samples > hi), axis=1)
    return float(out.mean())


def _priors_line(prior, names, chain: bool, use_same: bool, asked: bool,
                 outside: float = 0.0) -> str:
    """Which priors each side used, in words (printed under the table)."""
    own = ("XSPEC's own (Fit.bayes off: the likelihood alone, flat in each parameter "
           "between its hard limits)")
    if not chain:
        return "" if prior is None else f"Priors: SBI {_describe(prior, names)}; no XSPEC chain."
    if prior is None:
        return f"Priors: XSPEC's chain used {own}; SBI's prior was not given to the comparison."
    how = ("(XSPEC: Fit.bayes on, Parameter.prior 'cons' / 'jeffreys' / 'gauss MU SIGMA', hard "
           "limits = the bounds)")
    if use_same and outside > 0.0:
        return (f"Priors: SBI {_describe(prior, names)}; XSPEC's chain had the same shapes "
                f"{how}, but {100 * outside:.3g}% of its samples lie outside the bounds (this "
                "XSPEC's chain does not keep to hard limits; algorithm='mh' does).")
    if use_same:
        return f"Priors: the same on both sides: {_describe(prior, names)} {how}."
    why = "same_priors=False" if not asked else "this PyXspec has no Fit.bayes/Parameter.prior"
    return (f"Priors differ ({why}): SBI {_describe(prior, names)}; XSPEC's chain used {own}.")
