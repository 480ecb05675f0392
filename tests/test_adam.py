"""The flat-buffer Adam against torch.optim.Adam (an independent implementation): same steps."""
import subprocess
import sys

import torch
from torch import nn

from xspec_sbi.inference.adam import FlatAdam


def net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def run(model, step, n=60, clip=None):
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        x = torch.randn(32, 4, generator=g)
        loss = (model(x) ** 2).sum() * (10.0 if i % 7 == 0 else 1.0)   # some steps clipped
        step(loss, i, clip)
    return [p.detach().clone() for p in model.parameters()]


def test_flat_adam_takes_torchs_adam_steps_with_clipping_and_a_schedule():
    ours, theirs = net(0), net(0)
    flat = FlatAdam(ours, lr=1e-2)
    ref = torch.optim.Adam(theirs.parameters(), lr=1e-2)

    def step_ours(loss, i, clip):
        flat.lr = 1e-2 * (1 - i / 100)
        flat.zero_grad()
        loss.backward()
        flat.clip_grad_norm(clip)
        flat.step()

    def step_ref(loss, i, clip):
        ref.param_groups[0]["lr"] = 1e-2 * (1 - i / 100)
        ref.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(theirs.parameters(), clip)
        ref.step()

    a, b = run(ours, step_ours, clip=1.0), run(theirs, step_ref, clip=1.0)
    moved = max(float((x - y).abs().max()) for x, y in zip(a, [p.detach() for p in net(0).parameters()]))
    assert moved > 0.05                      # the steps did move the weights
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_released_parameters_own_their_storage_and_keep_their_values():
    model = net(2)
    opt = FlatAdam(model, lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    opt.release()
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(storages) == len(before)
    assert all(p.grad is None for p in model.parameters())
    for p, q in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)


def test_training_a_network_does_not_import_torchs_compiler():
    code = ("import sys, numpy as np\n"
            "from xspec_sbi.inference.config import NPEConfig\n"
            "from xspec_sbi.inference.training import train_npe\n"
            "from xspec_sbi.inference.priors import BoxPrior\n"
            "from xspec_sbi.inference.parameter_prior import ParameterPrior\n"
            "box = BoxPrior((ParameterPrior('a', 'uniform', 0.0, 1.0),))\n"
            "rng = np.random.default_rng(0)\n"
            "theta = rng.uniform(size=(400, 1)); x = rng.poisson(50 * theta + 1, size=(400, 4))\n"
            "train_npe(theta, x, box, rng=0, config=NPEConfig(max_epochs=3, min_epochs=1))\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"
