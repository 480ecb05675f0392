"""XSPEC's own fit, chain and statistic, for comparison with SBI results.

PyXspec calls (manual pages in brackets): ``Fit.perform()``,
``Fit.statistic``, ``Fit.query`` [FitManager]; ``Model.setPars`` [Model];
``Chain(fileName, burn=, runLength=, walkers=, algorithm=)`` [Chain];
``AllChains += file``, ``AllChains -= file`` [ChainManager]. Every call but
:func:`load_chain` leaves the session as it was (:func:`preserved_state`).
"""
from __future__ import annotations

import os
import re

import numpy as np

from xspec_sbi.baseline.chainfile import ChainFileError, read_chain_file, write_chain_file
from xspec_sbi.baseline.fit import FitResult
from xspec_sbi.baseline.mcmc import ChainConfigError, ChainResult
from xspec_sbi.pyxspec._access import PyXspecError, xspec_module
from xspec_sbi.pyxspec.reader import grouped_parameters, read_parameters
from xspec_sbi.pyxspec.state import model_groups, preserved_state

__all__ = ["free_parameters", "set_free_values", "xspec_statistic", "xspec_statistics", "xspec_fit", "xspec_chain",
           "check_chain_settings", "load_chain", "export_samples"]


def free_parameters(xspec=None) -> tuple:
    """ParameterSpecs of the free parameters of every data group (``index`` is XSPEC's number).

    Group 1's first, then each group's untied free ones, named ``name[g]``
    (:mod:`xspec_sbi.model.groups`), in the order of ``Session.model.free_parameters``.
    """
    xs = xspec_module(xspec)
    groups = {g: read_parameters(m, g) for g, m in model_groups(xs)}
    if len(groups) <= 1:
        return tuple(p for p in read_parameters(xs.AllModels(1), 1) if p.free)
    return tuple(p for p in grouped_parameters(groups) if p.free)


def parameter_of(xs, p):
    """PyXspec's Parameter of spec ``p`` (global number ``p.index``) in its data group."""
    n = int(xs.AllModels(1).nParameters)
    return xs.AllModels((p.index - 1) // n + 1)((p.index - 1) % n + 1)


def _set_free(xs, free, theta) -> None:
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if theta.size != len(free):
        raise PyXspecError(f"theta has {theta.size} values; the free parameters are "
                           + ", ".join(p.name for p in free))
    for p, v in zip(free, theta):
        if not p.min <= v <= p.max:
            raise PyXspecError(f"parameter {p.name}: value {v} outside its hard limits "
                               f"[{p.min}, {p.max}]")
    n = int(xs.AllModels(1).nParameters)
    by_group: dict = {}
    for p, v in zip(free, theta):
        by_group.setdefault((p.index - 1) // n + 1, {})[(p.index - 1) % n + 1] = float(v)
    for g, values in sorted(by_group.items()):
        xs.AllModels(g).setPars(values)   # indices local to the group's model object


def set_free_values(theta, xspec=None) -> None:
    """Set data group 1's free parameters to ``theta`` (n_free,), in order; not restored.

    For use inside :func:`~xspec_sbi.pyxspec.preserved_state`.
    """
    xs = xspec_module(xspec)
    _set_free(xs, free_parameters(xs), theta)


def xspec_statistic(theta, xspec=None) -> float:
    """XSPEC's fit statistic (``Fit.statistic``) at free-parameter values ``theta``.

    Parameters
    ----------
    theta : array_like (n_free,)
        Values of data group 1's free parameters, in parameter order.

    Returns
    -------
    float
        C-stat (W-stat with a background), as XSPEC computes it; parameters
        are restored afterwards.
    """
    xs = xspec_module(xspec)
    free = free_parameters(xs)
    with preserved_state(xs):
        _set_free(xs, free, theta)
        return float(xs.Fit.statistic)


def xspec_statistics(theta, xspec=None) -> np.ndarray:
    """XSPEC's ``Fit.statistic`` at each row of ``theta`` (n, n_free); parameters restored.

    One ``Model.setPars`` and one ``Fit.statistic`` per row: for an XSPEC
    chain file's statistic column, not for inner loops.
    """
    xs = xspec_module(xspec)
    free = free_parameters(xs)
    rows = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    out = np.empty(rows.shape[0])
    with preserved_state(xs):
        for k, row in enumerate(rows):
            _set_free(xs, free, row)
            out[k] = float(xs.Fit.statistic)
    return out


def check_chain_settings(burn: int, length: int, walkers: int, algorithm: str) -> None:
    """Refuse chain settings XSPEC would refuse (``chain`` command rules), before any work."""
    if algorithm not in ("gw", "mh"):
        raise ChainConfigError(f"algorithm={algorithm!r}: XSPEC's chain algorithms are 'gw' "
                               "(Goodman-Weare) and 'mh' (Metropolis-Hastings)")
    if length < 1 or burn < 0:
        raise ChainConfigError(f"chain length={length} must be positive and burn={burn} >= 0")
    if algorithm == "gw" and (walkers < 2 or walkers % 2 or burn % walkers or length % walkers):
        raise ChainConfigError(f"walkers={walkers} must be even, and burn={burn}, "
                               f"length={length} multiples of it (XSPEC's rule)")


def xspec_fit(xspec=None, keep: bool = False) -> FitResult:
    """Run XSPEC's ``Fit.perform()`` and read the best fit back.

    Parameters
    ----------
    keep : bool
        Leave XSPEC at the best fit; by default every parameter is restored.

    Returns
    -------
    FitResult
        ``theta`` of the free parameters, ``stat`` = ``Fit.statistic``;
        ``n_evaluations`` is -1 (PyXspec does not report it).
    """
    xs = xspec_module(xspec)
    free = free_parameters(xs)
    start = np.array([p.value for p in free])

    def run():
        xs.Fit.query = "yes"  # never stop at XSPEC's "continue fitting?" prompt
        xs.Fit.perform()
        best = {p.index: float(parameter_of(xs, p).values[0]) for p in free}
        return np.array([best[p.index] for p in free]), float(xs.Fit.statistic)

    if keep:
        saved_query = xs.Fit.query
        try:
            theta, stat = run()
        finally:
            xs.Fit.query = saved_query
    else:
        with preserved_state(xs):
            theta, stat = run()
    for arr in (theta, start):
        arr.setflags(write=False)
    return FitResult(theta=theta, stat=stat, n_evaluations=-1, success=bool(np.isfinite(stat)),
                     message=f"XSPEC Fit.perform() ({xs.Fit.method})",
                     start_stats=np.array([stat]), starts=start[None, :])


def xspec_chain(path, burn: int = 5000, length: int = 50000, walkers: int = 8,
                algorithm: str = "gw", xspec=None) -> ChainResult:
    """Run XSPEC's own chain into ``path`` and read it back.

    Parameters
    ----------
    path : str
        New FITS chain file (refused if it exists: XSPEC would load it instead).
    burn, length, walkers : int
        XSPEC's chain settings (samples over all walkers; multiples of
        ``walkers``, which must be even for ``"gw"``).
    algorithm : str
        ``"gw"`` (Goodman-Weare) or ``"mh"``.

    Returns
    -------
    ChainResult
        Samples with PyXspec-style names; ``acceptance_fraction`` is NaN
        (XSPEC does not write it). The chain is unloaded again afterwards.
    """
    xs = xspec_module(xspec)
    path = os.fspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; XSPEC would load it instead of running a chain")
    check_chain_settings(burn, length, walkers, algorithm)
    groups = {g: read_parameters(m, g) for g, m in model_groups(xs)} or {1: ()}
    listed = grouped_parameters(groups) if len(groups) > 1 else groups[1]
    names = {p.index: p.name for p in listed}
    with preserved_state(xs) as guard:
        xs.Chain(path, burn=burn, runLength=length, walkers=walkers, algorithm=algorithm)
        guard.loaded_chain(path)
    chain = read_chain_file(path)
    labels = tuple(names.get(i, f"p{i}") for i in chain.indices)
    return ChainResult(samples=chain.samples, stat=chain.stat, names=labels,
                       walkers=chain.walkers or walkers, burn=burn, length=chain.samples.shape[0],
                       acceptance_fraction=np.full(chain.walkers or walkers, np.nan),
                       log_uniform=(False,) * len(labels))


def load_chain(path, xspec=None):
    """Load a chain file into ``AllChains`` so XSPEC's ``error`` and ``flux ... err`` use it.

    The file is checked first: XSPEC's layout, and its columns must be free
    parameters of the current model (by number and name). The chain stays
    loaded (that is the point); unload it with ``AllChains -= path``.

    Returns
    -------
    ChainFile
        What was loaded.
    """
    xs = xspec_module(xspec)
    chain = read_chain_file(path)
    free = {p.index: re.sub(r"\[\d+\]$", "", p.name.rsplit(".", 1)[-1])
            for p in free_parameters(xs)}
    wrong = [f"{n}__{i}" for n, i in zip(chain.names, chain.indices) if free.get(i) != n]
    if wrong:
        raise ChainFileError(f"{path}: columns {wrong} are not free parameters of the current "
                             "model (" + ", ".join(f"{n}__{i}" for i, n in free.items()) + ")")
    xs.AllChains += os.fspath(path)
    return chain


def export_samples(path, samples, parameters, stat, *, walkers: int = 1,
                   statistic: str = "C-Statistic", overwrite: bool = False) -> None:
    """Write posterior samples as an XSPEC chain file (``chain load`` layout).

    Parameters
    ----------
    path : str
    samples : array_like (n, n_free)
    parameters : sequence of ParameterSpec
        The free parameters (``Session.model.free_parameters``): names,
        XSPEC numbers and units of the columns.
    stat : array_like (n,)
        Fit statistic of each sample (``Session.statistic_function()``).
    walkers : int
        ``NWALKERS``; 1 for independent draws.
    statistic : str
        Name of the statistic column's statistic (``"C-Statistic"``, ``"W-Statistic"``).
    """
    params = tuple(parameters)
    write_chain_file(path, samples, stat, names=[p.name for p in params],
                     indices=[p.index for p in params], units=[p.unit for p in params],
                     walkers=walkers, statistic=statistic, overwrite=overwrite)
