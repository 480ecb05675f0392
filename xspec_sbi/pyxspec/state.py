"""Snapshot and restore the parts of a PyXspec session the adapter may change.

:func:`preserved_state` wraps every adapter call that changes XSPEC's
globals: parameter values, frozen flags, links and Bayesian priors of every
data group's model, ``Fit.bayes``, each spectrum's noticed channels, console and log chatter, Fit's
query setting, the abundance and cross-section tables, and chains the
adapter loaded. All are put back in ``finally``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from xspec_sbi.pyxspec._access import xspec_module

__all__ = ["ParameterState", "XspecState", "snapshot", "preserved_state", "model_groups"]


@dataclass(frozen=True)
class ParameterState:
    """One parameter as PyXspec shows it (``Parameter.values``, ``frozen``, ``link``)."""

    group: int
    index: int
    values: tuple
    frozen: bool
    link: str
    prior: tuple = ()          # Parameter.prior (type, hyperparameters...); () without it


@dataclass(frozen=True)
class XspecState:
    """The session globals the adapter promises to leave as they were."""

    parameters: tuple
    noticed: tuple            # per spectrum: tuple of noticed (1-based) channel numbers
    chatter: int
    log_chatter: int
    abund: str
    xsect: str
    query: str
    stat_method: str
    bayes: str = ""            # Fit.bayes ("on"/"off"); "" where PyXspec has no such setting


def model_groups(xs) -> list:
    """``[(group, AllModels(group))]`` for every data group with a model (empty if none)."""
    n_groups = max(1, int(xs.AllData.nGroups))
    out = []
    for g in range(1, n_groups + 1):
        try:
            out.append((g, xs.AllModels(g)))
        except Exception:  # PyXspec raises a bare Exception when no model is defined
            if g == 1:
                return []
            raise
    return out


def _read_parameters(xs) -> tuple:
    rows = []
    for g, model in model_groups(xs):
        for i in range(1, int(model.nParameters) + 1):
            p = model(i)
            rows.append(ParameterState(g, i, tuple(float(v) for v in p.values),
                                       bool(p.frozen), str(p.link or "").strip(),
                                       _prior(p)))
    return tuple(rows)


def _prior(p) -> tuple:
    """``Parameter.prior`` as a tuple, () where this PyXspec has none."""
    try:
        return tuple(p.prior)
    except AttributeError:
        return ()


def snapshot(xspec=None) -> XspecState:
    """Copy the session globals listed in :class:`XspecState`."""
    xs = xspec_module(xspec)
    noticed = tuple(tuple(int(c) for c in xs.AllData(n).noticed)
                    for n in range(1, int(xs.AllData.nSpectra) + 1))
    return XspecState(
        parameters=_read_parameters(xs), noticed=noticed,
        chatter=int(xs.Xset.chatter), log_chatter=int(xs.Xset.logChatter),
        abund=str(xs.Xset.abund), xsect=str(xs.Xset.xsect), query=str(xs.Fit.query),
        stat_method=str(xs.Fit.statMethod), bayes=str(getattr(xs.Fit, "bayes", "")))


def _ranges(numbers) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3 7"``: XSPEC channel ranges."""
    out, run = [], []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return " ".join(out)


def _restore_parameters(xs, saved: tuple) -> None:
    models = dict(model_groups(xs))
    # Unlink first, then set values and flags, then link again: a link set
    # before its target's value would pick up the wrong value.
    for s in saved:
        p = models[s.group](s.index)
        if str(p.link or "").strip() and not s.link:
            p.untie()
    for s in saved:
        if s.link:
            continue
        p = models[s.group](s.index)
        if tuple(float(v) for v in p.values) != s.values:
            p.values = list(s.values)
        if bool(p.frozen) != s.frozen:
            p.frozen = s.frozen
    for s in saved:
        if s.link:
            p = models[s.group](s.index)
            if str(p.link or "").strip() != s.link:
                p.link = s.link.lstrip("=").strip()
    for s in saved:
        p = models[s.group](s.index)
        if s.prior and _prior(p) != s.prior:
            p.prior = s.prior


def _restore_noticed(xs, saved: tuple) -> None:
    for n, channels in enumerate(saved, start=1):
        spectrum = xs.AllData(n)
        if tuple(int(c) for c in spectrum.noticed) == channels:
            continue
        spectrum.notice("all")
        everything = set(int(c) for c in spectrum.noticed)
        off = everything - set(channels)
        if off:
            spectrum.ignore(_ranges(off))


@dataclass
class _Guard:
    """Handed to the body of :func:`preserved_state`: chains to unload on exit."""

    chains: list = field(default_factory=list)

    def loaded_chain(self, path: str) -> None:
        self.chains.append(path)


@contextlib.contextmanager
def preserved_state(xspec=None, quiet: bool = True):
    """Leave the user's PyXspec session as it was, whatever the body does.

    Parameters
    ----------
    xspec : module, optional
        PyXspec (default ``import xspec``).
    quiet : bool
        Set ``Xset.chatter`` and ``Xset.logChatter`` to 0 inside the block.

    Yields
    ------
    _Guard
        ``guard.loaded_chain(path)`` registers a chain to unload on exit.
    """
    xs = xspec_module(xspec)
    saved = snapshot(xs)
    guard = _Guard()
    try:
        if quiet:
            xs.Xset.chatter = 0
            xs.Xset.logChatter = 0
        yield guard
    finally:
        for path in guard.chains:
            try:
                xs.AllChains -= path
            except Exception:  # already unloaded by the body
                pass
        if str(xs.Xset.abund) != saved.abund:
            xs.Xset.abund = saved.abund
        if str(xs.Xset.xsect) != saved.xsect:
            xs.Xset.xsect = saved.xsect
        if str(xs.Fit.query) != saved.query:
            xs.Fit.query = saved.query
        if str(xs.Fit.statMethod) != saved.stat_method:
            xs.Fit.statMethod = saved.stat_method
        _restore_noticed(xs, saved.noticed)
        _restore_parameters(xs, saved.parameters)
        if saved.bayes and str(xs.Fit.bayes) != saved.bayes:
            xs.Fit.bayes = saved.bayes
        xs.Xset.chatter = saved.chatter
        xs.Xset.logChatter = saved.log_chatter
