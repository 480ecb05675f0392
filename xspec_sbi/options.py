"""The options of :func:`xspec_sbi.sbi_fit`, grouped into records.

Four records, one per concern: :class:`Budget` (how many simulations, rounds
and samples), :class:`NetworkOptions` (which estimator, load or save a trained
network), :class:`ChainOptions` (the Goodman-Weare chain beside SBI, XSPEC's
``chain`` settings) and :class:`ComputeOptions` (processes, executor,
progress). ``sbi_fit`` also takes the fields as flat keywords (``n_simulations=``,
``chain_length=``, ...): :func:`from_keywords` maps each to its record and
refuses a value given twice, so nothing is silently overridden.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from xspec_sbi.inference.config import DEFAULT_SIMULATIONS, SELF_REFINING_SIMULATIONS

__all__ = ["OptionError", "parse_restriction", "check_prior", "too_wide_soft_limits", "too_wide_text", "Budget", "NetworkOptions", "ChainOptions", "ComputeOptions", "RefineOptions",
           "RunOptions",
           "SHORTCUTS", "from_keywords"]


class OptionError(ValueError):
    """An option of ``sbi_fit`` is invalid or contradicts another."""


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f"{name}={value!r}: expected an integer >= {minimum}")


@dataclass(frozen=True)
class Budget:
    """How much inference to do.

    Parameters
    ----------
    n_simulations : int, optional
        Training simulations of a single round (default 10,000, the paper's;
        3,000 for a fit that refines itself: see
        :meth:`RunOptions.first_round_simulations`). With ``rounds > 1``: the
        total over all rounds, split evenly, unless ``simulations_per_round``
        is given (giving both with a different total is refused).
    rounds : int
        1: single-round amortized NPE; more: truncated sequential rounds on
        this observation.
    simulations_per_round : int, optional
        Simulations per round when ``rounds > 1`` (default 1,000).
    n_samples : int
        Posterior samples drawn and returned (default 10,000).
    check_seconds : float
        Time the exact-likelihood check may take (default 120 s): when the
        statistic is costly (the XSPEC path folds one draw at a time), fewer
        draws are weighed, never fewer than 1,000; the result says how many.
    """

    n_simulations: int | None = None
    rounds: int = 1
    simulations_per_round: int | None = None
    n_samples: int = 10_000
    check_seconds: float = 120.0

    def __post_init__(self):
        _positive_int("rounds", self.rounds)
        _positive_int("n_samples", self.n_samples, 2)
        if self.n_simulations is not None:
            _positive_int("n_simulations", self.n_simulations, 20)
        if self.simulations_per_round is not None:
            _positive_int("simulations_per_round", self.simulations_per_round, 20)
        if self.rounds == 1 and self.simulations_per_round is not None:
            raise OptionError("simulations_per_round is for rounds > 1; with one round give n_simulations")
        if (self.rounds > 1 and self.n_simulations is not None and self.simulations_per_round is not None
                and self.n_simulations != self.rounds * self.simulations_per_round):
            raise OptionError(f"n_simulations={self.n_simulations} contradicts rounds={self.rounds} x "
                              f"simulations_per_round={self.simulations_per_round}; give one of them")

    @property
    def per_round(self) -> int:
        """Simulations in each round (rounds > 1)."""
        if self.simulations_per_round is not None:
            return self.simulations_per_round
        if self.n_simulations is not None:
            return max(20, self.n_simulations // self.rounds)
        return 1000

    @property
    def total_simulations(self) -> int:
        """Training simulations over all rounds (restriction excluded), 10,000 by default."""
        if self.rounds > 1:
            return self.rounds * self.per_round
        return DEFAULT_SIMULATIONS if self.n_simulations is None else self.n_simulations


@dataclass(frozen=True)
class NetworkOptions:
    """The neural posterior estimator: its settings, or a trained one to load.

    Parameters
    ----------
    estimator, x_transform, pca, exposure_range : optional
        Shortcuts for :class:`~xspec_sbi.inference.config.NPEConfig` fields
        (``estimator``, ``x_transform``, ``pca_variance``, ``exposure_range``:
        train over exposure factors ``(LOW, HIGH)`` of the spectrum's, log-uniform);
        default: its measured choice. Refused together with ``config``.
    config : NPEConfig, optional
        Every estimator setting at once.
    load : path or NeuralPosterior, optional
        A network folder saved by an earlier run; its set-up must match. A
        posterior object is used as it is (its caller checked the set-up).
    save : path, optional
        Save the trained network there.
    overwrite : bool
        Replace an existing network folder at ``save``.
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    estimator: str | None = None
    x_transform: str | None = None
    pca: float | None = None
    exposure_range: tuple | None = None
    config: Any = None
    load: str | os.PathLike | None = None
    save: str | os.PathLike | None = None
    overwrite: bool = False
    device: str = "cpu"

    def __post_init__(self):
        given = [n for n in ("estimator", "x_transform", "pca", "exposure_range")
                 if getattr(self, n) is not None]
        if self.config is not None and given:
            raise OptionError(f"config= and {', '.join(given)}= both given: set "
                              f"{', '.join(given)} inside the NPEConfig instead")
        if self.load is not None and self.save is not None:
            raise OptionError("network: load= and save= both given; a loaded network is not retrained")

    def npe_config(self):
        """The :class:`NPEConfig` these options describe."""
        if self.config is not None:
            return self.config
        from xspec_sbi.inference.config import NPEConfig
        chosen = {k: v for k, v in dict(estimator=self.estimator, x_transform=self.x_transform,
                                         pca_variance=self.pca,
                                         exposure_range=self.exposure_range).items() if v is not None}
        return NPEConfig(**chosen)


@dataclass(frozen=True)
class ChainOptions:
    """The Goodman-Weare chain run beside SBI on the same data and prior (XSPEC's ``chain``).

    Parameters
    ----------
    run : bool, optional
        Run it (default: yes for a single spectrum, no for joint fits).
    length, burn : int
        Samples over all walkers, as XSPEC counts them (defaults 50,000 and 5,000).
    walkers : int, optional
        Even, at least ``2 n_free``; default XSPEC's 8, raised for more than
        4 free parameters (with a warning).
    load_into_xspec : bool
        PyXspec sessions: load the SBI samples into ``AllChains`` so that
        XSPEC's ``error`` and ``flux ... err`` use them.
    """

    run: bool | None = None
    length: int = 50_000
    burn: int = 5_000
    walkers: int | None = None
    load_into_xspec: bool = False

    def __post_init__(self):
        _positive_int("chain_length", self.length)
        _positive_int("chain_burn", self.burn, 0)


@dataclass(frozen=True)
class ComputeOptions:
    """Where the simulations run.

    Parameters
    ----------
    workers : int, optional
        Simulation processes (default: all cores; 1: in this process). Their
        pool also evaluates the exact statistic's large batches (likelihood
        check, Metropolis moves), with the same numbers.
    executor : concurrent.futures.Executor, optional
        Run simulations there instead (a Dask client's executor, say).
    progress : bool
        Progress bars and step messages.
    """

    workers: int | None = None
    executor: Any = None
    progress: bool = True

    def __post_init__(self):
        if self.workers is not None:
            _positive_int("workers", self.workers)
        if self.workers is not None and self.executor is not None:
            raise OptionError("workers= and executor= both given: the executor decides its workers")


@dataclass(frozen=True)
class RefineOptions:
    """Adaptive refinement: more rounds on this observation until the exact-likelihood check passes.

    After the first network (trained or loaded), the network's draws are
    weighted by the exact likelihood. While that check fails (Pareto k at or
    above ``min(1 - 1/log10 n, 0.7)``, PSIS effective sample size under 100, or
    an ESS fraction under ``min_ess_fraction``), a truncated sequential round
    runs: simulations from the user's prior truncated to the current
    posterior's highest-density region (so the posterior stays the one under
    the user's prior), the network retrained on every simulation so far, the
    check repeated. When the budget is spent and the check still fails, the
    samples returned are an exact Goodman-Weare chain on the statistic,
    started from the network's draws (``fallback="chain"``), and the result
    says so; the network's own draws stay in ``samples_raw``.

    Parameters
    ----------
    enabled : bool
        Refine at all (default yes).
    max_rounds : int
        Refinement rounds at most (default 4).
    simulations_per_round : int, optional
        Default: a quarter of the first round's simulations, at least 1,000.
    max_simulations : int, optional
        Refinement simulations at most (default ``max_rounds x simulations_per_round``).
    max_seconds : float, optional
        Stop starting new rounds after this many seconds of refinement.
    min_ess_fraction : float
        Smallest ESS fraction called good enough (default 0.02).
    fallback : {"chain", "none"}
        What to return when the check still fails: exact chain draws, or the
        network's draws (flagged as such).
    moves : int
        Metropolis steps at most on the exact posterior for every
        corrected draw after resampling (default 15; they stop once 90 % of the
        draws have moved, after 2-3 steps on a near-Gaussian posterior; 0: none).
        Resampling repeats draws; the moves spread the copies apart and leave
        the posterior as it is (:mod:`xspec_sbi.checks.moves`). The many steps
        are for a curved posterior passed at a low ESS: on a faint XMM-pn source
        (ESS 2.6 %, mean acceptance 19 %) 6 steps moved 66 % of the draws and
        left a C2ST of 0.60 against an independent reference; 15 moved 90 %,
        C2ST 0.55-0.56 (README, end-to-end benchmark). Fewer steps where the
        statistic is costly: all of them take at most ``Budget.check_seconds``.
    """

    enabled: bool = True
    max_rounds: int = 4
    simulations_per_round: int | None = None
    max_simulations: int | None = None
    max_seconds: float | None = None
    min_ess_fraction: float = 0.02
    fallback: str = "chain"
    moves: int = 15

    def __post_init__(self):
        _positive_int("refine max_rounds", self.max_rounds, 0)
        if self.simulations_per_round is not None:
            _positive_int("refine simulations_per_round", self.simulations_per_round, 20)
        if self.fallback not in ("chain", "none"):
            raise OptionError(f"refine fallback={self.fallback!r}: choose 'chain' or 'none'")
        if not 0.0 <= self.min_ess_fraction < 1.0:
            raise OptionError(f"refine min_ess_fraction={self.min_ess_fraction!r}: must be in [0, 1)")
        _positive_int("refine moves", self.moves, 0)

    def per_round(self, first_round: int) -> int:
        """Simulations of each refinement round, given the first round's."""
        return self.simulations_per_round or max(1000, first_round // 4)


@dataclass(frozen=True)
class RunOptions:
    """All options of one ``sbi_fit`` call."""

    budget: Budget = Budget()
    network: NetworkOptions = NetworkOptions()
    chain: ChainOptions = ChainOptions()
    compute: ComputeOptions = ComputeOptions()
    refine: RefineOptions = RefineOptions()

    @property
    def refines_itself(self) -> bool:
        """The network is trained here for this observation only and the check may refine it.

        One round, refinement on, nothing loaded, nothing saved, no training
        across exposures (those two are networks meant for other spectra).
        """
        n = self.network
        across = n.exposure_range is not None or getattr(n.config, "exposure_range", None) is not None
        return (self.budget.rounds == 1 and self.refine.enabled and n.load is None
                and n.save is None and not across)

    @property
    def first_round_simulations(self) -> int:
        """Training simulations of the first network: ``Budget.n_simulations`` when given.

        Otherwise 3,000 (:data:`SELF_REFINING_SIMULATIONS`) for a fit that
        :attr:`refines_itself`, and 10,000 for the rest. Why: there the
        network only proposes; the exact-likelihood check decides whether a
        refinement round is needed, and every draw returned is weighted by the
        exact likelihood. On the end-to-end benchmark's four spectra
        (``scripts/bench_end_to_end.py`` a-d, two seeds each) the first
        network of 3,000 simulations passed its check or its defensive
        mixture every time and the answers agreed with the chain as closely as
        with 10,000, in 0.53-1.02 of the time (b: 0.60-0.78). A network to reuse on other
        spectra is trained on 10,000 (``xspec-sbi train``, or give
        ``n_simulations``).
        """
        b = self.budget
        if b.n_simulations is None and self.refines_itself:
            return SELF_REFINING_SIMULATIONS
        return b.total_simulations


#: Flat keyword of ``sbi_fit`` -> (record, field).
SHORTCUTS: Mapping[str, tuple[str, str]] = {
    "n_simulations": ("budget", "n_simulations"),
    "rounds": ("budget", "rounds"),
    "simulations_per_round": ("budget", "simulations_per_round"),
    "n_samples": ("budget", "n_samples"),
    "check_seconds": ("budget", "check_seconds"),
    "estimator": ("network", "estimator"),
    "x_transform": ("network", "x_transform"),
    "pca": ("network", "pca"),
    "exposure_range": ("network", "exposure_range"),
    "config": ("network", "config"),
    "save": ("network", "save"),
    "overwrite": ("network", "overwrite"),
    "device": ("network", "device"),
    "mcmc": ("chain", "run"),
    "chain_length": ("chain", "length"),
    "chain_burn": ("chain", "burn"),
    "walkers": ("chain", "walkers"),
    "load_chain": ("chain", "load_into_xspec"),
    "workers": ("compute", "workers"),
    "executor": ("compute", "executor"),
    "progress": ("compute", "progress"),
}
_RECORDS = {"budget": Budget, "network": NetworkOptions, "chain": ChainOptions, "compute": ComputeOptions,
            "refine": RefineOptions}


def from_keywords(records: Mapping[str, Any], keywords: Mapping[str, Any]) -> RunOptions:
    """Combine option records and flat keywords into :class:`RunOptions`.

    Parameters
    ----------
    records : mapping
        ``{"budget": Budget | None, "network": NetworkOptions | path | None, ...}``;
        a path for ``network`` means ``NetworkOptions(load=path)``, a bool for
        ``chain`` means ``ChainOptions(run=bool)``, for ``refine``
        ``RefineOptions(enabled=bool)``.
    keywords : mapping
        Flat keywords (see :data:`SHORTCUTS`).

    Raises
    ------
    OptionError
        An unknown keyword, or a field given both in a record and as a keyword.
    """
    built = {}
    for name, cls in _RECORDS.items():
        value = records.get(name)
        if value is None:
            value = cls()
        elif name == "network" and isinstance(value, (str, os.PathLike)):
            value = NetworkOptions(load=value)
        elif name == "chain" and isinstance(value, bool):
            value = ChainOptions(run=value)
        elif name == "refine" and isinstance(value, bool):
            value = RefineOptions(enabled=value)
        elif not isinstance(value, cls):
            raise OptionError(f"{name}={value!r}: expected a {cls.__name__}")
        built[name] = value
    explicit = {name: records.get(name) is not None for name in _RECORDS}
    updates: dict[str, dict] = {name: {} for name in _RECORDS}
    for key, value in keywords.items():
        if key not in SHORTCUTS:
            raise OptionError(f"sbi_fit got an unknown keyword {key}=; see help(xspec_sbi.sbi_fit)")
        record, field_name = SHORTCUTS[key]
        default = next(f.default for f in fields(_RECORDS[record]) if f.name == field_name)
        if explicit[record] and getattr(built[record], field_name) != default:
            raise OptionError(f"{key}= and {record}=...{field_name} both given; give one")
        updates[record][field_name] = value
    for name, change in updates.items():
        if change:
            built[name] = replace(built[name], **change)
    return RunOptions(**built)


def parse_restriction(restrict):
    """Normalise the ``restrict`` argument.

    Accepts None/"none", ``"counts:LO-HI"`` or ``("counts", lo, hi)``, ``"classifier:LO-HI"``
    (the same count window learned by the paper's classifier),
    ``"cstat"``, ``"cstat:F"`` or ``("cstat", f)``, ``"coarse"``, ``"coarse:N"`` or
    ``("coarse", n)``. Returns ``(kind, args)``.
    """
    if restrict is None or (isinstance(restrict, str) and restrict.lower() in ("", "none")):
        return None, ()
    if isinstance(restrict, str):
        kind, _, arg = restrict.partition(":")
        kind = kind.strip().lower()
        try:
            if kind in ("counts", "classifier"):
                lo, hi = (float(v) for v in arg.replace(",", "-").split("-"))
                if not 0 <= lo < hi:
                    raise ValueError
                return kind, (lo, hi)
            if kind == "cstat":
                f = float(arg) if arg else 0.25
                if not 0 < f < 1:
                    raise ValueError
                return "cstat", (f,)
            if kind == "coarse":
                n = int(float(arg)) if arg else 5000
                if n < 20:
                    raise ValueError
                return "coarse", (n,)
        except ValueError:
            examples = {"counts": "counts:LO-HI with 0 <= LO < HI, e.g. counts:1000-10000",
                        "classifier": "classifier:LO-HI with 0 <= LO < HI, e.g. classifier:1000-10000",
                        "cstat": "cstat:F with 0 < F < 1, e.g. cstat:0.25",
                        "coarse": "coarse:N with N >= 20 simulations, e.g. coarse:5000"}
            raise OptionError(f"restrict={restrict!r}: write {examples[kind]}") from None
        raise OptionError(f"restrict={restrict!r}: choose counts:LO-HI, classifier:LO-HI, cstat[:F], "
                          "coarse[:N] or none")
    kind, *args = restrict
    return parse_restriction(f"{kind}:{'-'.join(str(a) for a in args)}" if kind in ("counts", "classifier")
                             else f"{kind}:{args[0]}" if args else kind)


def too_wide_soft_limits(free, overrides):
    """The first free parameter without a prior whose soft limits (a norm's 0 to 1e24) are too wide, or None."""
    for p in free:
        if p.name not in overrides and (p.top - p.bot > 1e6 or (p.bot > 0 and p.top / p.bot > 1e8)):
            return p
    return None


def too_wide_text(p) -> str:
    """What is wrong with ``p``'s soft limits, without the remedy (each caller words its own)."""
    return f"parameter {p.name}: XSPEC's soft limits [{p.bot:g}, {p.top:g}] are too wide to simulate from"


def check_prior(free, overrides) -> None:
    """Refuse XSPEC's soft limits of norms (0 to 1e24): limits, not a prior one can simulate from."""
    p = too_wide_soft_limits(free, overrides)
    if p is not None:
        raise OptionError(
            f"{too_wide_text(p)}; give a prior, e.g. prior={{'{p.name}': ('log', lo, hi)}} "
            f"(command line: --prior {p.name}=log:LO:HI)")
