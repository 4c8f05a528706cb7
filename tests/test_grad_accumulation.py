"""Deliberate gradient accumulation (mon.step() per micro-batch) is not a forgotten zero_grad(); that one still is."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbdiag

STEPS = 130  # past four resets of a 32-micro-batch accumulation; sampled: 0-9, then every 10th


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def accumulate(micro_batches: int, *, zero_grad: bool = True, set_to_none: bool = True) -> nbdiag.Monitor:
    """Train with the loss divided by ``micro_batches``, stepping (and zeroing) every ``micro_batches`` steps."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    with nbdiag.watch(model, opt, every=10, display=False) as mon:
        for i in range(STEPS):
            rows = slice(16 * i % 256, 16 * i % 256 + 16)
            loss = F.cross_entropy(model(x[rows]), y[rows]) / micro_batches
            loss.backward()
            if (i + 1) % micro_batches == 0:
                opt.step()
                if zero_grad:
                    opt.zero_grad(set_to_none=set_to_none)
            mon.step(loss=loss * micro_batches)
    return mon


@pytest.mark.parametrize(("micro_batches", "set_to_none"), [(4, True), (16, True), (32, True), (4, False), (16, False)])
def test_accumulating_micro_batches_is_not_a_missing_zero_grad(micro_batches, set_to_none):
    mon = accumulate(micro_batches, set_to_none=set_to_none)
    stale = mon.frame(kind="model", stats=["stale_grad_norm"])
    assert (stale.value > 0).sum() >= 10  # most sampled steps do see the accumulated gradients
    assert [f for f in mon.findings() if f.id == "train.grad_accumulation"] == []


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_never_zeroing_still_fires(micro_batches):
    mon = accumulate(micro_batches, zero_grad=False)
    (finding,) = [f for f in mon.findings() if f.id == "train.grad_accumulation"]
    carried = mon.frame(kind="model", stats=["grad_carried"])
    assert finding.severity == "warn" and (carried.value == 1).all()
