"""Priors over the free parameters of a model, and priors truncated to a region.

A :class:`BoxPrior` is a product of independent uniform or log-uniform
distributions, one per free parameter, over a box. It has a numpy face
(:meth:`BoxPrior.sample`, :meth:`BoxPrior.log_prob`), a torch face for ``sbi``
(:meth:`BoxPrior.to_torch`) and the bijection between the box and an
unconstrained space in which the posterior network is trained
(:meth:`BoxPrior.to_unconstrained`), so that every posterior sample lands inside
the prior bounds without rejection.

A :class:`TruncatedPrior` is the user's prior multiplied by the indicator of a
region, the only kind of restricted prior used for training here: a network
trained with the ordinary NPE loss on draws from it learns the posterior under
the user's prior wherever the region holds the posterior mass (truncated
sequential NPE, Deistler et al. 2022), whereas draws from any other proposal
would make it learn the posterior under that proposal (sbi issue 1334).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.special import expit, logit
from torch.distributions import Distribution, constraints

from xspec_sbi.model.parameters import ParameterSpec

__all__ = [
    "PriorError",
    "ParameterPrior",
    "BoxPrior",
    "TruncatedPrior",
    "TorchBoxPrior",
    "build_prior",
    "truncate",
    "table1_prior",
    "table1_frozen",
]

_KINDS = ("uniform", "log")


class PriorError(ValueError):
    """A prior specification that cannot be honoured (names the parameter)."""


@dataclass(frozen=True)
class ParameterPrior:
    """Prior of one free parameter.

    Parameters
    ----------
    name : str
        Parameter name as PyXspec shows it (``"powerlaw.norm"``).
    kind : {"uniform", "log"}
        Uniform in the parameter, or uniform in its natural logarithm.
    lower, upper : float
        Bounds in the parameter's unit; ``lower < upper``, and ``lower > 0``
        when ``kind == "log"``.
    unit : str
        Unit string carried for reports (``"keV"``, ``"10^22"``).
    """

    name: str
    kind: str
    lower: float
    upper: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise PriorError(
                f"prior of {self.name!r}: kind {self.kind!r} is not one of {_KINDS}"
            )
        lo, hi = float(self.lower), float(self.upper)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise PriorError(f"prior of {self.name!r}: bounds ({lo}, {hi}) must be finite")
        if not lo < hi:
            raise PriorError(
                f"prior of {self.name!r}: lower bound {lo} must be below upper bound {hi}"
            )
        if self.kind == "log" and lo <= 0.0:
            raise PriorError(
                f"prior of {self.name!r}: a log-uniform prior needs lower > 0, got {lo}"
            )
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)


@dataclass(frozen=True, eq=False)
class BoxPrior:
    """Product of independent uniform / log-uniform priors over a box.

    Parameters
    ----------
    parameters : tuple of ParameterPrior
        One entry per free parameter, in the order of the columns of ``theta``.

    Notes
    -----
    With ``g(t) = log t`` for a log-uniform parameter and ``g(t) = t`` otherwise,
    the position ``u = (g(t) - g(lo)) / (g(hi) - g(lo))`` is uniform on (0, 1) and
    the unconstrained coordinate is ``z = logit(u)``. Densities transform as
    ``p(theta) = q(z) |dz/dtheta|`` with
    ``log|dz/dtheta| = -log u - log(1 - u) + log g'(t) - log(g(hi) - g(lo))``.
    """

    parameters: tuple[ParameterPrior, ...]

    def __post_init__(self) -> None:
        params = tuple(self.parameters)
        if not params:
            raise PriorError("a prior needs at least one free parameter")
        names = [p.name for p in params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise PriorError(f"parameters {dup} appear more than once in the prior")
        object.__setattr__(self, "parameters", params)

    # -- description -------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names, in column order."""
        return tuple(p.name for p in self.parameters)

    @property
    def n_dim(self) -> int:
        """Number of free parameters."""
        return len(self.parameters)

    @property
    def lower(self) -> np.ndarray:
        """(n_dim,) lower bounds, in the parameters' units."""
        return np.array([p.lower for p in self.parameters])

    @property
    def upper(self) -> np.ndarray:
        """(n_dim,) upper bounds, in the parameters' units."""
        return np.array([p.upper for p in self.parameters])

    @property
    def is_log(self) -> np.ndarray:
        """(n_dim,) bool, True for log-uniform parameters."""
        return np.array([p.kind == "log" for p in self.parameters])

    def to_dict(self) -> dict:
        """JSON-ready description (round-trips through :meth:`from_dict`)."""
        return {
            "parameters": [
                {"name": p.name, "kind": p.kind, "lower": p.lower, "upper": p.upper,
                 "unit": p.unit}
                for p in self.parameters
            ]
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> BoxPrior:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(ParameterPrior(**p) for p in d["parameters"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoxPrior) and self.parameters == other.parameters

    def __hash__(self) -> int:
        return hash(self.parameters)

    # -- the warped coordinate g ---------------------------------------------
    def _g_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi, log = self.lower, self.upper, self.is_log
        g_lo, g_hi = lo.copy(), hi.copy()
        g_lo[log], g_hi[log] = np.log(lo[log]), np.log(hi[log])
        return g_lo, g_hi

    def _check_theta(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        if theta.ndim != 2 or theta.shape[1] != self.n_dim:
            raise PriorError(
                f"theta must have shape (n, {self.n_dim}) for parameters {self.names}, "
                f"got {theta.shape}"
            )
        return theta

    def to_unit(self, theta: np.ndarray) -> np.ndarray:
        """(n, n_dim) position u in [0, 1] of theta inside the box, in the warped coordinate g."""
        g_lo, g_hi = self._g_bounds()
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(self.is_log, np.log(np.where(theta > 0, theta, np.nan)), theta)
        return (g - g_lo) / (g_hi - g_lo)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """(n, n_dim) theta at warped position u in [0, 1]; the inverse of :meth:`to_unit`."""
        g_lo, g_hi = self._g_bounds()
        g = g_lo + u * (g_hi - g_lo)
        theta = np.array(g, dtype=float)
        theta[..., self.is_log] = np.exp(theta[..., self.is_log])
        # exp(log(hi)) can round one ulp past hi; the draw is inside in exact arithmetic.
        return np.clip(theta, self.lower, self.upper)

    # -- numpy face --------------------------------------------------------
    def sample(self, n: int, *, rng: np.random.Generator | int) -> np.ndarray:
        """Draw parameter vectors.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy.random.Generator or int
            Random generator or seed.

        Returns
        -------
        theta : (n, n_dim) ndarray
        """
        rng = np.random.default_rng(rng)
        return self.from_unit(rng.random((int(n), self.n_dim)))

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: True where every parameter lies within its bounds (inclusive)."""
        theta = self._check_theta(theta)
        return np.all((theta >= self.lower) & (theta <= self.upper), axis=1)

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """(n,) log prior density of theta (per unit of each parameter); -inf outside."""
        theta = self._check_theta(theta)
        lo, hi, log = self.lower, self.upper, self.is_log
        inside = self.contains(theta)
        safe = np.where(inside[:, None], theta, (lo + hi) / 2)
        dens = np.broadcast_to(-np.log(hi - lo), theta.shape).copy()
        dens[:, log] = -np.log(safe[:, log]) - np.log(np.log(hi[log] / lo[log]))
        return np.where(inside, dens.sum(axis=1), -np.inf)

    # -- bounded parameterisation -----------------------------------------------
    def to_unconstrained(self, theta: np.ndarray) -> np.ndarray:
        """Map theta inside the box to unconstrained z (logit of the warped position).

        Parameters
        ----------
        theta : (n, n_dim) ndarray
            Points inside the prior box; points on or outside a bound give +-inf/nan.

        Returns
        -------
        z : (n, n_dim) ndarray
        """
        theta = self._check_theta(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            return logit(self.to_unit(theta))

    def from_unconstrained(self, z: np.ndarray) -> np.ndarray:
        """Map unconstrained z back into the prior box; the inverse of :meth:`to_unconstrained`.

        Parameters
        ----------
        z : (n, n_dim) ndarray

        Returns
        -------
        theta : (n, n_dim) ndarray
            Always within ``[lower, upper]``.
        """
        z = np.asarray(z, dtype=float)
        return self.from_unit(expit(z))

    def log_abs_det_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """(n,) ``log|det dz/dtheta|`` of :meth:`to_unconstrained` at theta (inside the box)."""
        theta = self._check_theta(theta)
        g_lo, g_hi = self._g_bounds()
        u = self.to_unit(theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_gprime = np.where(self.is_log, -np.log(np.where(theta > 0, theta, np.nan)), 0.0)
            terms = -np.log(u) - np.log1p(-u) + log_gprime - np.log(g_hi - g_lo)
        return terms.sum(axis=1)

    # -- torch face --------------------------------------------------------
    def to_torch(self) -> TorchBoxPrior:
        """A ``torch.distributions.Distribution`` view for ``sbi``."""
        return TorchBoxPrior(self)


class TorchBoxPrior(Distribution):
    """Torch view of a :class:`BoxPrior` (sample/log_prob on tensors, support).

    Sampling uses torch's global generator, as ``sbi`` expects of a prior; seed it
    with ``torch.manual_seed`` for reproducible draws.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, prior: BoxPrior) -> None:
        self.prior = prior
        self._lower = torch.as_tensor(prior.lower, dtype=torch.float32)
        self._upper = torch.as_tensor(prior.upper, dtype=torch.float32)
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([prior.n_dim]),
                         validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.interval(self._lower, self._upper), 1)

    @property
    def mean(self) -> torch.Tensor:
        lo, hi, log = self.prior.lower, self.prior.upper, self.prior.is_log
        m = (lo + hi) / 2
        m[log] = (hi[log] - lo[log]) / np.log(hi[log] / lo[log])
        return torch.as_tensor(m, dtype=torch.float32)

    @property
    def variance(self) -> torch.Tensor:
        lo, hi, log = self.prior.lower, self.prior.upper, self.prior.is_log
        m = self.mean.double().numpy()
        second = (lo**2 + lo * hi + hi**2) / 3
        second[log] = (hi[log] ** 2 - lo[log] ** 2) / (2 * np.log(hi[log] / lo[log]))
        return torch.as_tensor(second - m**2, dtype=torch.float32)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape)
        u = torch.rand(shape.numel(), self.prior.n_dim, dtype=torch.float64)
        theta = self.prior.from_unit(u.numpy())
        return torch.as_tensor(theta, dtype=torch.float32).reshape(*shape, self.prior.n_dim)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(value)
        flat = value.detach().reshape(-1, self.prior.n_dim).double().cpu().numpy()
        lp = self.prior.log_prob(flat)
        return torch.as_tensor(lp, dtype=torch.float32).reshape(value.shape[:-1])


# -- construction from parameter specs --------------------------------------
def build_prior(
    parameters: Sequence[ParameterSpec],
    overrides: Mapping[str, tuple | str] | None = None,
) -> BoxPrior:
    """Build the prior over the free parameters of a model.

    Parameters
    ----------
    parameters : sequence of ParameterSpec
        All model parameters; frozen and linked ones are left out of the prior
        (they keep their values in the simulator).
    overrides : mapping, optional
        Per-parameter prior by name: ``("uniform", lo, hi)``, ``("log", lo, hi)``,
        or the string ``"log"`` / ``"uniform"`` to keep XSPEC's soft limits
        (``bot``, ``top``) with that kind. Parameters not named get a uniform
        prior over their soft limits.

    Returns
    -------
    BoxPrior

    Raises
    ------
    PriorError
        For an unknown or non-free parameter name, a malformed entry, bounds
        with ``lo >= hi``, a log prior with ``lo <= 0``, or bounds outside the
        parameter's hard limits (``min``, ``max``).
    """
    overrides = dict(overrides or {})
    specs = {p.name: p for p in parameters}
    for name in overrides:
        if name not in specs:
            raise PriorError(
                f"prior override for unknown parameter {name!r}; "
                f"model parameters are {list(specs)}"
            )
        if not specs[name].free:
            raise PriorError(
                f"prior override for {name!r}, which is frozen or linked; thaw it first"
            )
    priors = []
    for spec in parameters:
        if not spec.free:
            continue
        kind, lo, hi = _parse_override(spec, overrides.get(spec.name, "uniform"))
        if lo < spec.min or hi > spec.max:
            raise PriorError(
                f"prior of {spec.name!r}: bounds ({lo}, {hi}) leave XSPEC's hard limits "
                f"({spec.min}, {spec.max})"
            )
        priors.append(ParameterPrior(spec.name, kind, lo, hi, spec.unit))
    return BoxPrior(tuple(priors))


def _parse_override(spec: ParameterSpec, entry: tuple | str) -> tuple[str, float, float]:
    if isinstance(entry, str):
        return entry, spec.bot, spec.top
    if not isinstance(entry, (tuple, list)) or len(entry) != 3:
        raise PriorError(
            f"prior override for {spec.name!r} must be (kind, lower, upper) or a kind "
            f"string, got {entry!r}"
        )
    kind, lo, hi = entry
    try:
        return str(kind), float(lo), float(hi)
    except (TypeError, ValueError) as exc:
        raise PriorError(f"prior override for {spec.name!r}: bounds must be numbers, got {entry!r}") from exc


_TABLE1 = {
    1: {"TBabs.nH": (0.1, 0.3), "powerlaw.PhoIndex": (0.5, 2.5), "powerlaw.norm": (0.01, 100.0)},
    2: {"TBabs.nH": (0.15, 0.35), "powerlaw.PhoIndex": (1.0, 3.0), "powerlaw.norm": (0.01, 10.0),
        "bbodyrad.kT": (0.3, 3.0), "bbodyrad.norm": (1.0, 1e5)},
    3: {"powerlaw.norm": (0.1, 10.0), "bbodyrad.kT": (0.1, 4.5), "bbodyrad.norm": (0.1, 1e5)},
}
_TABLE1_FROZEN = {1: {}, 2: {}, 3: {"TBabs.nH": 0.2, "powerlaw.PhoIndex": 1.7}}


def table1_prior(model_number: int, norm: str = "log") -> dict[str, tuple[str, float, float]]:
    """Prior overrides of Table 1 of Barret & Dupourque (set-ups 1, 2, 3).

    Model 1 is ``tbabs*powerlaw``; models 2 and 3 are ``tbabs*(powerlaw+bbodyrad)``,
    model 3 with ``TBabs.nH`` = 0.2 (10^22 cm^-2) and ``powerlaw.PhoIndex`` = 1.7
    frozen (see :func:`table1_frozen`). ``TBabs.nH``, ``powerlaw.PhoIndex`` and
    ``bbodyrad.kT`` (keV) are uniform; the normalisations (photons keV^-1 cm^-2 s^-1
    at 1 keV; R_km^2/D_10^2) are log-uniform or uniform as ``norm`` says (the
    paper allows both and uses log-uniform).

    Parameters
    ----------
    model_number : {1, 2, 3}
    norm : {"log", "uniform"}

    Returns
    -------
    dict
        ``{name: (kind, lower, upper)}``, ready for :func:`build_prior`.
    """
    if model_number not in _TABLE1:
        raise PriorError(f"table1_prior: model_number must be 1, 2 or 3, got {model_number!r}")
    if norm not in _KINDS:
        raise PriorError(f"table1_prior: norm must be one of {_KINDS}, got {norm!r}")
    return {
        name: ((norm if name.endswith(".norm") else "uniform"), lo, hi)
        for name, (lo, hi) in _TABLE1[model_number].items()
    }


def table1_frozen(model_number: int) -> dict[str, float]:
    """Parameters frozen in Table 1's set-up ``model_number``: ``{name: value}``."""
    if model_number not in _TABLE1_FROZEN:
        raise PriorError(f"table1_frozen: model_number must be 1, 2 or 3, got {model_number!r}")
    return dict(_TABLE1_FROZEN[model_number])


# -- truncation -----------------------------------------------------------
Region = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class TruncatedPrior:
    """The user's prior times the indicator of a region, inside a sub-box.

    Build it with :func:`truncate`. Draws come from the prior restricted to the
    sub-box (exact: the prior factorises) and are kept when ``region`` accepts
    them, so the density is ``prior(theta) * 1[theta in region and box] / mass``.

    Parameters
    ----------
    prior : BoxPrior
        The user's prior.
    region : callable
        ``region(theta (n, n_dim)) -> (n,) bool``.
    lower, upper : (n_dim,) ndarray
        Sub-box enclosing the region, within the prior bounds.
    acceptance : float
        Fraction of sub-box draws the region accepted, measured at construction.
    mass : float
        Estimated prior mass of the truncated region (sub-box mass x acceptance).
    label : str
        What defined the region (for reports).
    """

    prior: BoxPrior
    region: Region
    lower: np.ndarray
    upper: np.ndarray
    acceptance: float
    mass: float
    label: str = ""
    _box: BoxPrior = field(init=False, repr=False)

    def __post_init__(self) -> None:
        box = BoxPrior(tuple(
            ParameterPrior(p.name, p.kind, lo, hi, p.unit)
            for p, lo, hi in zip(self.prior.parameters, self.lower, self.upper)
        ))
        object.__setattr__(self, "_box", box)

    @property
    def names(self) -> tuple[str, ...]:
        return self.prior.names

    @property
    def n_dim(self) -> int:
        return self.prior.n_dim

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: inside the sub-box and the region."""
        theta = self.prior._check_theta(theta)
        inside = self._box.contains(theta)
        out = np.zeros(len(theta), dtype=bool)
        if inside.any():
            out[inside] = np.asarray(self.region(theta[inside]), dtype=bool)
        return out

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """(n,) log density (normalised with the estimated :attr:`mass`); -inf outside."""
        inside = self.contains(theta)
        lp = self.prior.log_prob(theta) - math.log(self.mass)
        return np.where(inside, lp, -np.inf)

    def sample(self, n: int, *, rng: np.random.Generator | int,
               max_candidates: int = 50_000_000) -> np.ndarray:
        """Draw ``n`` parameter vectors by rejection from the prior on the sub-box.

        Parameters
        ----------
        n : int
        rng : numpy.random.Generator or int
        max_candidates : int
            Give up (RuntimeError) after this many candidate draws.

        Returns
        -------
        theta : (n, n_dim) ndarray
        """
        rng = np.random.default_rng(rng)
        n = int(n)
        kept, n_kept, n_tried = [], 0, 0
        acc = max(self.acceptance, 1e-3)
        while n_kept < n:
            batch = int(min(max(1.2 * (n - n_kept) / acc, 256), 2_000_000))
            cand = self._box.sample(batch, rng=rng)
            good = cand[np.asarray(self.region(cand), dtype=bool)]
            kept.append(good)
            n_kept += len(good)
            n_tried += batch
            if n_kept < n and n_tried >= max_candidates:
                raise RuntimeError(
                    f"truncated prior ({self.label}): only {n_kept} of {n} draws accepted "
                    f"after {n_tried} candidates"
                )
        return np.concatenate(kept)[:n]


def truncate(
    prior: BoxPrior,
    region: Region,
    *,
    rng: np.random.Generator | int,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    n_probe: int = 20_000,
    label: str = "",
) -> TruncatedPrior:
    """Truncate the user's prior to ``region`` (inside an optional sub-box).

    Parameters
    ----------
    prior : BoxPrior
    region : callable
        ``region(theta (n, n_dim)) -> (n,) bool``.
    rng : numpy.random.Generator or int
        Used to measure the acceptance fraction.
    lower, upper : (n_dim,) ndarray, optional
        Sub-box enclosing the region (clipped to the prior bounds); default the prior box.
    n_probe : int
        Candidate draws used to measure the acceptance fraction.
    label : str

    Returns
    -------
    TruncatedPrior

    Raises
    ------
    PriorError
        When no probe draw falls in the region.
    """
    rng = np.random.default_rng(rng)
    lo = prior.lower if lower is None else np.clip(np.asarray(lower, float), prior.lower, prior.upper)
    hi = prior.upper if upper is None else np.clip(np.asarray(upper, float), prior.lower, prior.upper)
    if np.any(lo >= hi):
        bad = [n for n, a, b in zip(prior.names, lo, hi) if a >= b]
        raise PriorError(f"truncation sub-box is empty along {bad}")
    probe_prior = BoxPrior(tuple(
        ParameterPrior(p.name, p.kind, a, b, p.unit) for p, a, b in zip(prior.parameters, lo, hi)
    ))
    probe = probe_prior.sample(n_probe, rng=rng)
    acceptance = float(np.mean(np.asarray(region(probe), dtype=bool)))
    if acceptance == 0.0:
        raise PriorError(f"truncation region ({label}) accepted none of {n_probe} prior draws")
    # Prior mass of the sub-box: product over parameters of the warped width fraction.
    g = lambda p, v: math.log(v) if p.kind == "log" else v  # noqa: E731
    box_mass = float(np.prod([
        (g(p, b) - g(p, a)) / (g(p, p.upper) - g(p, p.lower))
        for p, a, b in zip(prior.parameters, lo, hi)
    ]))
    return TruncatedPrior(prior, region, lo, hi, acceptance, box_mass * acceptance, label)
