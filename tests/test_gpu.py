"""CUDA paths: no host sync on unsampled steps, one device->host copy per sampled step, bf16/fp16 autocast.

Skipped without a CUDA device (CI has none); run on a GPU machine with ``pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from nbdiag import buffer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cuda_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    ).cuda()


def train_step(model, opt, mon, x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    mon.step(loss=loss)


def test_unsampled_steps_never_sync_and_sampled_steps_copy_once():
    model = cuda_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 3, 8, 8, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    mon = nbdiag.watch(model, opt, every=5, dense=0)
    train_step(model, opt, mon, x, y)  # step 0 is sampled
    buffer.TRANSFERS["count"] = 0
    for step in range(1, 10):
        if step % 5 == 0:
            train_step(model, opt, mon, x, y)
            continue
        torch.cuda.set_sync_debug_mode("error")  # any synchronizing call raises
        try:
            train_step(model, opt, mon, x, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    mon.close()
    assert buffer.TRANSFERS["count"] == 1  # step 5 only; pending CUDA losses ride along in that copy
    assert mon.errors == []
    assert len(mon.scalars()) == 10  # every CUDA loss was read: in step 5's copy, the rest at close


def test_sampled_step_syncs_at_most_once():
    model = cuda_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 3, 8, 8, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    mon = nbdiag.watch(model, opt, every=1)
    train_step(model, opt, mon, x, y)
    buffer.TRANSFERS["count"] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    mon.close()
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert buffer.TRANSFERS["count"] == 1
    assert len(syncs) <= 1, [str(w.message) for w in syncs]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_statistics_match_fp32_reference(dtype):
    model = cuda_model()
    captured = {}
    model[0].register_forward_hook(lambda m, i, o: captured.__setitem__("conv", o.detach().float().clone()))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 3, 8, 8, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    with nbdiag.watch(model, opt, every=1) as mon, torch.autocast("cuda", dtype=dtype):
        train_step(model, opt, mon, x, y)
    frame = mon.frame(kind="activation")
    std = frame[(frame.layer == "0") & (frame.stat == "std")].value.iloc[0]
    assert std == pytest.approx(captured["conv"].std(correction=0).item(), rel=1e-3)
    assert mon.errors == []
