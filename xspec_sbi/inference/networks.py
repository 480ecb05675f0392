"""The conditional density network: flow factory, embedding net, equal-weight ensembles.

:func:`build_flow` makes an untrained flow for an :class:`NPEConfig` from its
shapes alone (never from data, so a saved network is rebuilt exactly before its
weights are loaded): this package's :class:`~xspec_sbi.inference.flows.ConditionalMAF`
or one of ``sbi``'s builders, optionally as a :class:`FlowEnsemble`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from xspec_sbi.inference.config import NPEConfig
from xspec_sbi.inference.flows import ConditionalMAF

__all__ = ["FlowEnsemble", "build_flow", "embedding_net"]


def embedding_net(config: NPEConfig, n_features: int) -> nn.Module:
    """MLP from ``n_features`` inputs to ``config.embedding_features`` (two hidden ReLU layers)."""
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


def build_flow(config: NPEConfig, n_dim: int, n_features: int) -> nn.Module:
    """An untrained conditional flow for ``config``.

    Parameters
    ----------
    config : NPEConfig
    n_dim : int
        Number of free parameters (the flow's dimension).
    n_features : int
        Number of count features it is conditioned on.

    Returns
    -------
    nn.Module
        With ``log_prob``, ``loss`` and ``sample`` as sbi's flows have them; a
        :class:`FlowEnsemble` when ``config.ensemble_size > 1``. Initial weights
        come from torch's global generator (seed it for reproducible networks).
    """
    if config.ensemble_size > 1:
        single = replace(config, ensemble_size=1)
        return FlowEnsemble([build_flow(single, n_dim, n_features) for _ in range(config.ensemble_size)])
    if config.estimator == "cmaf":
        embedding = embedding_net(config, n_features) if config.embedding == "mlp" else None
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
        kwargs["embedding_net"] = embedding_net(config, n_features)
    # Standardisation is ours (stored in the JSON config), so the builders get
    # only shapes; zero batches keep construction independent of the data.
    batch_theta = torch.zeros(2, n_dim)
    batch_x = torch.zeros(2, n_features)
    return build(batch_theta, batch_x, z_score_x="none", z_score_y="none", **kwargs)
