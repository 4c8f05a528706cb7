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
    """An independent forward hook: keeps float64 copies of the module's outputs of normal passes under autograd
    (not inside torch.func transforms)."""

    def keep(module, inputs, out):
        if torch.is_grad_enabled() and not torch._C._functorch.is_functorch_wrapped_tensor(out):
            into.append(out.detach().double().clone())

    return module.register_forward_hook(keep)


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
    fixed = (torch.randn(3, 6).to(dtype), torch.tensor([0, 1, 2]))
    mon = nbdiag.watch(model, optimizer, every=1, display=False, fixed_batch=fixed, num_classes=3)
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
    with torch.no_grad():  # the fixed batch's predictions, taken after the last update
        probabilities = model(fixed[0]).double().softmax(dim=1)
    assert _value(mon, 1, "2", "p/2", "prediction") == pytest.approx(probabilities[2, 2].item(), rel=rel)
    assert mon.inputs().values.shape == (8, 6)  # the sampled model input, of this dtype


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


# -- hooks that see torch.func transforms skip them, monitoring stays on --------------------------------------------
def _dp_sgd(watched: bool, steps: int = 3) -> tuple[list[float], nbdiag.Monitor | None, list]:
    """Per-sample gradients with ``vmap(grad(functional_call(...)))``, clipped and averaged (DP-SGD without noise),
    beside a normal forward that computes the logged loss."""
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    outputs: list = []
    hook = _outputs_of(model[1], outputs)
    mon = nbdiag.watch(model, optimizer, every=1, display=False) if watched else None
    gen = torch.Generator().manual_seed(1)

    def sample_loss(params, x, y):
        return (functional_call(model, params, (x[None],)) - y[None]).pow(2).mean()

    losses = []
    for _ in range(steps):
        x, y = torch.randn(6, 5, generator=gen), torch.randn(6, 1, generator=gen)
        params = {k: v.detach() for k, v in model.named_parameters()}
        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
        for name, p in model.named_parameters():
            g = per_sample[name]
            scale = (1.0 / g.flatten(1).norm(dim=1).clamp_min(1.0)).reshape(-1, *[1] * (g.ndim - 1))
            p.grad = (g * scale).mean(0)
        loss = (model(x) - y).pow(2).mean()  # the logged loss: a normal pass
        optimizer.step()
        losses.append(loss.item())
        if mon is not None:
            mon.step(loss)
    hook.remove()
    if mon is not None:
        mon.close()
    return losses, mon, outputs


def test_torch_func_transforms_are_skipped_and_monitoring_stays_on():
    """``vmap`` refused the histogram's ``scatter_add_`` inside nbdiag's hook and switched monitoring off at step 0
    (a monitor.hook_error warning); now the transformed calls are skipped, said once as an info note."""
    plain, _, _ = _dp_sgd(watched=False)
    losses, mon, outputs = _dp_sgd(watched=True)
    assert losses == plain
    assert mon.errors == []
    assert mon.record.steps() == [0, 1, 2]
    notes = [f for f in mon.findings() if f.id == "monitor.calls_skipped"]  # said once, as a note
    assert [(f.severity, f.step) for f in notes] == [("info", 0)]
    assert not [f for f in mon.findings() if f.severity != "info"]
    for step in range(3):  # the normal pass only: its batch of 6 x 8 outputs, not the per-sample calls
        assert _value(mon, step, "1", "count", "activation") == 6 * 8
        assert _value(mon, step, "1", "std", "activation") == pytest.approx(
            outputs[step].std(correction=0).item(), rel=1e-5
        )
        assert _value(mon, step, "0.weight", "update_ratio") > 0


# -- hooks belong to the watched model only ----------------------------------------------------------------------
def test_copies_never_inherit_hooks_nor_get_recorded():
    """``AveragedModel(model)`` or a ``deepcopy`` taken on a sampled step carried nbdiag's forward hooks, which
    close() never removed."""
    import copy
    import io

    from tests.hooks import global_hook_count, hook_count

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = nbdiag.watch(model, optimizer, every=1, display=False)
    ema = torch.optim.swa_utils.AveragedModel(model)  # deep-copies the model while hooks are attached
    snapshot = copy.deepcopy(model)
    torch.save(model, io.BytesIO())  # a whole-model checkpoint pickles: no local closure hangs on a module
    local = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in (*ema.modules(), *snapshot.modules())]
    assert sum(local) == 0
    x = torch.randn(5, 4)
    model(x).pow(2).mean().backward()
    optimizer.step()
    ema.update_parameters(model)
    ema(torch.randn(7, 4)), snapshot(torch.randn(9, 4))  # other batch sizes: a recorded copy would show
    mon.step()
    assert _value(mon, 0, "0", "count", "activation") == 5 * 8
    sample = mon.inputs().values  # the watched model's batch, not a copy's
    assert sample.shape[1:] == (4,) and (sample == x[: len(sample)].double().numpy()).all()
    mon.close()
    assert global_hook_count() == 0
    assert hook_count(model) == hook_count(ema) == hook_count(snapshot) == 0


# -- updates measured whoever steps the parameters -------------------------------------------------------------
class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimization as its reference implementation (davda54/sam) writes it: ``first_step`` climbs
    to w + e, ``second_step`` returns to w and steps ``base_optimizer``; ``step()`` itself is never called."""

    def __init__(self, params, base_optimizer, rho=0.05, **kwargs):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self):
        norm = torch.stack([p.grad.norm() for g in self.param_groups for p in g["params"] if p.grad is not None]).norm()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.state[p]["e_w"] = e_w = p.grad * group["rho"] / (norm + 1e-12)
                    p.add_(e_w)

    @torch.no_grad()
    def second_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(self.state[p]["e_w"])
        self.base_optimizer.step()


def test_two_step_optimizer_is_measured_at_its_base_step():
    """SAM's first_step/second_step never call the step() nbdiag hooked: no update ratio and no gradient norm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    mon = nbdiag.watch(model, optimizer, every=1, display=False)
    weight, expected = model[0].weight, []
    for _ in range(3):
        x = torch.randn(6, 4)
        model(x).pow(2).mean().backward()
        optimizer.first_step()
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        grad = weight.grad.detach().clone()
        before = weight.detach().clone() - optimizer.state[weight]["e_w"]  # where second_step returns to
        optimizer.second_step()
        optimizer.zero_grad()
        expected.append((grad.norm().item(), ((weight - before).norm() / before.norm()).item()))
        mon.step()
    mon.close()
    assert mon.errors == []
    for step, (grad_norm, ratio) in enumerate(expected):
        assert _value(mon, step, "0.weight", "grad_norm") == pytest.approx(grad_norm, rel=1e-5)
        assert _value(mon, step, "0.weight", "update_ratio") == pytest.approx(ratio, rel=1e-4)


class Lookahead(torch.optim.Optimizer):
    """A wrapper whose step() steps an inner optimizer, then pulls toward slow weights (Zhang et al. 2019)."""

    def __init__(self, inner, alpha=0.5):
        self.inner, self.alpha = inner, alpha
        super().__init__([p for g in inner.param_groups for p in g["params"]], {})
        self.slow = [p.detach().clone() for g in inner.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        self.inner.step()
        for p, slow in zip([p for g in self.inner.param_groups for p in g["params"]], self.slow, strict=True):
            slow.add_(p - slow, alpha=self.alpha)
            p.copy_(slow)


@pytest.mark.parametrize("kind", ["lbfgs", "wrapper"])
def test_closures_and_wrappers_are_measured_over_the_whole_step(kind):
    """LBFGS computes its gradients inside step(closure); a wrapper steps its inner optimizer inside its own step:
    the update is measured once, across the outermost step, and the gradients read where they exist."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    if kind == "lbfgs":
        optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    else:
        optimizer = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1))
    mon = nbdiag.watch(model, optimizer, every=1, display=False)
    x, weight, ratios = torch.randn(6, 4), model[0].weight, []

    def closure():
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(2):
        before = weight.detach().clone()
        if kind == "lbfgs":
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
        ratios.append(((weight - before).norm() / before.norm()).item())
        grad_norm = weight.grad.norm().item()
        mon.step()
        assert _value(mon, len(ratios) - 1, "0.weight", "update_ratio") == pytest.approx(ratios[-1], rel=1e-4)
        if kind == "lbfgs" and len(ratios) == 1:  # no gradient existed before the first step: read after it
            assert _value(mon, 0, "0.weight", "grad_norm") == pytest.approx(grad_norm, rel=1e-5)
    mon.close()
    assert mon.errors == []


def test_another_models_optimizer_is_not_measured():
    """Global step hooks are filtered to the watched parameters: a GAN's discriminator step is not the generator's."""
    torch.manual_seed(0)
    gen, disc = nn.Linear(3, 3), nn.Linear(3, 1)
    opt_g, opt_d = torch.optim.SGD(gen.parameters(), lr=0.1), torch.optim.SGD(disc.parameters(), lr=0.1)
    mon = nbdiag.watch(gen, opt_g, every=1, display=False, activations=False)
    disc(gen(torch.randn(4, 3))).mean().backward()
    opt_d.step()  # only the discriminator steps
    mon.step()
    mon.close()
    frame = mon.frame()
    assert "update_ratio" not in set(frame.stat) and mon.errors == []


# -- recomputation under activation checkpointing is recorded once ---------------------------------------------------
@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpointed_layers_are_recorded_once(reentrant):
    """Activation checkpointing recomputes the forward during backward: that second forward doubled the counts."""
    from torch.utils.checkpoint import checkpoint

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(checkpoint(self.block, x, use_reentrant=reentrant))

    torch.manual_seed(0)
    model = Net()
    outputs, grads = [], []
    model.block[1].register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    model.block[1].register_full_backward_hook(lambda m, gi, go: grads.append(go[0].detach().clone()))
    mon = nbdiag.watch(model, every=1, display=False)
    x = torch.randn(5, 4, requires_grad=reentrant)  # reentrant checkpointing needs an input that requires grad
    model(x).pow(2).mean().backward()
    mon.step()
    mon.close()
    assert mon.errors == []
    assert _value(mon, 0, "block.1", "count", "activation") == 5 * 8
    assert _value(mon, 0, "block.0", "count", "activation") == 5 * 8
    assert _value(mon, 0, "block.1", "std", "activation") == pytest.approx(outputs[-1].std(correction=0).item())
    assert _value(mon, 0, "block.1", "count", "gradient") == 5 * 8
    assert _value(mon, 0, "block.1", "norm", "gradient") == pytest.approx(grads[-1].norm().item(), rel=1e-5)


# -- modules that compute but are not leaves: recorded as the layer a user means ------------------------------------
def test_qat_and_fused_modules_are_recorded_as_their_layers():
    """After ``prepare_qat`` a Linear holds a weight fake-quantizer and an output observer: it is no leaf, and its
    output was not recorded (the fused observers it holds never run as modules)."""
    import torch.ao.quantization as quantization

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = quantization.QuantStub(), quantization.DeQuantStub()
            self.conv, self.bn, self.relu = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            x = self.relu(self.bn(self.conv(self.quant(x))))
            return self.dequant(self.fc(x.flatten(1)))

    torch.manual_seed(0)
    model = Net().train()
    model.qconfig = quantization.get_default_qat_qconfig("fbgemm")
    quantization.fuse_modules_qat(model, [["conv", "bn", "relu"]], inplace=True)
    quantization.prepare_qat(model, inplace=True)
    seen = {}
    for name in ("conv", "fc"):  # before the observer's own hook replaces the output with its fake-quantized copy
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.update({name: o.detach().clone()}), prepend=True
        )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = nbdiag.watch(model, optimizer, every=1, display=False)
    model(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
    optimizer.step()
    mon.step()
    mon.close()
    layers = set(mon.frame(kind="activation").layer)
    assert {"conv", "fc"} <= layers
    assert not any("fake_quant" in layer or "activation_post_process" in layer for layer in layers)
    for name in ("conv", "fc"):
        assert _value(mon, 0, name, "std", "activation") == pytest.approx(seen[name].std(correction=0).item())
    assert mon.errors == []
