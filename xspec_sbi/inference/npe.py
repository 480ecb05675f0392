"""Neural posterior estimation: training, batched sampling, multi-round, persistence.

The network is a conditional masked autoregressive flow (by default this
package's :class:`xspec_sbi.inference.flows.ConditionalMAF`, 5 transforms of 50 hidden
units as in Barret & Dupourque; ``sbi``'s flows by name), optionally an ensemble
of them, trained here with a plain full-tensor loop (no DataLoader) on

* parameters mapped to an unconstrained space of the prior box (the probit, or
  the logit, of the warped position in the box) and z-scored, so every
  posterior sample lands inside the prior bounds with no rejection;
* counts transformed (``"log1p"``, ``"anscombe"`` or ``"none"``), z-scored per bin
  and optionally compressed by PCA (90 % of the variance by default when asked).

Training on draws from the prior, or from the prior truncated to a region
(:class:`xspec_sbi.inference.priors.TruncatedPrior`), gives the posterior under the user's
prior; :func:`fit_multi_round` builds such truncated proposals round after round
(truncated sequential NPE, Deistler et al. 2022).
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from scipy.special import ndtr, ndtri
from torch import nn

from xspec_sbi import __version__
from xspec_sbi.inference.flows import ConditionalMAF
from xspec_sbi.inference.priors import BoxPrior, TruncatedPrior, truncate

__all__ = [
    "NPEError",
    "FingerprintMismatch",
    "NPEConfig",
    "FeatureTransform",
    "TrainingSummary",
    "NeuralPosterior",
    "FlowEnsemble",
    "MultiRoundResult",
    "train_npe",
    "simulate_training_set",
    "fit_single_round",
    "fit_multi_round",
    "hpd_truncation",
    "resolve_device",
    "seeded_torch",
    "torch_threads",
    "Simulator",
]

Simulator = Callable[[np.ndarray, np.random.Generator], np.ndarray]

_ESTIMATORS = ("cmaf", "maf", "nsf", "maf_rqs", "zuko_maf", "zuko_nsf", "zuko_naf", "zuko_nice")
_X_TRANSFORMS = ("log1p", "anscombe", "none")
_THETA_MAPS = ("probit", "logit")
_EMBEDDINGS = (None, "mlp")
_CONFIG_NAME = "config.json"
_WEIGHTS_NAME = "weights.pt"
_FORMAT = "xspec_sbi.npe/1"


class NPEError(ValueError):
    """Bad configuration or input for training/sampling (names the keyword)."""


class FingerprintMismatch(NPEError):
    """A saved estimator was built for a different model/prior/response."""


@dataclass(frozen=True)
class NPEConfig:
    """Network, input transform and training settings.

    Parameters
    ----------
    estimator : str
        ``"cmaf"`` (default): this package's conditional affine MAF
        (:class:`xspec_sbi.inference.flows.ConditionalMAF`), whose every autoregressive
        output sees the condition and whose condition term is computed once per
        observation when sampling. ``sbi`` flow builders: ``"zuko_maf"``,
        ``"maf"`` (nflows MAF, sbi's default; its first autoregressive output in
        each transform ignores the condition, which can leave a parameter
        unlearned), ``"nsf"``, ``"maf_rqs"``, ``"zuko_nsf"``, ``"zuko_naf"``,
        ``"zuko_nice"``.
    hidden_features, num_transforms : int
        Width and number of the flow's transforms (paper: 50, 5). The nflows
        MAF has two hidden layers per transform; sbi's zuko builders give each
        transform ``num_transforms`` hidden layers.
    num_blocks : int
        Hidden layers per transform of ``"cmaf"``.
    ensemble_size : int
        Number of flows trained independently on the same simulations (other
        initialisations and batch orders); the posterior is their equal-weight
        mixture. Each member is slightly over-confident (68 % intervals held
        ~0.65 of the truths on the reference case), the mixture is close to
        nominal; training costs ``ensemble_size`` times as much, sampling the same.
    num_bins : int
        Spline bins for the spline flows.
    theta_map : {"probit", "logit"}
        Map from the warped position ``u`` in the prior box (uniform under the
        prior) to the unconstrained space the flow models: ``Phi^-1(u)``
        (default; the prior becomes a standard normal, and a posterior that is
        flat up to a bound keeps a Gaussian tail, which an affine flow with a
        Gaussian base represents) or ``logit(u)`` (exponential tails at the
        bounds, which an affine flow cuts short: intervals near a bound came out
        too narrow).
    x_transform : {"log1p", "anscombe", "none"}
        Transform of the counts before z-scoring: ``log(1 + x)``,
        ``2 sqrt(x + 3/8)`` or none.
    pca_variance : float or None
        Keep the leading principal components of the z-scored inputs holding
        this fraction of the variance (paper: 0.9); None: no compression.
    embedding : {None, "mlp"}
        Embedding net for the (transformed) counts, trained jointly (default
        "mlp": two hidden ReLU layers). It is evaluated once per observation,
        which makes batched sampling several times cheaper than conditioning
        every flow layer on all bins.
    embedding_features : int
        Output width of the embedding net (hidden width is twice this).
    batch_size : int
    learning_rate : float
        Adam step size.
    validation_fraction : float
        Held-out fraction used for early stopping.
    patience : int
        Epochs without improvement of the smoothed validation loss before
        stopping (the weights of the best raw validation loss are restored).
    max_epochs : int
    min_epochs : int
        Never stop before this many epochs (a noisy validation curve early on
        would otherwise end training after a few epochs).
    smoothing : float
        Weight of the newest epoch in the exponential moving average of the
        validation loss that patience is counted on (1: no smoothing).
    lr_decay_patience : int or None
        Halve the step size after this many epochs without improvement of the
        smoothed validation loss (None: constant step size).
    clip_max_norm : float or None
        Gradient norm clip.
    num_threads : int or None
        torch CPU threads while training and sampling (restored after); None
        keeps torch's setting. One thread is fastest for these small networks
        on a shared machine.
    calibrate : bool
        ``"cmaf"`` only: after training, set the scales of the flow's Gaussian
        base to their maximum-likelihood values on the validation pairs
        (:meth:`xspec_sbi.inference.flows.ConditionalMAF.calibrate_base`), which widens an
        over-confident posterior.
    """

    estimator: str = "cmaf"
    hidden_features: int = 50
    num_transforms: int = 5
    num_blocks: int = 2
    ensemble_size: int = 1
    num_bins: int = 10
    theta_map: str = "probit"
    x_transform: str = "log1p"
    pca_variance: float | None = None
    embedding: str | None = "mlp"
    embedding_features: int = 32
    batch_size: int = 512
    learning_rate: float = 2e-3
    validation_fraction: float = 0.1
    patience: int = 20
    max_epochs: int = 1000
    min_epochs: int = 20
    smoothing: float = 0.5
    lr_decay_patience: int | None = 8
    clip_max_norm: float | None = 5.0
    num_threads: int | None = 1
    calibrate: bool = True

    def __post_init__(self) -> None:
        if self.estimator not in _ESTIMATORS:
            raise NPEError(f"NPEConfig.estimator={self.estimator!r}; choose one of {_ESTIMATORS}")
        if self.theta_map not in _THETA_MAPS:
            raise NPEError(f"NPEConfig.theta_map={self.theta_map!r}; choose one of {_THETA_MAPS}")
        if self.x_transform not in _X_TRANSFORMS:
            raise NPEError(f"NPEConfig.x_transform={self.x_transform!r}; choose one of {_X_TRANSFORMS}")
        if self.embedding not in _EMBEDDINGS:
            raise NPEError(f"NPEConfig.embedding={self.embedding!r}; choose one of {_EMBEDDINGS}")
        if self.pca_variance is not None and not 0.0 < self.pca_variance <= 1.0:
            raise NPEError(f"NPEConfig.pca_variance={self.pca_variance!r} must be in (0, 1]")
        if not 0.0 < self.validation_fraction < 1.0:
            raise NPEError(f"NPEConfig.validation_fraction={self.validation_fraction!r} must be in (0, 1)")
        if not 0.0 < self.smoothing <= 1.0:
            raise NPEError(f"NPEConfig.smoothing={self.smoothing!r} must be in (0, 1]")
        for key in ("num_threads", "lr_decay_patience"):
            if getattr(self, key) is not None and int(getattr(self, key)) < 1:
                raise NPEError(f"NPEConfig.{key} must be >= 1 or None, got {getattr(self, key)!r}")
        for key in ("hidden_features", "num_transforms", "num_blocks", "ensemble_size", "batch_size", "max_epochs", "patience"):
            if int(getattr(self, key)) < 1:
                raise NPEError(f"NPEConfig.{key} must be >= 1, got {getattr(self, key)!r}")


# -- parameters <-> unconstrained space ----------------------------------------------
def _to_latent(prior: BoxPrior, theta: np.ndarray, kind: str) -> np.ndarray:
    """(n, n_dim) unconstrained coordinates of theta; +-inf on a bound, nan outside."""
    if kind == "logit":
        return prior.to_unconstrained(theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ndtri(prior.to_unit(np.asarray(theta, dtype=float)))


def _from_latent(prior: BoxPrior, z: np.ndarray, kind: str) -> np.ndarray:
    """(n, n_dim) theta inside the prior box for unconstrained coordinates z."""
    if kind == "logit":
        return prior.from_unconstrained(z)
    return prior.from_unit(ndtr(z))


def _latent_log_det(prior: BoxPrior, theta: np.ndarray, kind: str) -> np.ndarray:
    """(n,) ``log|det dz/dtheta|`` of :func:`_to_latent` at theta inside the box."""
    if kind == "logit":
        return prior.log_abs_det_jacobian(theta)
    theta = np.asarray(theta, dtype=float)
    log = prior.is_log
    lo, hi = prior.lower, prior.upper
    width = np.where(log, np.log(hi / np.where(log, lo, 1.0)), hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_gprime = np.where(log, -np.log(np.where(theta > 0, theta, np.nan)), 0.0)
        z = ndtri(prior.to_unit(theta))
    # dz/du = 1 / phi(z), du/dtheta = g'(theta) / (g(hi) - g(lo)).
    return (log_gprime - np.log(width) + 0.5 * z**2 + 0.5 * math.log(2 * math.pi)).sum(axis=1)


# -- input transform ----------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FeatureTransform:
    """Counts -> network features: transform, per-bin z-score, optional PCA.

    Parameters
    ----------
    kind : {"log1p", "anscombe", "none"}
    mean, std : (n_bins,) ndarray
        Per-bin z-scoring of the transformed counts (std floored at 1e-8 x max).
    components : (n_bins, n_keep) ndarray or None
        Principal axes of the z-scored training set; features are the scores
        ``z @ components`` (not whitened: the minor components, mostly Poisson
        noise, keep their small variance instead of being blown up to unit scale).
    """

    kind: str
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray | None = None

    @property
    def n_bins(self) -> int:
        return len(self.mean)

    @property
    def n_features(self) -> int:
        return self.n_bins if self.components is None else self.components.shape[1]

    @staticmethod
    def _raw(x: np.ndarray, kind: str) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if kind == "log1p":
            return np.log1p(x)
        if kind == "anscombe":
            return 2.0 * np.sqrt(x + 0.375)
        return x

    @classmethod
    def fit(cls, x: np.ndarray, kind: str, pca_variance: float | None = None) -> FeatureTransform:
        """Fit on a training set ``x`` of shape (n, n_bins) counts."""
        t = cls._raw(x, kind)
        mean = t.mean(axis=0)
        std = t.std(axis=0)
        # Bins that never see a count carry no information; keep them at zero.
        std = np.where(std > 1e-8 * max(std.max(), 1e-300), std, 1.0)
        if pca_variance is None:
            return cls(kind, mean, std)
        z = (t - mean) / std
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        var = s**2
        frac = np.cumsum(var) / var.sum()
        n_keep = int(np.searchsorted(frac, pca_variance - 1e-12) + 1)
        return cls(kind, mean, std, vt[:n_keep].T)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, n_features) float32 features of counts ``x`` (n, n_bins)."""
        z = (self._raw(x, self.kind) - self.mean) / self.std
        if self.components is not None:
            z = z @ self.components
        return z.astype(np.float32)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.components is not None:
            d["components"] = self.components.tolist()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureTransform:
        comps = d.get("components")
        return cls(
            d["kind"], np.asarray(d["mean"]), np.asarray(d["std"]),
            None if comps is None else np.asarray(comps),
        )


@dataclass(frozen=True)
class TrainingSummary:
    """What training did: sizes, epochs, best validation loss (nats), wall time (s).

    For an ensemble, ``epochs`` and ``best_epoch`` are the largest over members
    and ``best_validation_loss`` is the mixture's.
    """

    n_train: int
    n_validation: int
    epochs: int
    best_epoch: int
    best_validation_loss: float
    seconds: float


# -- network construction -------------------------------------------------------
def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device`` ("cpu", "cuda", "cuda:1"); clear error if unavailable."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NPEError(f"device={str(device)!r} requested but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise NPEError(f"device={str(device)!r}: only 'cpu' and 'cuda' are supported")
    return dev


def _embedding_net(config: NPEConfig, n_features: int) -> nn.Module:
    width = 2 * config.embedding_features
    return nn.Sequential(
        nn.Linear(n_features, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, config.embedding_features),
    )


class FlowEnsemble(nn.Module):
    """Equal-weight mixture of conditional flows, with the sbi-style face of one.

    Parameters
    ----------
    members : sequence of nn.Module
        Flows with ``log_prob(input (S, B, D), condition (B, F)) -> (S, B)`` and
        ``sample(sample_shape, condition) -> (*sample_shape, B, D)``.
    """

    def __init__(self, members) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def log_prob(self, input: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(S, B) log density of the mixture."""
        lp = torch.stack([m.log_prob(input, condition) for m in self.members])
        return torch.logsumexp(lp, dim=0) - math.log(len(self.members))

    def loss(self, input: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(B,) negative log density of the mixture at paired rows."""
        return -self.log_prob(input, condition)

    def sample(self, sample_shape: torch.Size, condition: torch.Tensor) -> torch.Tensor:
        """(n, B, D) draws: n // K from each member (stratified), in shuffled order."""
        (n,) = tuple(sample_shape)
        k = len(self.members)
        counts = [n // k + (i < n % k) for i in range(k)]
        draws = torch.cat([m.sample(torch.Size((c,)), condition)
                           for m, c in zip(self.members, counts) if c], dim=0)
        return draws[torch.randperm(n, device=draws.device)]


def _build_flow(config: NPEConfig, n_dim: int, n_features: int) -> nn.Module:
    if config.ensemble_size > 1:
        single = replace(config, ensemble_size=1)
        return FlowEnsemble([_build_flow(single, n_dim, n_features) for _ in range(config.ensemble_size)])
    if config.estimator == "cmaf":
        embedding = _embedding_net(config, n_features) if config.embedding == "mlp" else None
        return ConditionalMAF(n_dim, n_features, hidden_features=config.hidden_features,
                              num_transforms=config.num_transforms, num_blocks=config.num_blocks,
                              embedding=embedding, embedding_features=config.embedding_features)
    from sbi.neural_nets.net_builders import flow as builders

    build = {
        "maf": builders.build_maf, "nsf": builders.build_nsf, "maf_rqs": builders.build_maf_rqs,
        "zuko_maf": builders.build_zuko_maf, "zuko_nsf": builders.build_zuko_nsf,
        "zuko_naf": builders.build_zuko_naf, "zuko_nice": builders.build_zuko_nice,
    }[config.estimator]
    kwargs = dict(hidden_features=config.hidden_features, num_transforms=config.num_transforms)
    if config.estimator in ("nsf", "maf_rqs", "zuko_nsf"):
        kwargs["num_bins"] = config.num_bins
    if config.embedding == "mlp":
        kwargs["embedding_net"] = _embedding_net(config, n_features)
    # Standardisation is ours (stored in the JSON config), so the builders get
    # only shapes; zero batches keep construction independent of the data.
    batch_theta = torch.zeros(2, n_dim)
    batch_x = torch.zeros(2, n_features)
    return build(batch_theta, batch_x, z_score_x="none", z_score_y="none", **kwargs)


class seeded_torch:
    """Context manager: run a block with torch's global RNG seeded, restoring its state after.

    Parameters
    ----------
    seed : int
    device : torch.device
        Its generator is forked too when it is a CUDA device.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.seed, self.device = int(seed), device
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self._fork = torch.random.fork_rng(devices=devices)

    def __enter__(self):
        self._fork.__enter__()
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


class torch_threads:
    """Context manager: run a block with ``n`` torch CPU threads (None: unchanged), restoring after.

    Parameters
    ----------
    n : int or None
    """

    def __init__(self, n: int | None) -> None:
        self.n, self._old = n, None

    def __enter__(self):
        if self.n is not None:
            self._old = torch.get_num_threads()
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            torch.set_num_threads(self._old)
        return False


def _seed_from(rng: np.random.Generator | int) -> int:
    return int(np.random.default_rng(rng).integers(0, 2**62))


# -- the posterior ----------------------------------------------------------------
class NeuralPosterior:
    """A trained amortized posterior ``q(theta | x)`` over a :class:`BoxPrior`.

    Use :meth:`sample` and :meth:`log_prob`; :meth:`save` / :meth:`load` persist it.
    Densities are per unit of each parameter, under the user's prior.
    """

    def __init__(self, prior: BoxPrior, flow: nn.Module, features: FeatureTransform,
                 z_mean: np.ndarray, z_std: np.ndarray, config: NPEConfig,
                 summary: TrainingSummary | None = None, device: str | torch.device = "cpu") -> None:
        self.prior = prior
        self.features = features
        self.z_mean = np.asarray(z_mean, dtype=float)
        self.z_std = np.asarray(z_std, dtype=float)
        self.config = config
        self.summary = summary
        self.device = resolve_device(device)
        self.flow = flow.to(self.device).eval()

    # -- helpers ------------------------------------------------------------
    def _condition(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.features.n_bins:
            raise NPEError(
                f"x must have shape (m, {self.features.n_bins}) counts, got {x.shape}"
            )
        return torch.from_numpy(self.features.apply(x)).to(self.device)

    def _theta_from_s(self, s: np.ndarray) -> np.ndarray:
        return _from_latent(self.prior, s * self.z_std + self.z_mean, self.config.theta_map)

    # -- public face --------------------------------------------------------
    def sample(self, x: np.ndarray, n_samples: int, *, rng: np.random.Generator | int,
               max_rows: int = 8192) -> np.ndarray:
        """Posterior draws for one or many observations.

        Parameters
        ----------
        x : (n_bins,) or (m, n_bins) ndarray
            Counts per bin.
        n_samples : int
            Draws per observation.
        rng : numpy.random.Generator or int
            Seeds torch's generator for the draws (global state restored after).
        max_rows : int
            Draws are made in blocks of at most this many rows (several
            observations, or part of one observation's draws); blocks that fit
            in the CPU caches were ~2.5x faster than one block of 500,000 rows.

        Returns
        -------
        theta : (n_samples, n_dim) or (m, n_samples, n_dim) ndarray
            Every draw lies inside the prior bounds.
        """
        single = np.ndim(x) == 1
        xs = np.atleast_2d(x)
        cond = self._condition(xs)
        n = int(n_samples)
        max_rows = max(1, int(max_rows))
        chunk = max(1, max_rows // max(n, 1))
        piece = min(max(n, 1), max_rows)
        out = np.empty((len(xs), n, self.prior.n_dim))
        with seeded_torch(_seed_from(rng), self.device), torch.no_grad(), \
                torch_threads(self.config.num_threads):
            for start in range(0, len(xs), chunk):
                c = cond[start:start + chunk]
                for a in range(0, n, piece):
                    m = min(piece, n - a)
                    s = self.flow.sample(torch.Size((m,)), condition=c)  # (m, obs, k)
                    s = s.transpose(0, 1).double().cpu().numpy()
                    out[start:start + chunk, a:a + m] = self._theta_from_s(
                        s.reshape(-1, self.prior.n_dim)).reshape(s.shape)
        return out[0] if single else out

    def log_prob(self, theta: np.ndarray, x: np.ndarray, *, max_rows: int = 200_000) -> np.ndarray:
        """Log posterior density of ``theta`` given ``x``, per unit of each parameter.

        Parameters
        ----------
        theta : (n, n_dim) ndarray
        x : (n_bins,) or (n, n_bins) ndarray
            One observation for all theta, or one per row.

        Returns
        -------
        (n,) ndarray
            ``-inf`` outside the prior box.
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        inside = self.prior.contains(theta)
        xs = np.atleast_2d(x)
        if len(xs) not in (1, len(theta)):
            raise NPEError(f"log_prob: x has {len(xs)} rows for {len(theta)} parameter vectors")
        out = np.full(len(theta), -np.inf)
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            return out
        th = theta[idx]
        # Points exactly on a bound map to infinite z: zero density there.
        z = _to_latent(self.prior, th, self.config.theta_map)
        finite = np.all(np.isfinite(z), axis=1)
        idx, th, z = idx[finite], th[finite], z[finite]
        s = torch.from_numpy(((z - self.z_mean) / self.z_std).astype(np.float32)).to(self.device)
        cond = self._condition(xs if len(xs) == 1 else xs[idx])
        lq = np.empty(len(idx))
        with torch.no_grad(), torch_threads(self.config.num_threads):
            for a in range(0, len(idx), max_rows):
                c = cond if len(xs) == 1 else cond[a:a + max_rows]
                sa = s[a:a + max_rows]
                if len(xs) == 1:
                    lp = self.flow.log_prob(sa.unsqueeze(1), c)[:, 0]
                else:
                    lp = self.flow.log_prob(sa.unsqueeze(0), c)[0]
                lq[a:a + len(sa)] = lp.double().cpu().numpy()
        out[idx] = lq - np.log(self.z_std).sum() + _latent_log_det(self.prior, th, self.config.theta_map)
        return out

    # -- persistence ------------------------------------------------------------
    def _config_dict(self, fingerprint: Mapping) -> dict:
        return {
            "format": _FORMAT,
            "npe_config": asdict(self.config),
            "prior": self.prior.to_dict(),
            "features": self.features.to_dict(),
            "z_mean": self.z_mean.tolist(),
            "z_std": self.z_std.tolist(),
            "summary": None if self.summary is None else asdict(self.summary),
            "fingerprint": _full_fingerprint(fingerprint),
        }

    def save(self, path: str | os.PathLike, fingerprint: Mapping, *, overwrite: bool = False) -> Path:
        """Save as a directory: ``weights.pt`` (state_dict) and ``config.json``.

        Parameters
        ----------
        path : path-like
            Target directory; written to a temporary sibling then renamed into place.
        fingerprint : mapping
            JSON-serialisable description of what the network was trained for
            (model expression, parameters, prior, response digest, abundances...);
            package, sbi and torch versions are added.
        overwrite : bool
            Replace an existing file or directory at ``path``.

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        config = self._config_dict(fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            state = {k: v.detach().cpu() for k, v in self.flow.state_dict().items()}
            torch.save(state, tmp / _WEIGHTS_NAME)
            (tmp / _CONFIG_NAME).write_text(json.dumps(config, indent=1))
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: Mapping, *,
             device: str | torch.device = "cpu") -> NeuralPosterior:
        """Load a saved posterior, refusing one saved with a different fingerprint.

        Parameters
        ----------
        path : path-like
            Directory written by :meth:`save`.
        fingerprint : mapping
            What the caller expects (same keys as given to :meth:`save`); versions
            of this package, sbi and torch are compared too.
        device : str

        Raises
        ------
        FileNotFoundError, NPEError, FingerprintMismatch
        """
        path = Path(path)
        cfg_path, w_path = path / _CONFIG_NAME, path / _WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: not found (not a saved xspec_sbi posterior?)")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format") != _FORMAT:
            raise NPEError(f"{cfg_path}: format {cfg.get('format')!r}, expected {_FORMAT!r}")
        expected = _full_fingerprint(fingerprint)
        saved = cfg["fingerprint"]
        differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        if differ:
            detail = "; ".join(f"{k}: saved {saved.get(k)!r} != expected {expected.get(k)!r}" for k in differ)
            raise FingerprintMismatch(f"{path}: fingerprint differs in {differ} ({detail})")
        # Files written before theta_map existed used the logit map.
        config = NPEConfig(**{"theta_map": "logit", **cfg["npe_config"]})
        prior = BoxPrior.from_dict(cfg["prior"])
        features = FeatureTransform.from_dict(cfg["features"])
        flow = _build_flow(config, prior.n_dim, features.n_features)
        state = torch.load(w_path, map_location="cpu", weights_only=True)
        flow.load_state_dict(state)
        summary = None if cfg.get("summary") is None else TrainingSummary(**cfg["summary"])
        return cls(prior, flow, features, np.asarray(cfg["z_mean"]), np.asarray(cfg["z_std"]),
                   config, summary, device)


def _full_fingerprint(fingerprint: Mapping) -> dict:
    import sbi

    if not isinstance(fingerprint, Mapping):
        raise NPEError(f"fingerprint must be a mapping, got {type(fingerprint).__name__}")
    fp = {}
    for key, value in fingerprint.items():
        try:
            fp[str(key)] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as exc:
            raise NPEError(f"fingerprint[{key!r}] is not JSON-serialisable: {exc}") from exc
    fp.update({"xspec_sbi_version": __version__, "sbi_version": sbi.__version__,
               "torch_version": torch.__version__})
    return fp


# -- training ------------------------------------------------------------------------
def train_npe(
    theta: np.ndarray,
    x: np.ndarray,
    prior: BoxPrior,
    *,
    rng: np.random.Generator | int,
    config: NPEConfig = NPEConfig(),
    device: str | torch.device = "cpu",
) -> NeuralPosterior:
    """Train a posterior network on simulated pairs.

    Parameters
    ----------
    theta : (n, n_dim) ndarray
        Parameter vectors, drawn from ``prior`` or from ``prior`` truncated to a
        region (never from another shape of proposal: the network would learn
        the posterior under that proposal).
    x : (n, n_bins) ndarray
        Simulated counts per bin.
    prior : BoxPrior
        The user's prior; every theta must lie strictly inside its box.
    rng : numpy.random.Generator or int
        Seeds the split, initialisation and batch order.
    config : NPEConfig
    device : str
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    NeuralPosterior
        With :attr:`NeuralPosterior.summary` filled in.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    theta = np.asarray(theta, dtype=float)
    x = np.asarray(x, dtype=float)
    if theta.ndim != 2 or theta.shape[1] != prior.n_dim:
        raise NPEError(f"theta must have shape (n, {prior.n_dim}) for {prior.names}, got {theta.shape}")
    if x.ndim != 2 or len(x) != len(theta):
        raise NPEError(f"x must have shape ({len(theta)}, n_bins), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise NPEError("x contains non-finite counts")
    z = _to_latent(prior, theta, config.theta_map)
    bad = ~np.all(np.isfinite(z), axis=1)
    if bad.any():
        raise NPEError(f"{int(bad.sum())} theta rows lie on or outside the prior bounds of {prior.names}")
    n = len(theta)
    n_val = max(1, int(round(config.validation_fraction * n)))
    if n - n_val < 2:
        raise NPEError(f"need more simulations to train: got {n}")
    rng = np.random.default_rng(rng)
    perm = rng.permutation(n)
    tr, va = perm[n_val:], perm[:n_val]
    features = FeatureTransform.fit(x[tr], config.x_transform, config.pca_variance)
    z_mean, z_std = z[tr].mean(axis=0), z[tr].std(axis=0)
    z_std = np.where(z_std > 0, z_std, 1.0)
    s_all = torch.from_numpy(((z - z_mean) / z_std).astype(np.float32)).to(dev)
    f_all = torch.from_numpy(features.apply(x)).to(dev)
    s_tr, f_tr = s_all[tr], f_all[tr]
    s_va, f_va = s_all[va], f_all[va]

    with seeded_torch(_seed_from(rng), dev), torch_threads(config.num_threads):
        flow = _build_flow(config, prior.n_dim, features.n_features).to(dev)
        members = flow.members if isinstance(flow, FlowEnsemble) else [flow]
        runs = [_fit(member, config, s_tr, f_tr, s_va, f_va) for member in members]
        epoch, best_epoch = max(r[0] for r in runs), max(r[1] for r in runs)
        best_loss = runs[0][2] if len(runs) == 1 else _validation_loss(flow, s_va, f_va)
    flow.eval()
    summary = TrainingSummary(len(tr), len(va), epoch, best_epoch, float(best_loss),
                              time.perf_counter() - t0)
    return NeuralPosterior(prior, flow, features, z_mean, z_std, config, summary, dev)


def _validation_loss(flow: nn.Module, s: torch.Tensor, f: torch.Tensor) -> float:
    flow.eval()
    with torch.no_grad():
        return sum(flow.loss(s[a:a + 8192], f[a:a + 8192]).sum().item()
                   for a in range(0, len(s), 8192)) / len(s)


def _fit(flow: nn.Module, config: NPEConfig, s_tr: torch.Tensor, f_tr: torch.Tensor,
         s_va: torch.Tensor, f_va: torch.Tensor) -> tuple[int, int, float]:
    """Adam on the negative log density; returns (epochs run, best epoch, best validation loss).

    Patience counts epochs without improvement of an exponential moving average
    of the validation loss (single epochs are noisy with ~1000 validation
    pairs); the weights of the best raw validation loss are restored at the end.
    """
    # The fused step is several times cheaper than the per-tensor loop for
    # these small networks, where the optimiser is a large part of a step.
    fused = s_tr.device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(flow.parameters(), lr=config.learning_rate, fused=fused)
    n_tr = len(s_tr)
    # Small training sets get smaller batches (at least ~20 steps an epoch),
    # or patience counted in epochs would stop training after a few steps.
    bs = max(1, min(config.batch_size, max(32, n_tr // 20), n_tr))
    best_loss, best_epoch, best_state = math.inf, 0, None
    smooth, best_smooth, since_best, since_decay = None, math.inf, 0, 0
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        flow.train()
        order = torch.randperm(n_tr, device=s_tr.device)
        for a in range(0, n_tr - bs + 1, bs):
            idx = order[a:a + bs]
            opt.zero_grad(set_to_none=True)
            loss = flow.loss(s_tr[idx], f_tr[idx]).mean()
            loss.backward()
            if config.clip_max_norm is not None:
                nn.utils.clip_grad_norm_(flow.parameters(), config.clip_max_norm, foreach=True)
            opt.step()
        val = _validation_loss(flow, s_va, f_va)
        if not math.isfinite(val):
            raise NPEError(f"validation loss became {val} at epoch {epoch}; lower NPEConfig.learning_rate")
        if val < best_loss:
            best_loss, best_epoch = val, epoch
            best_state = copy.deepcopy(flow.state_dict())
        smooth = val if smooth is None else config.smoothing * val + (1 - config.smoothing) * smooth
        if smooth < best_smooth - 1e-4:
            best_smooth, since_best, since_decay = smooth, 0, 0
        else:
            since_best += 1
            since_decay += 1
        if config.lr_decay_patience is not None and since_decay >= config.lr_decay_patience:
            for group in opt.param_groups:
                group["lr"] *= 0.5
            since_decay = 0
        if since_best >= config.patience and epoch >= config.min_epochs:
            break
    if best_state is not None:
        flow.load_state_dict(best_state)
    flow.eval()
    if config.calibrate and hasattr(flow, "calibrate_base"):
        flow.calibrate_base(s_va, f_va)
        best_loss = _validation_loss(flow, s_va, f_va)
    return epoch, best_epoch, best_loss


def simulate_training_set(
    simulate: Simulator,
    proposal: BoxPrior | TruncatedPrior,
    n: int,
    *,
    rng: np.random.Generator | int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` parameter vectors from ``proposal`` and simulate them.

    Returns
    -------
    theta : (n, n_dim) ndarray
    x : (n, n_bins) ndarray
        Counts per bin, as returned by ``simulate(theta, rng)``.
    """
    rng = np.random.default_rng(rng)
    theta = proposal.sample(int(n), rng=rng)
    x = np.asarray(simulate(theta, rng), dtype=float)
    if x.ndim != 2 or len(x) != len(theta):
        raise NPEError(f"simulate returned shape {x.shape} for {len(theta)} parameter vectors; expected (n, n_bins)")
    return theta, x


def fit_single_round(
    simulate: Simulator,
    prior: BoxPrior,
    n_simulations: int,
    *,
    rng: np.random.Generator | int,
    proposal: TruncatedPrior | None = None,
    config: NPEConfig = NPEConfig(),
    device: str | torch.device = "cpu",
) -> NeuralPosterior:
    """Amortized NPE: simulate from ``proposal`` (default the prior) and train once."""
    rng = np.random.default_rng(rng)
    _check_proposal(prior, proposal)
    theta, x = simulate_training_set(simulate, proposal or prior, n_simulations, rng=rng)
    return train_npe(theta, x, prior, rng=rng, config=config, device=device)


def _check_proposal(prior: BoxPrior, proposal: TruncatedPrior | None) -> None:
    if proposal is not None and (not isinstance(proposal, TruncatedPrior) or proposal.prior != prior):
        raise NPEError(
            "proposal must be a TruncatedPrior of the same prior (the user's prior times an "
            "indicator); any other proposal would change the learned posterior"
        )


def hpd_truncation(
    posterior: NeuralPosterior,
    x_obs: np.ndarray,
    *,
    rng: np.random.Generator | int,
    quantile: float = 1e-4,
    n_samples: int = 100_000,
    margin: float = 0.1,
    within: TruncatedPrior | None = None,
) -> TruncatedPrior:
    """The user's prior truncated to the posterior's highest-density region at ``x_obs``.

    Parameters
    ----------
    posterior : NeuralPosterior
    x_obs : (n_bins,) or (m, n_bins) ndarray
        Observation(s); the region is the union over observations.
    rng : numpy.random.Generator or int
    quantile : float
        Mass left out: the threshold is this quantile of ``log q`` over the
        posterior's own draws (TSNPE uses 1e-4).
    n_samples : int
        Posterior draws per observation used for the threshold and the sub-box.
    margin : float
        Sub-box = range of the draws widened by this fraction of it on each side
        (in the warped coordinate: log for log-uniform parameters).
    within : TruncatedPrior, optional
        Intersect the region with this one (e.g. a classifier-restricted prior).

    Returns
    -------
    TruncatedPrior
    """
    rng = np.random.default_rng(rng)
    prior = posterior.prior
    xs = np.atleast_2d(np.asarray(x_obs, dtype=float))
    draws = posterior.sample(xs, n_samples, rng=rng)  # (m, n, k)
    thresholds = []
    for j in range(len(xs)):
        lp = posterior.log_prob(draws[j], xs[j])
        thresholds.append(np.quantile(lp[np.isfinite(lp)], quantile))
    thresholds = np.asarray(thresholds)

    def region(theta: np.ndarray) -> np.ndarray:
        keep = np.zeros(len(theta), dtype=bool)
        for j in range(len(xs)):
            todo = ~keep
            if not todo.any():
                break
            keep[todo] = posterior.log_prob(theta[todo], xs[j]) >= thresholds[j]
        if within is not None:
            keep &= within.contains(theta)
        return keep

    u = prior.to_unit(draws.reshape(-1, prior.n_dim))
    u_lo, u_hi = u.min(axis=0), u.max(axis=0)
    width = u_hi - u_lo
    u_lo, u_hi = np.clip(u_lo - margin * width, 0, 1), np.clip(u_hi + margin * width, 0, 1)
    lower, upper = prior.from_unit(u_lo), prior.from_unit(u_hi)
    if within is not None:
        lower, upper = np.maximum(lower, within.lower), np.minimum(upper, within.upper)
    return truncate(prior, region, rng=rng, lower=lower, upper=upper,
                    label=f"HPD 1-{quantile:g} of the posterior at {len(xs)} observation(s)")


@dataclass(frozen=True)
class MultiRoundResult:
    """Outcome of :func:`fit_multi_round`.

    Attributes
    ----------
    posterior : NeuralPosterior
        Trained on all rounds' simulations; valid at the observation(s).
    proposals : tuple of TruncatedPrior or None
        Proposal of each round (None: the prior).
    acceptances : tuple of float
        Acceptance fraction of each round's truncated proposal (1.0 for the prior).
    n_simulations : int
    """

    posterior: NeuralPosterior
    proposals: tuple = field(repr=False)
    acceptances: tuple
    n_simulations: int


def fit_multi_round(
    simulate: Simulator,
    prior: BoxPrior,
    x_obs: np.ndarray,
    *,
    rng: np.random.Generator | int,
    rounds: int = 3,
    simulations_per_round: int = 1000,
    proposal: TruncatedPrior | None = None,
    config: NPEConfig = NPEConfig(),
    quantile: float = 1e-4,
    n_hpd_samples: int = 100_000,
    device: str | torch.device = "cpu",
) -> MultiRoundResult:
    """Multi-round NPE with truncated proposals (TSNPE) for one observation (or a few).

    Round 1 draws from ``proposal`` (default: the prior); each later round draws
    from the prior truncated to the current posterior's ``1 - quantile`` highest
    density region at ``x_obs`` (intersected with ``proposal``), and the network is
    retrained from scratch on all simulations so far. Because every proposal is the
    prior times an indicator, the result is the posterior under the user's prior
    wherever the regions hold the posterior mass.

    Parameters
    ----------
    simulate : callable
        ``simulate(theta (n, n_dim), rng) -> (n, n_bins)`` counts.
    prior : BoxPrior
    x_obs : (n_bins,) or (m, n_bins) ndarray
    rng : numpy.random.Generator or int
    rounds, simulations_per_round : int
    proposal : TruncatedPrior, optional
        Starting restricted prior (e.g. from :mod:`xspec_sbi.inference.restrict`).
    config : NPEConfig
    quantile, n_hpd_samples
        See :func:`hpd_truncation`.
    device : str

    Returns
    -------
    MultiRoundResult
    """
    if rounds < 1:
        raise NPEError(f"rounds must be >= 1, got {rounds}")
    _check_proposal(prior, proposal)
    rng = np.random.default_rng(rng)
    current = proposal
    thetas, xs, proposals, accs = [], [], [], []
    posterior = None
    for r in range(rounds):
        if r > 0:
            current = hpd_truncation(posterior, x_obs, rng=rng, quantile=quantile,
                                     n_samples=n_hpd_samples, within=proposal)
        proposals.append(current)
        accs.append(1.0 if current is None else current.acceptance)
        th, x = simulate_training_set(simulate, current or prior, simulations_per_round, rng=rng)
        thetas.append(th)
        xs.append(x)
        posterior = train_npe(np.concatenate(thetas), np.concatenate(xs), prior,
                              rng=rng, config=config, device=device)
    return MultiRoundResult(posterior, tuple(proposals), tuple(accs),
                            int(sum(len(t) for t in thetas)))
