"""Attaching is all-or-nothing, wrapped optimizers are unwrapped, and a model that changes which parameters require
gradients mid-training (a freezing schedule) never makes nbdiag raise into the training loop."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.probe import unwrap_optimizer
from tests.hooks import hook_count


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def train(model, optimizer, steps, mon=None, before_step=None, backward=None):
    torch.manual_seed(1)
    losses = []
    for step in range(steps):
        if before_step is not None:
            before_step(step)
        loss = model(torch.randn(6, 4)).pow(2).mean()
        (backward or torch.Tensor.backward)(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach())
        if mon is not None:
            mon.step(loss=loss)
    return torch.stack(losses)


def broken_post_hook_registration(hook):
    """The last registration (the global optimizer step post-hook) fails: everything registered before it must be
    removed again."""
    raise RuntimeError("planted registration failure")


def test_a_failed_registration_leaves_no_hook_and_training_goes_on(monkeypatch):
    from nbdiag import capture

    monkeypatch.setattr(capture, "register_optimizer_step_post_hook", broken_post_hook_registration)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(nbdiag.NbdiagWarning, match="planted registration failure"):
        mon = nbdiag.watch(model, optimizer, every=1, display=False)
    assert hook_count(model, optimizer) == 0
    assert "while attaching hooks" in mon.errors[0].message
    losses = train(model, optimizer, 3, mon)  # no further warning, no exception, no hook
    assert hook_count(model, optimizer) == 0 and mon.record.steps() == []
    assert mon.scalars()["loss"].tolist() == losses.tolist()


def test_accelerated_optimizer_is_unwrapped_and_hooked():
    accelerate = pytest.importorskip("accelerate")
    model = mlp()
    accelerator = accelerate.Accelerator(cpu=True)
    prepared, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert type(optimizer).__name__ == "AcceleratedOptimizer" and isinstance(optimizer, torch.optim.Optimizer)
    assert unwrap_optimizer(optimizer) is optimizer.optimizer
    before = hook_count(model, optimizer.optimizer)
    with nbdiag.watch(prepared, optimizer, every=1, display=False) as mon:
        train(prepared, optimizer, 3, mon, backward=accelerator.backward)
    assert mon.errors == [] and mon.record.steps() == [0, 1, 2]
    assert set(mon.frame().kind) >= {"activation", "gradient", "weight", "update"}
    assert hook_count(model, optimizer.optimizer) == before


def test_lightning_optimizer_is_unwrapped():
    core = pytest.importorskip("lightning.pytorch.core.optimizer")
    inner = torch.optim.SGD(mlp().parameters(), lr=0.1)
    assert unwrap_optimizer(core.LightningOptimizer(inner)) is inner


def test_any_object_holding_an_optimizer_is_unwrapped():
    inner = torch.optim.SGD(mlp().parameters(), lr=0.1)

    class Wrapper:
        optimizer = inner

    assert unwrap_optimizer(Wrapper()) is inner
    assert unwrap_optimizer(inner) is inner


class NeverInitialised(torch.optim.SGD):
    """Passes isinstance(..., Optimizer) without Optimizer.__init__ and wraps nothing (no ``.optimizer``)."""

    def __init__(self, params):
        self.param_groups = [{"params": list(params)}]

    def step(self, closure=None):
        with torch.no_grad():
            for p in self.param_groups[0]["params"]:
                p -= 0.1 * p.grad

    def zero_grad(self, set_to_none=True):
        for p in self.param_groups[0]["params"]:
            p.grad = None


def test_an_optimizer_that_cannot_take_step_hooks_degrades_to_gradient_hooks():
    model = mlp()
    optimizer = NeverInitialised(model.parameters())
    with pytest.warns(nbdiag.NbdiagWarning, match="never ran torch.optim.Optimizer.__init__"):
        mon = nbdiag.watch(model, optimizer, every=1, display=False)
    with mon:
        train(model, optimizer, 2, mon)
    assert mon.errors == []
    grads = mon.frame().query("kind == 'weight' and stat == 'grad_norm'")
    assert len(grads) == 2 * 4 and grads.value.notna().all()
    assert hook_count(model) == 0


@pytest.mark.parametrize("with_optimizer", [True, False])
def test_a_freezing_schedule_never_raises_and_records_what_trains(with_optimizer):
    """Layer 2 starts frozen and is unfrozen at step 3; layer 0 is frozen at step 15 (every=10: the registration at
    step 20 used to raise RuntimeError). Sampled steps record the gradients of exactly what trains."""
    model = mlp()
    model[2].requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def schedule(step):
        if step == 3:
            model[2].requires_grad_(True)
        if step == 15:
            model[0].requires_grad_(False)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon = nbdiag.watch(model, optimizer if with_optimizer else None, every=10, dense=1, display=False)
        with mon:
            losses = train(model, optimizer, 31, mon, before_step=schedule)
    assert mon.errors == [] and mon.record.steps() == [0, 10, 20, 30]
    grads = (
        mon.frame()
        .query("kind == 'weight' and stat == 'grad_norm'")
        .pivot(index="step", columns="layer", values="value")
    )
    frozen = grads.isna()
    assert grads.loc[0, "0.weight"] > 0 and frozen.loc[0, "2.weight"]
    assert grads.loc[10, ["0.weight", "2.weight"]].gt(0).all()
    assert frozen.loc[20, "0.weight"] and grads.loc[20, "2.weight"] > 0
    assert hook_count(model, optimizer) == 0

    torch.manual_seed(0)
    plain = mlp()
    plain[2].requires_grad_(False)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)

    def plain_schedule(step):
        if step == 3:
            plain[2].requires_grad_(True)
        if step == 15:
            plain[0].requires_grad_(False)

    assert torch.equal(train(plain, plain_opt, 31, before_step=plain_schedule), losses)


def test_zero_redundancy_optimizer_is_hooked_itself(tmp_path):
    """ZeroRedundancyOptimizer ran Optimizer.__init__ and steps its shard inside its own step: its hooks see every
    parameter, so it is kept (not unwrapped to the shard optimizer it holds as ``.optim``)."""
    dist = torch.distributed
    from torch.distributed.optim import ZeroRedundancyOptimizer

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = mlp()
        optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.SGD, lr=0.1)
        assert unwrap_optimizer(optimizer) is optimizer
        with nbdiag.watch(model, optimizer, every=1, display=False) as mon:
            train(model, optimizer, 2, mon)
        assert mon.errors == []
        ratios = mon.frame().query("kind == 'update' and stat == 'update_ratio'")
        assert len(ratios) == 2 * 4 and (ratios.value > 0).all()
        assert hook_count(model, optimizer) == 0
    finally:
        dist.destroy_process_group()
