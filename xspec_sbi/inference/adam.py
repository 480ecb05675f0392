"""Adam on one flat buffer holding every trained parameter of a flow.

``torch.optim`` imports ``torch._dynamo`` the first time an optimizer is
built (its methods are wrapped to keep the compiler out), and that import
took 1.4-2.0 s: more than half of training a 5-parameter network on 3,000
spectra, paid by every process that trains. This is the same algorithm
(Kingma & Ba 2015, as ``torch.optim.Adam`` with its defaults and no weight
decay), written on one buffer: the parameters are views of one flat tensor
and their gradients views of another, so a step is a few whole-buffer
operations, as cheap as torch's fused step on these small networks.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FlatAdam"]


class FlatAdam:
    """Adam whose parameters and gradients live in one flat tensor each.

    Parameters
    ----------
    module : torch.nn.Module
        Its parameters that require a gradient are moved into the buffer (their
        values are kept); call :meth:`release` when training ends.
    lr : float
        Step size (the attribute may be changed between steps: schedules).
    betas : (float, float)
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the root of the second moment (torch's convention: after the
        bias correction).
    """

    def __init__(self, module: nn.Module, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in module.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the module has no parameter to train")
        ref = self.params[0]
        n = sum(p.numel() for p in self.params)
        self.flat = torch.empty(n, dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros_like(self.flat)
        a = 0
        for p in self.params:
            b = a + p.numel()
            self.flat[a:b].copy_(p.detach().reshape(-1))
            # autograd accumulates into a gradient that exists, in place: into the buffer
            p.data = self.flat[a:b].view_as(p)
            p.grad = self.grad[a:b].view_as(p)
            a = b
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.steps = 0

    def zero_grad(self) -> None:
        self.grad.zero_()

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> None:
        """Scale the gradients to a Euclidean norm of at most ``max_norm``, as
        ``torch.nn.utils.clip_grad_norm_`` does (the norm stays a tensor: no
        host synchronisation a step on a GPU)."""
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.steps += 1
        self.m.lerp_(self.grad, 1.0 - b1)
        self.v.mul_(b2).addcmul_(self.grad, self.grad, value=1.0 - b2)
        correction1 = 1.0 - b1 ** self.steps
        root_correction2 = math.sqrt(1.0 - b2 ** self.steps)
        denom = (self.v.sqrt() / root_correction2).add_(self.eps)
        self.flat.addcdiv_(self.m, denom, value=-self.lr / correction1)

    def release(self) -> None:
        """Give every parameter its own storage again and drop the gradients
        (a saved or pickled flow then holds its own weights, not the buffer)."""
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None
