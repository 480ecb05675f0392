"""Goodman-Weare ensemble MCMC (emcee) with XSPEC's ``chain`` conventions.

XSPEC conventions, read from XSPEC's ``Chain::runGW`` and ``initializeWalkers``
(``Xspec/src/XSFit/MCMC/Chain.cxx``, HEASoft 6.20) and the ``chain`` command
page of the XSPEC manual:

* ``length`` and ``burn`` count samples over *all* walkers: the ensemble makes
  ``(burn + length) / walkers`` steps, and both must be multiples of
  ``walkers``, which must be even. The initial ensemble is the first step, so
  with ``burn = 0`` the initial walkers are the first rows of the chain.
* Rows are stored step by step, walker by walker within a step (the order of
  XSPEC's chain files); ``length`` rows are kept.
* Stretch move with ``a = 2``; a proposal outside the hard limits is rejected;
  acceptance ``(n_free - 1) ln z - (C_new - C_old) / 2``. emcee's
  ``StretchMove`` is the same move.
* Initial walkers: with a covariance matrix (XSPEC: the fit's), Gaussian draws
  around the start; otherwise ``start + delta (u - 1/2) 20`` with ``u``
  uniform, i.e. within ten deltas. Draws outside the hard limits (or with a
  non-finite statistic) are redrawn.
* XSPEC's defaults: 8 walkers, burn 5000, length 50000.

The log-probability is ``-C / 2 + ln prior`` with a prior uniform within the
hard limits, or ``p(x) ~ 1/x`` (log-uniform) for parameters that ask for it,
or the inference prior itself (``prior=``: a :class:`BoxPrior`, Gaussian
parameters included), so that the chain and the network share one density.

Just over 400 lines: the conventions above, the walkers' start and the run
are one reading of XSPEC's chain, kept together so they can be checked
against it side by side.
Walkers: the default (8) is raised, with a warning, to the smallest even
number ``>= 2 n_free`` (emcee's and Goodman-Weare's requirement); an explicit
count that is odd or too small is an error, as is a burn or length that is not
a multiple of an explicit walker count (XSPEC refuses them too).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import emcee
import numpy as np

__all__ = [
    "XSPEC_DEFAULT_WALKERS",
    "XSPEC_DEFAULT_BURN",
    "XSPEC_DEFAULT_LENGTH",
    "ChainConfigError",
    "ChainResult",
    "resolve_walkers",
    "log_prior",
    "initial_walkers",
    "run_chain",
]

XSPEC_DEFAULT_WALKERS = 8
XSPEC_DEFAULT_BURN = 5000
XSPEC_DEFAULT_LENGTH = 50000

# Rounds of redrawing initial walkers that fall outside the limits.
_MAX_INIT_ROUNDS = 1000

StatFunction = Callable[[np.ndarray], np.ndarray]


class ChainConfigError(ValueError):
    """Invalid chain settings: walkers, burn, length, limits or start."""


@dataclass(frozen=True)
class ChainResult:
    """A Goodman-Weare chain after burn-in, in XSPEC's row order.

    Attributes
    ----------
    samples : numpy.ndarray, (length, n_free)
        Parameter vectors, step-major then walker (row ``i`` is walker
        ``i % walkers`` at step ``i // walkers``).
    stat : numpy.ndarray, (length,)
        Fit statistic (C-stat) of each sample, as XSPEC's ``FIT_STATISTIC``.
    names : tuple of str
        Free-parameter names, one per column.
    walkers : int
        Number of walkers.
    burn, length : int
        Discarded and kept samples, counted over all walkers.
    acceptance_fraction : numpy.ndarray, (walkers,)
        Fraction of accepted proposals per walker over the whole run.
    log_uniform : tuple of bool
        Which parameters had a log-uniform prior.
    """

    samples: np.ndarray
    stat: np.ndarray
    names: tuple[str, ...]
    walkers: int
    burn: int
    length: int
    acceptance_fraction: np.ndarray
    log_uniform: tuple[bool, ...]

    def walker_chains(self) -> np.ndarray:
        """Samples per walker: ``(length // walkers, walkers, n_free)``."""
        return self.samples.reshape(self.length // self.walkers, self.walkers, -1)


def log_prior(theta, lower, upper, log_uniform=None) -> np.ndarray:
    """Normalised log prior density: uniform or log-uniform within the limits.

    Parameters
    ----------
    theta : array_like, (n_batch, n_free)
    lower, upper : array_like, (n_free,)
        Finite hard limits; ``lower > 0`` where ``log_uniform``.
    log_uniform : array_like of bool, (n_free,), optional

    Returns
    -------
    numpy.ndarray, (n_batch,)
        ``-inf`` outside the limits.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    return _prior_box(lower, upper, log_uniform, theta.shape[-1]).log_prob(theta)


def _prior_box(lower, upper, log_uniform, n_free: int):
    """The chain's prior is the inference prior: one density, :class:`BoxPrior`'s."""
    from xspec_sbi.inference.priors import BoxPrior, ParameterPrior
    lower = np.asarray(lower, dtype=float).reshape(-1)
    upper = np.asarray(upper, dtype=float).reshape(-1)
    logu = np.zeros(n_free, bool) if log_uniform is None else np.asarray(log_uniform, bool).reshape(-1)
    return BoxPrior(tuple(ParameterPrior(f"p{i + 1}", "log" if u else "uniform", float(a), float(b))
                          for i, (a, b, u) in enumerate(zip(lower, upper, logu))))


def resolve_walkers(walkers, burn, length, n_free):
    """XSPEC's walker rules: ``(walkers, burn, length)``; None gives 8, raised to ``2 n_free``."""
    need = 2 * n_free
    if walkers is None:
        w = max(XSPEC_DEFAULT_WALKERS, need)
        if w != XSPEC_DEFAULT_WALKERS:
            new_burn = -(-burn // w) * w
            new_length = -(-length // w) * w
            # only what changed: "length 50000 -> 50000" reads as a change that is not one
            moved = [f"{what} {old} -> {new}" for what, old, new in
                     (("burn", burn, new_burn), ("length", length, new_length)) if old != new]
            warnings.warn(
                f"{n_free} free parameters need at least {need} walkers: using {w} instead of "
                f"XSPEC's default {XSPEC_DEFAULT_WALKERS}"
                + (f"; {', '.join(moved)} (multiples of the walkers)" if moved else ""),
                UserWarning,
                stacklevel=3,
            )
            return w, new_burn, new_length
        w = XSPEC_DEFAULT_WALKERS
    else:
        w = int(walkers)
        if w != walkers or w < 2 or w % 2:
            raise ChainConfigError(f"walkers must be a positive even integer, got {walkers!r}")
        if w < need:
            raise ChainConfigError(
                f"walkers={w} is too few for {n_free} free parameters: Goodman-Weare needs at "
                f"least twice as many walkers ({need})"
            )
    for label, value in (("burn", burn), ("length", length)):
        if value % w:
            raise ChainConfigError(
                f"{label}={value} must be a multiple of walkers={w} "
                "(XSPEC counts it over all walkers)"
            )
    return w, burn, length


def initial_walkers(
    start,
    lower,
    upper,
    walkers: int,
    rng: np.random.Generator,
    *,
    covariance=None,
    deltas=None,
    accept: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Initial ensemble around ``start``, inside the hard limits (XSPEC's recipe).

    Parameters
    ----------
    start : array_like, (n_free,)
        Centre of the ensemble, e.g. the best fit.
    lower, upper : array_like, (n_free,)
        Hard limits.
    walkers : int
        Number of walkers.
    rng : numpy.random.Generator
    covariance : array_like, (n_free, n_free), optional
        Gaussian draws ``N(start, covariance)`` (XSPEC uses the fit covariance).
    deltas : array_like, (n_free,), optional
        Without a covariance: ``start + deltas (u - 1/2) 20``, ``u ~ U(0, 1)``.
        Default: 1% of ``|start|`` (of ``min(upper - lower, 1)`` where ``start`` is 0).
    accept : callable, optional
        ``accept(points) -> bool (n,)``; rejected points are redrawn (used to
        refuse points with a non-finite statistic).

    Returns
    -------
    numpy.ndarray, (walkers, n_free)
    """
    start = np.asarray(start, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    n = start.size
    if covariance is not None:
        cov = np.asarray(covariance, dtype=float)
        if cov.shape != (n, n):
            raise ChainConfigError(f"covariance has shape {cov.shape}, expected {(n, n)}")
        eigvals = np.linalg.eigvalsh(0.5 * (cov + cov.T))
        if np.any(eigvals < -1e-12 * max(abs(eigvals).max(), 1e-300)):
            raise ChainConfigError("covariance is not positive semi-definite")

        def draw(k):
            return rng.multivariate_normal(start, cov, size=k, method="eigh")
    else:
        if deltas is None:
            width = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
            d = np.where(start != 0, 0.01 * np.abs(start), 0.01 * np.minimum(width, 1.0))
        else:
            d = np.asarray(deltas, dtype=float).reshape(-1)
            if d.size != n or np.any(d <= 0) or not np.all(np.isfinite(d)):
                raise ChainConfigError(f"deltas must be {n} positive finite values, got {deltas!r}")

        def draw(k):
            return start + d * (rng.uniform(size=(k, n)) - 0.5) * 20.0

    out = np.empty((walkers, n))
    filled = 0
    for _ in range(_MAX_INIT_ROUNDS):
        cand = draw(walkers - filled)
        ok = np.all((cand >= lower) & (cand <= upper), axis=1)
        if accept is not None and ok.any():
            ok[ok] = np.asarray(accept(cand[ok]), bool)
        good = cand[ok]
        out[filled:filled + len(good)] = good
        filled += len(good)
        if filled == walkers:
            return out
    raise ChainConfigError(
        f"could not draw {walkers} initial walkers inside the hard limits with a finite statistic "
        f"after {_MAX_INIT_ROUNDS} rounds; check the start, covariance or deltas"
    )


def _as_seed_state(seed) -> tuple[np.random.Generator, dict]:
    rng = np.random.default_rng(seed)
    # emcee draws from a legacy RandomState; seed it from our Generator.
    legacy = np.random.RandomState(rng.integers(0, 2**32 - 1, dtype=np.uint64))
    return rng, legacy.get_state()


def run_chain(
    stat: StatFunction,
    start,
    lower,
    upper,
    *,
    names: Sequence[str] | None = None,
    walkers: int | None = None,
    burn: int = XSPEC_DEFAULT_BURN,
    length: int = XSPEC_DEFAULT_LENGTH,
    covariance=None,
    deltas=None,
    log_uniform=None,
    seed: int | np.random.Generator | None = None,
    progress: bool = False,
    prior=None,
) -> ChainResult:
    """Run a Goodman-Weare chain on ``-C/2 + ln prior`` with XSPEC's conventions.

    Parameters
    ----------
    stat : callable
        ``stat(theta) -> (n_batch,)`` fit statistic (C-stat) of free-parameter
        vectors ``theta`` of shape ``(n_batch, n_free)``; called on half the
        ensemble at a time.
    start : array_like, (n_free,)
        Centre of the initial ensemble (e.g. the best fit).
    lower, upper : array_like, (n_free,)
        Hard limits; the prior is zero outside them.
    names : sequence of str, optional
        Parameter names (default ``"p1", "p2", ...``).
    walkers : int, optional
        Even number of walkers, at least ``2 n_free``. Default: XSPEC's 8,
        raised with a warning when there are more than 4 free parameters.
    burn, length : int
        Discarded and kept samples counted over all walkers (XSPEC's ``chain
        burn`` and ``chain length``).
    covariance : array_like, (n_free, n_free), optional
        Covariance for the initial walkers (e.g. from the fit).
    deltas : array_like, (n_free,), optional
        Parameter deltas for the initial walkers when no covariance is given.
    log_uniform : array_like of bool, (n_free,), optional
        Parameters with a log-uniform prior (their lower limit must be > 0).
    seed : int or numpy.random.Generator, optional
        Seeds the initial walkers and the moves; same seed, same chain.
    progress : bool
        Show emcee's progress bar.
    prior : BoxPrior, optional
        The prior density itself (uniform, log-uniform or truncated Gaussian per
        parameter); its bounds must be ``lower`` and ``upper``, and it replaces
        ``log_uniform``. Default: uniform / log-uniform within the limits.

    Returns
    -------
    ChainResult

    Raises
    ------
    ChainConfigError
        On invalid walkers, burn, length, limits, start or prior settings.
    """
    start = np.asarray(start, dtype=float).reshape(-1)
    n_free = start.size
    lower = np.asarray(lower, dtype=float).reshape(-1)
    upper = np.asarray(upper, dtype=float).reshape(-1)
    if lower.size != n_free or upper.size != n_free:
        raise ChainConfigError(
            f"lower/upper have {lower.size}/{upper.size} entries, expected {n_free}"
        )
    names = tuple(names) if names is not None else tuple(f"p{i + 1}" for i in range(n_free))
    if len(names) != n_free:
        raise ChainConfigError(f"names has {len(names)} entries, expected {n_free}")
    bad = [names[i] for i in np.flatnonzero(~(lower < upper))]
    if bad:
        raise ChainConfigError(f"parameter(s) {bad}: lower limit must be below the upper limit")
    outside = [names[i] for i in np.flatnonzero((start < lower) | (start > upper))]
    if outside:
        raise ChainConfigError(f"start of parameter(s) {outside} lies outside the hard limits")
    logu = np.zeros(n_free, bool)
    if prior is not None:
        if log_uniform is not None:
            raise ChainConfigError("give the chain's prior as prior= or log_uniform=, not both")
        if prior.n_dim != n_free or not (np.array_equal(prior.lower, lower)
                                         and np.array_equal(prior.upper, upper)):
            raise ChainConfigError(f"prior= must span the hard limits: its bounds "
                                   f"{prior.lower.tolist()}-{prior.upper.tolist()}, the limits "
                                   f"{lower.tolist()}-{upper.tolist()}")
        logu = prior.is_log
    elif log_uniform is not None:
        logu = np.asarray(log_uniform, bool).reshape(-1)
    if logu.size != n_free:
        raise ChainConfigError(f"log_uniform has {logu.size} entries, expected {n_free}")
    not_positive = [names[i] for i in np.flatnonzero(logu & ~(lower > 0))]
    if not_positive:
        raise ChainConfigError(
            f"log-uniform prior needs a lower limit > 0 for parameter(s) {not_positive}"
        )
    not_finite = [names[i] for i in np.flatnonzero(~np.isfinite(upper - lower))]
    if not_finite:
        raise ChainConfigError(f"the prior needs finite hard limits for parameter(s) {not_finite}")
    if int(burn) != burn or burn < 0:
        raise ChainConfigError(f"burn must be a non-negative integer, got {burn!r}")
    if int(length) != length or length <= 0:
        raise ChainConfigError(f"length must be a positive integer, got {length!r}")
    w, burn, length = resolve_walkers(walkers, int(burn), int(length), n_free)

    prior_box = _prior_box(lower, upper, logu, n_free) if prior is None else prior

    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp = prior_box.log_prob(np.atleast_2d(theta))
        c = np.full(theta.shape[0], np.inf)
        inside = np.isfinite(lp)
        if inside.any():
            values = np.asarray(stat(theta[inside]), dtype=float).reshape(-1)
            if values.size != int(inside.sum()):
                raise ChainConfigError(
                    f"stat returned {values.size} values for {int(inside.sum())} parameter vectors"
                )
            c[inside] = np.where(np.isnan(values), np.inf, values)
        return lp - 0.5 * c, c

    def log_prob(theta: np.ndarray) -> np.ndarray:
        logp, c = evaluate(theta)
        return np.column_stack([logp, c])

    rng, emcee_state = _as_seed_state(seed)
    init = initial_walkers(
        start, lower, upper, w, rng, covariance=covariance, deltas=deltas,
        accept=lambda pts: np.isfinite(evaluate(pts)[0]),
    )
    init_logp, init_stat = evaluate(init)

    n_steps = (burn + length) // w
    sampler = emcee.EnsembleSampler(w, n_free, log_prob, vectorize=True)
    sampler.random_state = emcee_state
    state = emcee.State(init, log_prob=init_logp, blobs=init_stat)
    # XSPEC's first step is the initial ensemble itself.
    if n_steps > 1:
        sampler.run_mcmc(state, n_steps - 1, progress=progress, skip_initial_state_check=False)
        chain = np.concatenate([init[None], sampler.get_chain()], axis=0)
        stats = np.concatenate([init_stat[None], sampler.get_blobs()], axis=0)
        acceptance = np.asarray(sampler.acceptance_fraction, dtype=float)
    else:
        chain, stats = init[None], init_stat[None]
        acceptance = np.zeros(w)
    keep = length // w
    samples = chain[-keep:].reshape(length, n_free)
    stat_rows = np.asarray(stats[-keep:], dtype=float).reshape(length)
    for arr in (samples, stat_rows, acceptance):
        arr.setflags(write=False)
    return ChainResult(
        samples=samples, stat=stat_rows, names=names, walkers=w, burn=burn, length=length,
        acceptance_fraction=acceptance, log_uniform=tuple(bool(b) for b in logu),
    )
