"""Settings of the posterior network and its training (:class:`NPEConfig`), and the errors.

The configuration is data: :meth:`NPEConfig.to_dict` gives a JSON-ready record
(the fields, as :func:`dataclasses.asdict` writes them) and
:meth:`NPEConfig.from_dict` reads one back, filling in the default of any field
the record lacks. A saved network is thereby readable after a field with a
default is added; ``FINGERPRINT_SCHEMA`` versions the layout of these records.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

__all__ = ["NPEError", "FingerprintMismatch", "NPEConfig", "FINGERPRINT_SCHEMA", "TRAINING_ONLY",
           "DEFAULT_SIMULATIONS", "SELF_REFINING_SIMULATIONS"]

#: Training simulations of a network by default (the paper's).
DEFAULT_SIMULATIONS = 10_000
#: ... and of the first network of a fit that refines itself
#: (:attr:`xspec_sbi.options.RunOptions.first_round_simulations`).
SELF_REFINING_SIMULATIONS = 3_000

#: Version of the layout of the records saved with a network (configuration,
#: fingerprint): bump it when a field changes meaning, not when one is added.
FINGERPRINT_SCHEMA = 1

#: Fields that say how a network was trained, not what it is or what it takes
#: as input: a saved network is loaded whatever their values (a new default
#: schedule must not make every saved network unreadable).
TRAINING_ONLY = frozenset({"batch_size", "learning_rate", "validation_fraction", "patience",
                           "max_epochs", "min_epochs", "smoothing", "lr_decay_patience",
                           "clip_max_norm", "num_threads", "calibrate", "member_workers",
                           "epochs", "member_splits"})

_ESTIMATORS = ("cmaf", "maf", "nsf", "maf_rqs", "zuko_maf", "zuko_nsf", "zuko_naf", "zuko_nice")
_X_TRANSFORMS = ("log1p", "anscombe", "none")
_THETA_MAPS = ("probit", "logit")
_EMBEDDINGS = (None, "mlp")


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
        Training pairs per optimiser step (fewer for small training sets).
    learning_rate : float
        Adam step size.
    validation_fraction : float
        Held-out fraction used for early stopping.
    patience : int
        Epochs without improvement of the smoothed validation loss before
        stopping (the weights of the best raw validation loss are restored).
        Default 10: against 20 it trained the paper's 2,000-count reference
        network in a quarter to a half of the time, at a lower ESS of the
        exact-likelihood check (38 % against 66 %), which the correction and
        the moves absorb; the corrected answer agreed with the chain as well.
        How a network was trained is not part of its fingerprint
        (``TRAINING_ONLY``): networks saved with another patience load.
    max_epochs : int
        Upper limit on training epochs.
    epochs : int or None
        Train exactly this many epochs, the step size falling from
        ``learning_rate`` to 0 along a cosine over all steps (no early stopping;
        the weights of the best validation loss are kept). None (default): the
        step size is halved on plateaus and training stops by ``patience``.
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
    exposure_range : (float, float) or None
        Train over exposures: each simulation's source exposure is the
        training spectrum's times a factor drawn log-uniformly in this range
        (e.g. ``(0.25, 4.0)``; it must hold 1, the training spectrum itself),
        and ``log`` of the factor is an input of the network beside the counts,
        so one network serves spectra of other exposures (applying it passes each
        spectrum's exposure over the training spectrum's). None (default): every
        simulation has the training spectrum's exposure.
    member_workers : int or None
        Processes an ensemble's members are trained in, side by side (spawned,
        ``num_threads`` torch threads each; on the CPU with ``num_threads`` set).
        None (default): one per member, up to the usable CPUs; 1: one after
        another in this process. Each member is trained from its own seed, so
        the weights are the same for any value.
    member_splits : bool
        Ensembles: each member after the first holds out its own random
        ``validation_fraction`` of the pairs (early stopping and base
        calibration then differ between members); False (default): all share
        one split.
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
    patience: int = 10
    max_epochs: int = 1000
    epochs: int | None = None
    min_epochs: int = 20
    smoothing: float = 0.5
    lr_decay_patience: int | None = 8
    clip_max_norm: float | None = 5.0
    num_threads: int | None = 1
    calibrate: bool = True
    exposure_range: tuple | None = None
    member_workers: int | None = None
    member_splits: bool = False

    def __post_init__(self) -> None:
        if self.exposure_range is not None:
            try:
                lo, hi = (float(v) for v in self.exposure_range)
            except (TypeError, ValueError):
                raise NPEError(f"NPEConfig.exposure_range={self.exposure_range!r}: give two "
                               "factors (LOW, HIGH), e.g. (0.25, 4.0)") from None
            if not 0.0 < lo <= 1.0 <= hi or lo == hi:
                raise NPEError(f"NPEConfig.exposure_range={self.exposure_range!r}: need "
                               "0 < LOW <= 1 <= HIGH, LOW < HIGH (factors of the training "
                               "spectrum's exposure, which is factor 1)")
            object.__setattr__(self, "exposure_range", (lo, hi))   # a JSON list reads back
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
        for key in ("num_threads", "lr_decay_patience", "member_workers", "epochs"):
            if getattr(self, key) is not None and int(getattr(self, key)) < 1:
                raise NPEError(f"NPEConfig.{key} must be >= 1 or None, got {getattr(self, key)!r}")
        for key in ("hidden_features", "num_transforms", "num_blocks", "ensemble_size", "batch_size", "max_epochs", "patience"):
            if int(getattr(self, key)) < 1:
                raise NPEError(f"NPEConfig.{key} must be >= 1, got {getattr(self, key)!r}")

    def to_dict(self) -> dict:
        """JSON-ready record of the settings: ``{field: value}``, every field.

        Returns
        -------
        dict
            Round-trips through :meth:`from_dict`.
        """
        d = asdict(self)
        if d["exposure_range"] is not None:
            d["exposure_range"] = list(d["exposure_range"])   # as JSON reads it back
        return d

    @classmethod
    def from_dict(cls, d: Mapping, *, source: str = "NPEConfig.from_dict") -> NPEConfig:
        """Settings from a record written by :meth:`to_dict`, possibly by an older version.

        Parameters
        ----------
        d : mapping
            ``{field: value}``; fields it lacks take their defaults (a field
            added with a default keeps the behaviour from before it existed).
        source : str
            Where ``d`` came from (a file name), named in errors.

        Raises
        ------
        NPEError
            For a key that is not a field (a record written by a newer version,
            or a misspelling).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NPEError(f"{source}: unknown NPEConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**dict(d))
