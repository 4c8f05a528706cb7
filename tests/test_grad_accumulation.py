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


def earlier_pass_then_zero_grad(kind: str, *, set_to_none: bool, zero_grad: bool = True) -> nbdiag.Monitor:
    """Each step first runs a gradient computation that reaches the watched parameters while they still hold the
    previous step's gradients, then clears them and runs its own backward: a GAN whose critic loss runs through the
    generator (eriklindernoren/PyTorch-GAN wgan_gp.py), or a MAML inner ``torch.autograd.grad`` (MAML-Pytorch)."""
    torch.manual_seed(0)
    generator, critic = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8)), nn.Linear(8, 1)
    opt = torch.optim.SGD(generator.parameters(), lr=0.01)
    with nbdiag.watch(generator, opt, every=1, display=False) as mon:
        for _ in range(30):
            z = torch.randn(16, 4)
            if kind == "gan":  # the critic's backward also fills the generator's .grad
                critic(generator(torch.randn(16, 4))).mean().backward()
            else:  # an inner step by autograd.grad: the parameters' hooks see a gradient, .grad is not touched
                inner = torch.autograd.grad(generator(z).pow(2).mean(), list(generator.parameters()))
                assert all(g is not None for g in inner)
            if zero_grad:
                opt.zero_grad(set_to_none=set_to_none)
            loss = -critic(generator(z)).mean()
            loss.backward()
            opt.step()
            mon.step(loss=loss)
    return mon


@pytest.mark.parametrize("kind", ["gan", "maml"])
@pytest.mark.parametrize("set_to_none", [True, False])
def test_an_earlier_pass_meeting_old_gradients_is_not_a_missing_zero_grad(kind, set_to_none):
    mon = earlier_pass_then_zero_grad(kind, set_to_none=set_to_none)
    stale = mon.frame(kind="model", stats=["stale_grad_norm"])
    assert len(stale) >= 29 and (stale.value == 0).all()  # the backward that feeds the optimizer found them cleared
    assert [f for f in mon.findings() if f.id == "train.grad_accumulation"] == []


@pytest.mark.parametrize("kind", ["gan", "maml"])
def test_an_earlier_pass_without_zero_grad_still_fires(kind):
    mon = earlier_pass_then_zero_grad(kind, set_to_none=True, zero_grad=False)
    (finding,) = [f for f in mon.findings() if f.id == "train.grad_accumulation"]
    assert finding.severity == "warn"
