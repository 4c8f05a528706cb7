"""Robust by construction (issue 25, part 4): each contract with its own regression test.

Every test here trains a correct program that nbdiag once broke, blinded or changed, and checks nbdiag's numbers
against an independent computation (plain forward hooks, torch on float64 copies).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbdiag


def _value(mon: nbdiag.Monitor, step: int, layer: str, stat: str, kind: str | None = None) -> float:
    frame = mon.frame()
    rows = frame[(frame.step == step) & (frame.layer == layer) & (frame.stat == stat)]
    if kind is not None:
        rows = rows[rows.kind == kind]
    assert len(rows) == 1, f"{layer}/{stat} at step {step}: {len(rows)} rows"
    return float(rows.value.iloc[0])


def _outputs_of(module: nn.Module, into: list) -> torch.utils.hooks.RemovableHandle:
    """An independent forward hook: keeps float64 copies of the module's outputs under autograd."""
    return module.register_forward_hook(
        lambda m, i, out: into.append(out.detach().double().clone()) if torch.is_grad_enabled() else None
    )


# -- every floating dtype, in every statistic and every parameter path ----------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_every_floating_dtype_is_measured_in_every_path(dtype):
    """float64 once switched monitoring off (``_foreach_norm(..., dtype=float32)`` refuses to narrow a double);
    each statistic must equal the float64 computation on the same tensors."""
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3), nn.ReLU()).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    outputs: list = []
    hook = _outputs_of(model[1], outputs)
    weight, grads, befores, held = model[0].weight, [], [], []
    mon = nbdiag.watch(model, optimizer, every=1, display=False, inputs=False)
    for step in range(2):
        x = torch.randn(8, 6).to(dtype)
        loss = model(x).float().pow(2).mean()
        if step == 0:
            optimizer.zero_grad()  # step 1 keeps step 0's gradients: a stale gradient norm to measure
        loss.backward()
        grads.append(weight.grad.detach().double().clone())
        held.append(torch.stack([p.grad.double().norm() for p in model.parameters()]).norm().item())
        befores.append(weight.detach().double().clone())
        optimizer.step()
        mon.step(loss)
    hook.remove()
    mon.close()

    assert mon.errors == []
    rel = 1e-5 if dtype == torch.float64 else 1e-3
    after = weight.detach().double()
    assert _value(mon, 0, "1", "std", "activation") == pytest.approx(outputs[0].std(correction=0).item(), rel=rel)
    assert _value(mon, 1, "0.weight", "norm") == pytest.approx(after.norm().item(), rel=rel)
    assert _value(mon, 1, "0.weight", "std") == pytest.approx(after.std(correction=0).item(), rel=rel)
    assert _value(mon, 1, "0.weight", "grad_norm") == pytest.approx(grads[1].norm().item(), rel=rel)
    assert _value(mon, 1, "0.weight", "grad_max") == pytest.approx(grads[1].abs().max().item(), rel=rel)
    ratio = (after - befores[1]).norm() / befores[1].norm()
    assert _value(mon, 1, "0.weight", "update_ratio") == pytest.approx(ratio.item(), rel=1e-2 if rel > 1e-5 else rel)
    assert _value(mon, 1, "(model)", "stale_grad_norm") == pytest.approx(held[0], rel=rel)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_parameter_rows_of_every_dtype_match_float64(dtype):
    """weight_matrix / grad_matrix on each dtype alone and mixed with float32 parameters (one model may hold both)."""
    from nbdiag.weights import grad_matrix, norms_fp32, weight_matrix

    values = [torch.randn(30, 7) * 3 + 1, torch.randn(50).to(dtype) * 2 - 0.5, torch.randn(5).to(dtype)]
    rows, grads = weight_matrix(values).double(), grad_matrix(values).double()
    for row, grad_row, t in zip(rows, grads, values, strict=True):
        f = t.double().reshape(-1)
        assert row[0].item() == pytest.approx(f.norm().item(), rel=1e-5)
        assert row[1].item() == pytest.approx(f.mean().item(), rel=1e-5, abs=1e-6)
        assert row[2].item() == pytest.approx(f.std(correction=0).item(), rel=1e-4)
        assert grad_row[1].item() == f.abs().max().item()
    norms = norms_fp32(values)
    assert all(n.dtype == torch.float32 for n in norms)
    assert [n.item() for n in norms] == pytest.approx([t.double().norm().item() for t in values], rel=1e-5)


def test_half_weights_far_apart_do_not_overflow_the_spread():
    """fp16 values of +-4e4 (within range) would overflow to inf when shifted in fp16."""
    from nbdiag.weights import weight_matrix

    t = torch.tensor([-40000.0, 40000.0, 0.0, 1.0], dtype=torch.float16)
    row = weight_matrix([t])[0].double()
    assert row[2].item() == pytest.approx(t.double().std(correction=0).item(), rel=1e-5)


# -- nothing nbdiag reads runs user code with side effects ---------------------------------------------------------
def _normed_cnn(norm) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        norm(nn.Conv2d(1, 4, 3)), nn.ReLU(), nn.Flatten(), norm(nn.Linear(4 * 6 * 6, 10)), nn.LogSoftmax(dim=1)
    )


def _train_normed(norm, watched: bool, steps: int = 3) -> tuple[list[float], dict]:
    model = _normed_cnn(norm)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = nbdiag.watch(model, optimizer, every=1, display=False) if watched else None
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        loss = nn.functional.nll_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if mon is not None:
            mon.step(loss)
    if mon is not None:
        assert mon.errors == []
        mon.close()
    return losses, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "norm",
    [
        nn.utils.parametrizations.spectral_norm,  # reading .weight in train mode steps the power iteration
        nn.utils.parametrizations.weight_norm,
        nn.utils.spectral_norm,  # the hook-based forms keep the computed weight as a plain attribute
        nn.utils.weight_norm,
    ],
    ids=["spectral_norm", "weight_norm", "hook_spectral_norm", "hook_weight_norm"],
)
def test_parametrized_weights_train_bitwise_identically_when_watched(norm):
    """spectral_norm's loss at step 0 differed with nbdiag (the first conv's weight was read at watch time, which
    ran one more power iteration): losses and every buffer (``_u``, ``_v``) must be bitwise equal."""
    plain_losses, plain_state = _train_normed(norm, watched=False)
    watched_losses, watched_state = _train_normed(norm, watched=True)
    assert watched_losses == plain_losses
    assert plain_state.keys() == watched_state.keys()
    assert all(torch.equal(plain_state[k], watched_state[k]) for k in plain_state)


def test_reading_stored_weights_runs_no_parametrization_and_no_property():
    from nbdiag.filters import first_filters
    from nbdiag.frozen_init import frozen_at_init
    from nbdiag.stored import stored_tensor

    calls = []

    class Counting(nn.Module):
        def forward(self, w):
            calls.append(1)
            return w

    class Computed(nn.Module):
        def __init__(self):
            super().__init__()
            self.raw = nn.Parameter(torch.randn(3, 3))

        @property
        def weight(self):  # a property that computes: nbdiag must not call it
            calls.append(1)
            return self.raw * 2

    conv = nn.Conv2d(1, 2, 3)
    nn.utils.parametrize.register_parametrization(conv, "weight", Counting())
    model = nn.Sequential(conv, Computed())
    model[0].weight.requires_grad_(False)
    calls.clear()
    filters = first_filters(model)
    frozen_at_init(model)
    assert calls == []
    assert filters.weight is conv.parametrizations.weight.original
    assert stored_tensor(model[1]) is None and stored_tensor(model[1], "raw") is model[1].raw
    assert stored_tensor(nn.utils.weight_norm(nn.Linear(2, 2))).shape == (2, 2)  # weight_v
