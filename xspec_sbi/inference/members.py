"""Fitting the flows of a network: the Adam loop with early stopping, one member or an ensemble's.

Every member of an ensemble is built and trained from its own seed
(:func:`train_members`), so its weights depend on that seed and the training
pairs only. The members are therefore trained one after another in this
process or side by side in spawned processes (one torch thread each), with the
same weights either way: an ensemble of ``K`` costs about one member's wall
time on a machine with ``K`` free cores.
"""
from __future__ import annotations

import copy
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context

import torch
from torch import nn

from xspec_sbi.forward.simulate import _main_module_hidden   # the simulator pool's guard, same need
from xspec_sbi.inference.adam import FlatAdam
from xspec_sbi.inference.config import NPEConfig, NPEError
from xspec_sbi.inference.networks import build_flow
from xspec_sbi.inference.torch_state import seeded_torch, torch_threads

__all__ = ["fit_flow", "validation_loss", "train_members", "member_workers"]


def validation_loss(flow: nn.Module, s: torch.Tensor, f: torch.Tensor) -> float:
    """Mean negative log density (nats) over the validation pairs, in blocks of 8192."""
    flow.eval()
    with torch.no_grad():
        return sum(flow.loss(s[a:a + 8192], f[a:a + 8192]).sum().item()
                   for a in range(0, len(s), 8192)) / len(s)


def fit_flow(flow: nn.Module, config: NPEConfig, s_tr: torch.Tensor, f_tr: torch.Tensor,
             s_va: torch.Tensor, f_va: torch.Tensor) -> tuple[int, int, float]:
    """Adam on the negative log density; returns (epochs run, best epoch, best validation loss).

    Patience counts epochs without improvement of an exponential moving average
    of the validation loss (single epochs are noisy with ~1000 validation
    pairs); the weights of the best raw validation loss are restored at the end.
    Batch order comes from torch's global generator (seed it).
    """
    # One flat buffer: a step is a few whole-buffer operations (the optimiser is a large
    # part of a step on these small networks), and torch.optim's import of its compiler
    # (1.4-2 s a process) is not paid (xspec_sbi.inference.adam)
    opt = FlatAdam(flow, lr=config.learning_rate)
    n_tr = len(s_tr)
    # Small training sets get smaller batches (at least ~20 steps an epoch),
    # or patience counted in epochs would stop training after a few steps.
    bs = max(1, min(config.batch_size, max(32, n_tr // 20), n_tr))
    best_loss, best_epoch, best_state = math.inf, 0, None
    smooth, best_smooth, since_best, since_decay = None, math.inf, 0, 0
    epoch = 0
    # a fixed number of epochs: the step size falls from learning_rate to 0 along a cosine
    n_steps = (n_tr // bs) * config.epochs if config.epochs is not None else None
    step = 0
    for epoch in range(1, (config.epochs or config.max_epochs) + 1):
        flow.train()
        order = torch.randperm(n_tr, device=s_tr.device)
        for a in range(0, n_tr - bs + 1, bs):
            idx = order[a:a + bs]
            if n_steps is not None:
                opt.lr = 0.5 * config.learning_rate * (1.0 + math.cos(math.pi * step / n_steps))
                step += 1
            opt.zero_grad()
            loss = flow.loss(s_tr[idx], f_tr[idx]).mean()
            loss.backward()
            if config.clip_max_norm is not None:
                opt.clip_grad_norm(config.clip_max_norm)
            opt.step()
        val = validation_loss(flow, s_va, f_va)
        if not math.isfinite(val):
            raise NPEError(f"validation loss became {val} at epoch {epoch}; lower NPEConfig.learning_rate")
        if val < best_loss:
            best_loss, best_epoch = val, epoch
            best_state = copy.deepcopy(flow.state_dict())
        if n_steps is not None:
            continue
        smooth = val if smooth is None else config.smoothing * val + (1 - config.smoothing) * smooth
        if smooth < best_smooth - 1e-4:
            best_smooth, since_best, since_decay = smooth, 0, 0
        else:
            since_best += 1
            since_decay += 1
        if config.lr_decay_patience is not None and since_decay >= config.lr_decay_patience:
            opt.lr *= 0.5
            since_decay = 0
        if since_best >= config.patience and epoch >= config.min_epochs:
            break
    opt.release()
    if best_state is not None:
        flow.load_state_dict(best_state)
    flow.eval()
    if config.calibrate and hasattr(flow, "calibrate_base"):
        flow.calibrate_base(s_va, f_va)
        best_loss = validation_loss(flow, s_va, f_va)
    return epoch, best_epoch, best_loss


def _train_one(config: NPEConfig, n_dim: int, n_features: int, seed: int, pairs, device) -> tuple:
    """One member from its seed: built and trained under that seed; (flow, epochs, best, loss)."""
    s_tr, f_tr, s_va, f_va = pairs
    with seeded_torch(seed, device):
        flow = build_flow(replace(config, ensemble_size=1), n_dim, n_features).to(device)
        return (flow, *fit_flow(flow, config, s_tr, f_tr, s_va, f_va))


def _train_in_worker(config: NPEConfig, n_dim: int, n_features: int, seed: int, pairs) -> tuple:
    """A spawned worker's member: its weights (numpy arrays) and fit record."""
    pairs = [torch.from_numpy(a) for a in pairs]
    # the same thread count as in the parent's loop, so the same arithmetic and weights
    with torch_threads(config.num_threads):
        flow, *record = _train_one(config, n_dim, n_features, seed, pairs, torch.device("cpu"))
    return ({k: v.numpy() for k, v in flow.state_dict().items()}, *record)


def member_workers(config: NPEConfig, device: torch.device) -> int:
    """Processes to train ``config.ensemble_size`` members in: 1 means this process.

    ``config.member_workers`` when set (capped at the members), otherwise one per
    member up to the CPUs this process may use, divided by its torch threads;
    always 1 for a single member, a CUDA device or ``num_threads=None`` (the
    workers could not reproduce a thread count that is not fixed).
    """
    k = config.ensemble_size
    if k < 2 or device.type != "cpu" or config.num_threads is None:
        return 1
    if config.member_workers is not None:
        return max(1, min(k, int(config.member_workers)))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(k, cpus // int(config.num_threads)))


def train_members(config: NPEConfig, n_dim: int, n_features: int, seeds, pairs,
                  device: torch.device) -> list[tuple]:
    """Build and train one flow per seed; ``[(flow, epochs, best epoch, best loss), ...]`` in seed order.

    Parameters
    ----------
    config : NPEConfig
        Its ``ensemble_size`` is ignored here: one member per seed.
    n_dim, n_features : int
        Shapes of the flow.
    seeds : sequence of int
        One torch seed per member.
    pairs : sequence of (s_tr, f_tr, s_va, f_va) tensors
        Per member: training and validation latents (N, n_dim) and features (N, n_features).
    device : torch.device

    Notes
    -----
    With more than one worker (:func:`member_workers`) the members train in
    spawned processes, each with ``config.num_threads`` torch threads; each
    member's weights are those of training it alone in this process with the
    same seed and thread count, whichever process ran it and in what order.
    """
    workers = member_workers(replace(config, ensemble_size=len(seeds)), device)
    if workers <= 1:
        with torch_threads(config.num_threads):
            return [_train_one(config, n_dim, n_features, int(s), p, device) for s, p in zip(seeds, pairs)]
    # numpy across the pipe: plain pickles, not torch's shared-memory file handles
    arrays = [[t.numpy() for t in p] for p in pairs]
    # spawn, not fork: a forked torch with its thread pools already started can hang
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        with _main_module_hidden():   # the processes start at the first submissions
            futures = [pool.submit(_train_in_worker, config, n_dim, n_features, int(s), a)
                       for s, a in zip(seeds, arrays)]
        results = [f.result() for f in futures]
    out = []
    # the shells the weights are loaded into must not move the caller's generator
    with torch.random.fork_rng(devices=[]):
        for state, *record in results:
            flow = build_flow(replace(config, ensemble_size=1), n_dim, n_features)
            flow.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            flow.eval()
            out.append((flow, *record))
    return out
