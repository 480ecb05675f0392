"""torch's global state around a block: the device, a seeded generator, the thread count.

Each context manager restores what it changed, so training and sampling leave
the caller's torch settings as they found them.
"""
from __future__ import annotations

import numpy as np
import torch

from xspec_sbi.inference.config import NPEError

__all__ = ["resolve_device", "seeded_torch", "torch_threads", "torch_seed"]


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device`` ("cpu", "cuda", "cuda:1"); clear error if unavailable."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NPEError(f"device={str(device)!r} requested but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise NPEError(f"device={str(device)!r}: only 'cpu' and 'cuda' are supported")
    return dev


def torch_seed(rng: np.random.Generator | int) -> int:
    """A seed for torch's generator drawn from ``rng`` (one draw, so ``rng`` advances).

    Parameters
    ----------
    rng : numpy.random.Generator or int
    """
    return int(np.random.default_rng(rng).integers(0, 2**62))


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
