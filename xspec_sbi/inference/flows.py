"""A compact conditional masked autoregressive flow (MAF) in plain torch.

``q(s | x)`` for a low-dimensional parameter vector ``s`` (already mapped to an
unconstrained, z-scored space by :mod:`xspec_sbi.inference.latent`) given features ``x`` of
an observation. Each of the ``num_transforms`` affine autoregressive transforms
is a MADE (Germain et al. 2015; Papamakarios et al. 2017) in which

* the condition enters the first hidden layer through its own dense weight, so
  the condition's contribution is computed once per observation and broadcast
  over all of that observation's samples (batched sampling costs one small
  matmul per observation, not one per sample and autoregressive pass);
* hidden units of degree 0 see the condition and no parameter, which makes the
  *first* autoregressive output of every transform depend on the condition too
  (nflows' MADE, used by ``sbi``'s ``"maf"``, gives that output no path from the
  condition, so one parameter per transform is transformed independently of x);
* the autoregressive order is rotated between transforms.

The object follows ``sbi``'s density-estimator calling convention so that
:class:`xspec_sbi.inference.posterior.NeuralPosterior` drives it like ``sbi``'s flows:
``log_prob(input (S, B, D), condition (B, F)) -> (S, B)``,
``sample(torch.Size((S,)), condition (B, F)) -> (S, B, D)`` and
``loss(input (B, D), condition (B, F)) -> (B,)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MADE", "ConditionalMAF", "FlowError"]

# Bound on the log-scale of one affine step: exp(+-5) per transform is far more than
# the posterior needs, and the bound keeps early training steps finite.
_LOG_SCALE_BOUND = 5.0
_LOG_2PI = math.log(2.0 * math.pi)


class FlowError(ValueError):
    """Bad shape or setting for a flow (names the argument)."""


def _degrees(n_dim: int, hidden: int) -> torch.Tensor:
    # Degrees 0..n_dim-1 in turn: every degree gets hidden units, degree 0 included.
    return torch.arange(hidden) % n_dim


class MADE(nn.Module):
    """Masked autoregressive network with a dense conditioning path.

    Parameters
    ----------
    n_dim : int
        Number of parameters D (inputs; the outputs are a shift and a log-scale
        per parameter).
    n_context : int
        Width of the condition; 0 when the caller computes the condition term
        itself (:class:`ConditionalMAF` does it for all transforms in one matmul).
    hidden_features : int
        Width H of each hidden layer.
    num_blocks : int
        Number of hidden layers (>= 1).
    order : sequence of int, optional
        Autoregressive position of each input (a permutation of ``0..D-1``;
        default the identity). Baking the order into the masks spares the
        permutations between transforms.

    Notes
    -----
    Input ``j`` has degree ``d_j = order[j] + 1`` and feeds hidden unit ``k`` of
    degree ``m_k`` when ``d_j <= m_k``; hidden to hidden when ``m_k <= m_k'``;
    output ``j`` reads hidden units with ``m_k < d_j``. Output ``j`` thus depends
    on the inputs earlier in the order and, through the degree-0 units, always on
    the condition.
    """

    def __init__(self, n_dim: int, n_context: int, hidden_features: int, num_blocks: int = 2,
                 order=None) -> None:
        super().__init__()
        if n_dim < 1 or n_context < 0 or hidden_features < n_dim or num_blocks < 1:
            raise FlowError(
                f"MADE: need n_dim >= 1, n_context >= 0, hidden_features >= n_dim and num_blocks >= 1; "
                f"got {n_dim}, {n_context}, {hidden_features}, {num_blocks}"
            )
        self.n_dim = n_dim
        order = torch.arange(n_dim) if order is None else torch.as_tensor(order)
        if sorted(order.tolist()) != list(range(n_dim)):
            raise FlowError(f"MADE: order must be a permutation of 0..{n_dim - 1}, got {order.tolist()}")
        self.order = tuple(int(v) for v in order)
        deg_in = order + 1
        deg_h = _degrees(n_dim, hidden_features)
        self.inp = nn.Linear(n_dim, hidden_features)
        self.ctx = nn.Linear(n_context, hidden_features, bias=False) if n_context else None
        self.hidden = nn.ModuleList(nn.Linear(hidden_features, hidden_features) for _ in range(num_blocks - 1))
        self.out = nn.Linear(hidden_features, 2 * n_dim)
        deg_out = torch.cat([deg_in, deg_in])     # shifts, then log-scales
        self.register_buffer("mask_in", (deg_in[None, :] <= deg_h[:, None]).float(), persistent=False)
        self.register_buffer("mask_h", (deg_h[None, :] <= deg_h[:, None]).float(), persistent=False)
        self.register_buffer("mask_out", (deg_h[None, :] < deg_out[:, None]).float(), persistent=False)
        # Near-identity start: small outputs, so training begins from the base Gaussian.
        nn.init.uniform_(self.out.weight, -1e-3, 1e-3)
        nn.init.zeros_(self.out.bias)

    def context_term(self, context: torch.Tensor) -> torch.Tensor:
        """(..., H) contribution of the condition to the first hidden layer."""
        if self.ctx is None:
            return torch.zeros((), device=context.device, dtype=context.dtype)
        return self.ctx(context)

    def forward(self, s: torch.Tensor, ctx_term: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shift and log-scale, each (..., D), of inputs ``s`` (..., D).

        ``ctx_term`` is :meth:`context_term` of the condition, broadcastable to
        the hidden layer's shape (e.g. (B, H) against ``s`` of shape (S, B, D)).
        """
        h = F.relu(F.linear(s, self.inp.weight * self.mask_in, self.inp.bias) + ctx_term)
        for layer in self.hidden:
            h = F.relu(F.linear(h, layer.weight * self.mask_h, layer.bias))
        out = F.linear(h, self.out.weight * self.mask_out, self.out.bias)
        shift, raw = out[..., :self.n_dim], out[..., self.n_dim:]
        return shift, _LOG_SCALE_BOUND * torch.tanh(raw / _LOG_SCALE_BOUND)


class ConditionalMAF(nn.Module):
    """Conditional affine MAF with an optional embedding of the condition.

    Parameters
    ----------
    n_dim : int
        Dimension D of the density's variable.
    n_features : int
        Width of the raw condition (e.g. number of spectral bins or PCA scores).
    hidden_features : int
        Width of each MADE's hidden layers (paper: 50).
    num_transforms : int
        Number of affine autoregressive transforms (paper: 5).
    num_blocks : int
        Hidden layers per MADE.
    embedding : nn.Module or None
        Maps the raw condition (B, n_features) to (B, embedding_features); None:
        the raw condition is the context.
    embedding_features : int or None
        Output width of ``embedding`` (required with it).

    Notes
    -----
    The direction used in training maps a variable ``s`` to base noise ``u``:
    ``u_i = (s_i - mu_i(s_<i, x)) exp(-a_i(s_<i, x))``, with
    ``log q(s | x) = log N(u; 0, I) - sum_i a_i`` summed over transforms.
    Sampling inverts each transform with D sequential passes.
    """

    def __init__(self, n_dim: int, n_features: int, *, hidden_features: int = 50, num_transforms: int = 5,
                 num_blocks: int = 2, embedding: nn.Module | None = None,
                 embedding_features: int | None = None) -> None:
        super().__init__()
        if embedding is not None and not embedding_features:
            raise FlowError("ConditionalMAF: embedding_features is required with an embedding")
        if num_transforms < 1:
            raise FlowError(f"ConditionalMAF: num_transforms must be >= 1, got {num_transforms}")
        self.n_dim, self.n_features = int(n_dim), int(n_features)
        self.embedding = embedding if embedding is not None else nn.Identity()
        n_context = int(embedding_features) if embedding is not None else self.n_features
        # Transform k puts parameter j at autoregressive position (j - k) mod D:
        # every parameter takes every position in turn.
        self.mades = nn.ModuleList(
            MADE(self.n_dim, 0, hidden_features, num_blocks,
                 order=torch.remainder(torch.arange(self.n_dim) - k, self.n_dim))
            for k in range(num_transforms)
        )
        # One matmul gives every transform's condition term (saves a layer call each).
        self.hidden_features = int(hidden_features)
        self.context = nn.Linear(n_context, num_transforms * self.hidden_features, bias=False)
        # Log standard deviations of the Gaussian base (zero: standard normal); see
        # calibrate_base. A buffer, so it is saved with the weights but not trained.
        self.register_buffer("base_log_scale", torch.zeros(self.n_dim))

    # -- pieces ----------------------------------------------------------------
    def _context_terms(self, condition: torch.Tensor) -> list[torch.Tensor]:
        if condition.ndim != 2 or condition.shape[1] != self.n_features:
            raise FlowError(f"condition must have shape (B, {self.n_features}), got {tuple(condition.shape)}")
        return self.context(self.embedding(condition)).split(self.hidden_features, dim=-1)

    def _to_noise(self, s: torch.Tensor, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = 0.0
        for k, made in enumerate(self.mades):
            shift, log_scale = made(s, ctx[k])
            s = (s - shift) * torch.exp(-log_scale)
            logdet = logdet - log_scale.sum(-1)
        return s, logdet

    def _from_noise(self, u: torch.Tensor, ctx) -> torch.Tensor:
        eye = torch.eye(self.n_dim, device=u.device, dtype=u.dtype)
        for k in reversed(range(len(self.mades))):
            made = self.mades[k]
            s = torch.zeros_like(u)
            # Output j depends on the parameters earlier in the order only: D passes
            # fill them in order (out of place, so the inverse stays differentiable).
            for j in sorted(range(self.n_dim), key=made.order.__getitem__):
                shift, log_scale = made(s, ctx[k])
                value = u[..., j] * torch.exp(log_scale[..., j]) + shift[..., j]
                s = s + value[..., None] * eye[j]
            u = s
        return u

    def transform(self, s: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Variable -> base noise and log|det ds->u|, for ``s`` (S, B, D) or (B, D) and condition (B, F)."""
        return self._to_noise(s, self._context_terms(condition))

    def inverse(self, u: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Base noise -> variable; the inverse of :meth:`transform`."""
        return self._from_noise(u, self._context_terms(condition))

    # -- sbi-style face ------------------------------------------------------------
    def log_prob(self, input: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(S, B) log density of ``input`` (S, B, D) given ``condition`` (B, F) (or (B,) for (B, D))."""
        if input.shape[-1] != self.n_dim:
            raise FlowError(f"input must end in {self.n_dim} parameters, got shape {tuple(input.shape)}")
        u, logdet = self.transform(input, condition)
        z = u * torch.exp(-self.base_log_scale)
        return (-0.5 * (z.square().sum(-1) + self.n_dim * _LOG_2PI) - self.base_log_scale.sum()
                + logdet)

    @torch.no_grad()
    def calibrate_base(self, input: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Set the base scales to their maximum-likelihood values on held-out pairs.

        With the transforms fixed, the log likelihood of held-out ``input`` (N, D)
        given ``condition`` (N, F) under a base ``N(0, diag(tau^2))`` is maximal at
        ``tau_j^2 = mean(u_j^2)`` (``u`` the transformed held-out points): 1 for a
        flow that generalises, above 1 where the flow is over-confident. Returns
        ``tau`` (D,).
        """
        u, _ = self.transform(input, condition)
        tau2 = u.square().mean(0).clamp_min(1e-12)
        self.base_log_scale.copy_(0.5 * torch.log(tau2))
        return tau2.sqrt()

    def loss(self, input: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(B,) negative log density of paired rows ``input`` (B, D), ``condition`` (B, F)."""
        return -self.log_prob(input, condition)

    def sample(self, sample_shape: torch.Size, condition: torch.Tensor) -> torch.Tensor:
        """(*sample_shape, B, D) draws for each of the B conditions (torch's global RNG)."""
        ctx = self._context_terms(condition)
        u = torch.randn(*sample_shape, condition.shape[0], self.n_dim, device=ctx[0].device, dtype=ctx[0].dtype)
        return self._from_noise(u * torch.exp(self.base_log_scale), ctx)
