"""A torch.compile'd model is watched through its parameters by default: no hook inside the compiled region, so the
compiled graph stays whole on every step, sampled or not, and training is unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from tests.hooks import hook_count


def train(compiled, opt, steps, mon=None):
    torch.manual_seed(1)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(compiled(torch.randn(8, 6)), torch.randint(0, 3, (8,)))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
        if mon is not None:
            mon.step(loss=loss)
    return torch.stack(losses)


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_compiled_model_records_parameters_only_in_one_whole_graph():
    from torch._dynamo.utils import counters

    model, opt = build()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager")
    with pytest.warns(nbdiag.NbdiagWarning, match="records parameters only"):
        mon = nbdiag.watch(compiled, opt, every=5, dense=1)
    with mon:
        losses = train(compiled, opt, 12, mon)
    assert counters["frames"]["total"] == 1 and sum(counters["graph_break"].values()) == 0  # one graph, always
    assert mon.errors == [] and mon.record.steps() == [0, 5, 10]
    assert set(mon.frame().kind) >= {"weight", "update"} and "activation" not in set(mon.frame().kind)
    grads = mon.frame().query("kind == 'weight' and stat == 'grad_norm'")
    assert len(grads) == 3 * 4 and (grads.value > 0).all()
    assert hook_count(model, opt) == 0

    plain, plain_opt = build()
    torch._dynamo.reset()
    assert torch.equal(train(torch.compile(plain, backend="eager"), plain_opt, 12), losses)


def test_activations_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="got activations='yes', expected True, False or None"):
        nbdiag.watch(nn.Linear(2, 2), activations="yes")


def test_an_eager_model_can_skip_activations():
    model, opt = build()
    with nbdiag.watch(model, opt, every=1, activations=False) as mon:
        train(model, opt, 2, mon)
    assert "activation" not in set(mon.frame().kind) and "update" in set(mon.frame().kind)
