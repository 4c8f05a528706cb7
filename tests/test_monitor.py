"""The monitoring core: numbers against independent computations, observing changes nothing, hooks always removed."""

from __future__ import annotations

import gc
import threading
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from nbdiag import buffer
from nbdiag.monitor import NbdiagWarning
from tests import models
from tests.hooks import global_hook_count, optimizer_hooks


def classification_batch(n: int = 32):
    return torch.randn(n, 1, 8, 8), torch.randint(0, 10, (n,))


def train(model, opt, steps, mon=None, batch=None, loss_fn=F.cross_entropy):
    x, y = batch if batch is not None else classification_batch()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if mon is not None:
            mon.step(loss=loss)
        losses.append(loss.detach())
    return torch.stack(losses)


def capture_outputs(model):
    """Independent capture: clone every leaf's output and output gradient with plain hooks."""
    acts, grads, handles = {}, {}, []

    def hook(name):
        def forward_hook(module, inputs, output):
            acts[name] = output.detach().clone()
            if output.requires_grad:
                output.register_hook(lambda g: grads.__setitem__(name, g.detach().clone()))

        return forward_hook

    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            handles.append(module.register_forward_hook(hook(name)))
    return acts, grads, handles


def value(frame, step, layer, kind, stat):
    rows = frame[(frame.step == step) & (frame.layer == layer) & (frame.kind == kind) & (frame.stat == stat)]
    assert len(rows) == 1, f"expected one row for {(step, layer, kind, stat)}, got {len(rows)}"
    return float(rows.value.iloc[0])


# -- numbers ---------------------------------------------------------------------------------------------------
def test_activation_and_gradient_stats_equal_torch_on_captured_tensors():
    model = nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 5))
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    acts, grads, handles = capture_outputs(model)
    with nbdiag.watch(model, every=1, hist_sample=None) as mon:
        F.cross_entropy(model(x), y).backward()
        mon.step()
    for h in handles:
        h.remove()
    frame = mon.frame()
    edges, hist = mon.histograms("activation")
    _, ghist = mon.histograms("gradient")
    for layer in ("0", "1", "2"):
        a, g = acts[layer], grads[layer]
        assert value(frame, 0, layer, "activation", "mean") == pytest.approx(torch.mean(a).item(), rel=1e-5, abs=1e-7)
        assert value(frame, 0, layer, "activation", "std") == pytest.approx(torch.std(a, correction=0).item(), rel=1e-5)
        assert value(frame, 0, layer, "activation", "max") == a.max().item()
        assert value(frame, 0, layer, "gradient", "std") == pytest.approx(torch.std(g, correction=0).item(), rel=1e-5)
        assert value(frame, 0, layer, "gradient", "norm") == pytest.approx(torch.linalg.vector_norm(g).item(), rel=1e-5)
        np.testing.assert_array_equal(hist.loc[(0, layer)].to_numpy(), np.histogram(a.numpy(), bins=edges)[0])
        np.testing.assert_array_equal(ghist.loc[(0, layer)].to_numpy(), np.histogram(g.numpy(), bins=edges)[0])
    tanh_saturated = (acts["1"].abs() >= 0.98).float().mean().item()
    assert value(frame, 0, "1", "activation", "saturated_frac") == pytest.approx(tanh_saturated)
    assert frame[(frame.layer == "0") & (frame.stat == "saturated_frac")].empty  # Linear is not bounded


def test_weight_grad_and_update_ratio_equal_manual_copies():
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    with nbdiag.watch(model, opt, every=1) as mon:
        for step in range(3):
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            F.cross_entropy(model(x), y).backward()
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            opt.step()
            opt.zero_grad()
            mon.step()
            frame = mon.frame()
            for name, p in model.named_parameters():
                ratio = torch.linalg.vector_norm(p.detach() - before[name]) / torch.linalg.vector_norm(before[name])
                assert value(frame, step, name, "update", "update_ratio") == pytest.approx(ratio.item(), rel=1e-5)
                assert value(frame, step, name, "weight", "grad_norm") == pytest.approx(
                    torch.linalg.vector_norm(grads[name]).item(), rel=1e-5
                )
                assert value(frame, step, name, "weight", "grad_max") == pytest.approx(grads[name].abs().max().item())
                assert value(frame, step, name, "weight", "std") == pytest.approx(
                    torch.std(p.detach(), correction=0).item(), rel=1e-5
                )


def test_scalars_logged_every_step():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=5, dense=0) as mon:
        for i in range(12):
            loss = model(torch.ones(2, 3)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss, lr=0.1, acc=torch.tensor(i / 12))
    scalars = mon.scalars()
    assert list(scalars.index) == list(range(12))
    assert scalars["acc"].to_numpy() == pytest.approx(np.arange(12) / 12)
    assert mon.record.steps() == [0, 5, 10]


# -- observing changes nothing -------------------------------------------------------------------------------
@pytest.mark.parametrize("every", [1, 3])
def test_losses_bitwise_equal_with_and_without_watch(every):
    def run(monitored: bool):
        torch.manual_seed(1)
        model = models.small_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = classification_batch(16)
        if not monitored:
            return train(model, opt, 8, batch=batch)
        with nbdiag.watch(model, opt, every=every, dense=2, fixed_batch=batch) as mon:
            return train(model, opt, 8, mon, batch=batch)

    plain, watched = run(False), run(True)
    assert torch.equal(plain, watched)


# -- awkward models --------------------------------------------------------------------------------------------
def test_inplace_relu_gets_masked_gradient():
    model = nn.Sequential(nn.Linear(5, 40), nn.ReLU(inplace=True), nn.Linear(40, 3))
    acts, grads, handles = capture_outputs(model)
    with nbdiag.watch(model, every=1) as mon:
        model(torch.randn(32, 5)).sum().backward()
        mon.step()
    for h in handles:
        h.remove()
    frame = mon.frame()
    # the Linear's output gradient is masked by the ReLU that overwrote its output in place
    assert value(frame, 0, "0", "gradient", "zero_frac") == pytest.approx((grads["0"] == 0).float().mean().item())
    assert value(frame, 0, "0", "gradient", "zero_frac") > 0.2
    assert value(frame, 0, "1", "activation", "zero_frac") == pytest.approx((acts["1"] == 0).float().mean().item())


def test_module_called_twice_is_merged_exactly():
    model = models.Shared()
    x = torch.randn(8, 6)
    calls = []
    handle = model.shared.register_forward_hook(lambda m, i, o: calls.append(o.detach().clone()))
    with nbdiag.watch(model, every=1) as mon:
        model(x).sum().backward()
        mon.step()
    handle.remove()
    both = torch.cat(calls)
    frame = mon.frame()
    assert value(frame, 0, "shared", "activation", "count") == both.numel()
    assert value(frame, 0, "shared", "activation", "std") == pytest.approx(
        torch.std(both, correction=0).item(), rel=1e-5
    )
    assert value(frame, 0, "act", "activation", "count") == 2 * 8 * 6


def test_tied_weights_recorded_once():
    model = models.Tied()
    with nbdiag.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), every=1) as mon:
        model(torch.randint(0, 11, (4, 6))).sum().backward()
        mon.step()
    weights = mon.frame(kind="weight")
    assert sorted(weights.layer.unique()) == ["embed.weight"]


def test_tuple_dict_dataclass_outputs_are_flattened():
    model = models.Composite()
    with nbdiag.watch(model, every=1) as mon:
        model(torch.randn(5, 4)).sum().backward()
        mon.step()
    layers = set(mon.layers)
    assert {"tup.lin", "dc.lin", "head"} <= layers
    activations = mon.frame(kind="activation")
    assert value(activations, 0, "head", "activation", "count") == 15


def test_lstm_and_parameterless_modules():
    model = models.Recurrent()
    with nbdiag.watch(model, every=1) as mon:
        model(torch.randn(3, 4, 5)).sum().backward()
        mon.step()
    assert {"lstm/0", "lstm/1/0", "lstm/1/1", "head"} <= set(mon.layers)
    assert value(mon.frame(), 0, "lstm/0", "activation", "count") == 3 * 4 * 7
    flat = nn.Sequential(nn.Flatten(), nn.Identity(), nn.Linear(4, 2), nn.Dropout(0.5))
    with nbdiag.watch(flat, every=1) as mon:
        flat(torch.randn(2, 2, 2)).sum().backward()
        mon.step()
    assert mon.layers == ["2", "3"]  # Flatten and Identity only repeat their input's values


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(dtype):
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(dtype)
    x = torch.randn(8, 16, dtype=dtype)
    acts, _, handles = capture_outputs(model)
    with nbdiag.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), every=1) as mon:
        model(x).float().sum().backward()
        mon.step()
    for h in handles:
        h.remove()
    assert mon.errors == []
    std = torch.std(acts["0"].float(), correction=0).item()
    assert value(mon.frame(), 0, "0", "activation", "std") == pytest.approx(std, rel=1e-4)


def test_model_with_500_layers():
    model = models.deep_mlp(260)  # 521 leaf modules
    with nbdiag.watch(model, every=1) as mon:
        model(torch.randn(4, 8)).sum().backward()
        mon.step()
    assert len(mon.layers) == 521
    assert len(mon.frame(kind="gradient").layer.unique()) == 521


# -- hooks are always removed -----------------------------------------------------------------------------------
def hook_count(model: nn.Module) -> int:
    count = global_hook_count()
    for module in model.modules():
        count += len(module._forward_hooks) + len(module._forward_pre_hooks)
    for p in model.parameters():
        count += len(getattr(p, "_post_accumulate_grad_hooks", None) or {}) + len(p._backward_hooks or {})
    return count


def test_close_removes_every_hook_including_optimizer():
    model = models.small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = nbdiag.watch(model, opt, every=1)
    assert hook_count(model) > 0
    assert len(optimizer_hooks._global_optimizer_pre_hooks) == 1
    mon.close()
    mon.close()  # idempotent
    assert hook_count(model) == 0
    assert len(optimizer_hooks._global_optimizer_pre_hooks) == 0
    assert len(optimizer_hooks._global_optimizer_post_hooks) == 0


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_hooks_removed_when_training_raises(where):
    class Boom(nn.Module):
        def forward(self, x):
            if where == "forward":
                raise RuntimeError("boom in forward")
            return x * 1.0

    model = nn.Sequential(nn.Linear(3, 3), Boom())
    with pytest.raises(RuntimeError, match="boom"), nbdiag.watch(model, every=1):
        out = model(torch.randn(2, 3))
        out.register_hook(lambda g: (_ for _ in ()).throw(RuntimeError("boom in backward")))
        out.sum().backward()
    assert hook_count(model) == 0


def test_hooks_removed_on_keyboard_interrupt():
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(KeyboardInterrupt), nbdiag.watch(model, every=1) as mon:
        model(torch.randn(2, 3))
        raise KeyboardInterrupt
    assert mon.closed and hook_count(model) == 0


def test_closed_monitor_releases_the_model():
    model = models.small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=1, fixed_batch=classification_batch(4)) as mon:
        train(model, opt, 2, mon)
    ref = weakref.ref(model)
    del model, opt
    gc.collect()
    assert ref() is None
    assert len(mon.frame()) > 0  # the record outlives the model


def test_unsampled_steps_run_no_hook():
    model = nn.Sequential(nn.Linear(3, 3))
    mon = nbdiag.watch(model, every=10, dense=1)
    model(torch.randn(1, 3)).sum().backward()
    mon.step()
    assert hook_count(model) == 0  # step 1 is not sampled
    for _ in range(9):
        mon.step()
    assert hook_count(model) > 0  # step 10 is
    mon.close()


# -- no tensor kept, no per-layer host sync ---------------------------------------------------------------------
def test_memory_flat_over_2000_monitored_steps():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 8), torch.randint(0, 2, (8,))

    def train_until_record_full(mon):  # the record's length cycles between capacity/2 and capacity
        while len(mon.record.steps()) < mon.record.capacity:
            train(model, opt, 1, mon, batch=(x, y))

    tracemalloc.start()  # before warm-up: memory freed later must have been traced to count as freed
    with nbdiag.watch(model, opt, every=1, capacity=64) as mon:
        mon.record.scalar_capacity = 64  # the loss history is bounded too
        train(model, opt, 300, mon, batch=(x, y))
        train_until_record_full(mon)
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        train(model, opt, 2000, mon, batch=(x, y))
        train_until_record_full(mon)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
    assert len(mon.scalars()) <= 64
    assert grown < 64 * 1024, f"memory grew by {grown} bytes over 2000 steps"


def test_no_item_and_one_host_copy_per_sampled_step(monkeypatch):
    model = models.small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = nbdiag.watch(model, opt, every=4, dense=0)
    x, y = classification_batch(8)

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync inside nbdiag")

    buffer.TRANSFERS["count"] = 0
    for step in range(12):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "cpu", "numpy"):
                patch.setattr(torch.Tensor, name, forbidden)
            if step % 4 != 0:
                mon.step()  # unsampled steps must not touch the host at all
        if step % 4 == 0:
            mon.step()
    mon.close()
    assert mon.errors == []
    assert buffer.TRANSFERS["count"] == 3  # steps 0, 4, 8: one copy each


def forbidden(name: str):
    def call(*args, **kwargs):
        raise AssertionError(f"Tensor.{name} called inside nbdiag's hooks")

    return call


def test_forward_hooks_never_sync(monkeypatch):
    model = models.small_cnn()
    with nbdiag.watch(model, every=1) as mon:
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__"):
                patch.setattr(torch.Tensor, name, forbidden(name))
            out = model(torch.randn(4, 1, 8, 8))
            out.sum().backward()
        mon.step()
    assert mon.errors == []
    assert len(mon.frame(kind="gradient")) > 0


# -- non-finite values -------------------------------------------------------------------------------------------
def test_first_nonfinite_layer_in_forward_order_is_recorded_not_raised():
    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x)  # NaN for negative inputs

    model = nn.Sequential(nn.Linear(4, 4), Log(), nn.Linear(4, 2), nn.Tanh())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=1) as mon:
        train(model, opt, 3, mon, batch=(torch.randn(8, 4), torch.randint(0, 2, (8,))))
    first = mon.record.first_nonfinite
    assert (first.layer, first.kind, first.step) == ("1", "activation", 0)
    [finding] = [f for f in mon.findings() if f.id == "train.nonfinite"]
    assert finding.layer == "1" and finding.severity == "fail"


# -- stale gradients ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["zero_grad before backward", "zero_grad after step", "never"])
def test_stale_gradient_norm_depends_only_on_zeroing(order):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with nbdiag.watch(model, opt, every=1) as mon:
        for _ in range(4):
            loss = F.cross_entropy(model(x), y)
            if order == "zero_grad before backward":
                opt.zero_grad()
            loss.backward()
            opt.step()
            if order == "zero_grad after step":
                opt.zero_grad()
            mon.step(loss=loss)
    stale = mon.frame(kind="model", stats=["stale_grad_norm"])
    if order == "never":
        assert list(stale.step) == [1, 2, 3] and (stale.value > 0).all()
    else:
        assert stale.empty  # gradients still held at forward time but cleared before backward are not stale


# -- bad input and misuse ---------------------------------------------------------------------------------------
def test_bad_inputs_get_clear_errors():
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got generator"):
        nbdiag.watch(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="got every=0, expected an int >= 1"):
        nbdiag.watch(nn.Linear(2, 2), every=0)
    with pytest.raises(TypeError, match="got every=2.5, expected an int >= 1"):
        nbdiag.watch(nn.Linear(2, 2), every=2.5)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        nbdiag.watch(nn.Linear(2, 2), [1])
    mon = nbdiag.watch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="1-element tensor"):
        mon.step(loss=torch.ones(3))
    mon.close()


def test_optimizer_without_model_parameters_warns():
    other = nn.Linear(2, 2)
    with pytest.warns(NbdiagWarning, match="holds none of the model's parameters"):
        mon = nbdiag.watch(nn.Linear(3, 3), torch.optim.SGD(other.parameters(), lr=0.1))
    mon.close()


def test_watching_twice_closes_the_first_monitor():
    model = nn.Sequential(nn.Linear(3, 3))
    first = nbdiag.watch(model, every=1)
    single = hook_count(model)
    with pytest.warns(NbdiagWarning, match="already watched"):
        second = nbdiag.watch(model, every=1)
    assert first.closed and not second.closed
    assert hook_count(model) == single
    second.close()


def test_failing_hook_switches_capture_off_and_training_goes_on(monkeypatch):
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monkeypatch.setattr("nbdiag.quantities.activation.raw_stats", lambda *a, **k: 1 / 0)
    mon = nbdiag.watch(model, opt, every=1)
    torch.manual_seed(0)
    with pytest.warns(NbdiagWarning, match="switched monitoring off"):
        losses = train(model, opt, 3, mon, batch=(torch.randn(4, 3), torch.randn(4, 1)), loss_fn=F.mse_loss)
    assert torch.isfinite(losses).all() and losses[-1] < losses[0]
    assert "ZeroDivisionError" in mon.errors[0].message and "raw_stats" in mon.errors[0].traceback
    assert hook_count(model) == 0
    mon.close()


def test_compiled_model_with_activations_warns_is_recorded_and_sampling_never_recompiles():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    compiled = torch.compile(model, backend="eager")
    with pytest.warns(NbdiagWarning, match="breaks into one graph per layer"):
        mon = nbdiag.watch(compiled, opt, every=10, dense=2, activations=True)
    frames_after_first_step = None
    for step in range(100):  # hooks are attached and removed 10 times
        loss = compiled(torch.randn(2, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss=loss)
        if step == 0:
            frames_after_first_step = counters["frames"]["total"]
    mon.close()
    assert counters["frames"]["total"] == frames_after_first_step  # no recompiles from sampling
    assert mon.layers == ["0", "1", "2"]
    assert mon.record.steps()[:4] == [0, 1, 10, 20]
    assert mon.errors == []


# -- the record under load -----------------------------------------------------------------------------------------
def test_record_constant_after_capacity_over_10000_steps():
    model = nn.Linear(2, 1)
    with nbdiag.watch(model, every=1, capacity=100) as mon:
        for _ in range(10_000):
            model(torch.ones(1, 2)).sum().backward()
            mon.step(loss=1.0)
    steps = mon.record.steps()
    assert len(steps) <= 100 and steps[0] == 0 and steps[-1] == 9_999
    assert len(mon.scalars()) <= mon.record.scalar_capacity


def test_reader_thread_sees_consistent_snapshots_while_training():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = nbdiag.watch(model, opt, every=1, capacity=32)
    stop, problems = threading.Event(), []

    def reader():
        while not stop.is_set():
            frame = mon.frame(kind="activation")
            per_step = frame.groupby("step").size()
            if len(per_step) and per_step.nunique() != 1:
                problems.append(per_step.to_dict())

    thread = threading.Thread(target=reader)
    thread.start()
    train(model, opt, 300, mon, batch=(torch.randn(4, 8), torch.randn(4, 1)), loss_fn=F.mse_loss)
    stop.set()
    thread.join()
    mon.close()
    assert problems == []


def test_training_in_a_background_thread():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = nbdiag.watch(model, opt, every=1)
    thread = threading.Thread(
        target=train, args=(model, opt, 20, mon, (torch.randn(4, 8), torch.randn(4, 1)), F.mse_loss)
    )
    thread.start()
    thread.join()
    mon.close()
    assert mon.record.steps() == list(range(20))


def test_step_without_forward_is_harmless_and_a_forgotten_step_warns_and_stays_bounded():
    model = nn.Sequential(nn.Linear(3, 3))
    with nbdiag.watch(model, every=1) as mon:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mon.step()  # nothing ran: no warning
        for _ in range(200):  # step() forgotten: the buffer stays bounded
            model(torch.randn(2, 3)).sum().backward()
        assert len(mon._capture.buffer) <= 2 * buffer.MERGE_AT  # one activation and one gradient row, merged
        with pytest.warns(NbdiagWarning, match="200 forward/backward passes.*Call mon.step\\(\\) once per"):
            mon.step()
    assert mon.record.steps() == [0, 1]


def test_rnn_cell_called_per_time_step_merges_every_call_without_warning():
    torch.manual_seed(0)
    cell, head = nn.LSTMCell(4, 8), nn.Linear(8, 3)
    model = nn.ModuleDict({"cell": cell, "head": head})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    outputs = []
    head.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    xs = torch.randn(100, 5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 100 calls of each layer in one step: no warning, nothing dropped
        with nbdiag.watch(model, opt, every=1) as mon:
            h = c = torch.zeros(5, 8)
            loss = 0.0
            for x in xs:  # 100 time steps: far past any per-step call count
                h, c = cell(x, (h, c))
                loss = loss + head(h).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    assert mon.errors == []
    frame = mon.frame(kind="activation")
    got = frame[(frame.layer == "head") & (frame.step == 0)].set_index("stat").value
    expected = torch.cat(outputs).double()
    assert got["count"] == expected.numel()
    assert got["mean"] == pytest.approx(expected.mean().item(), rel=1e-5, abs=1e-7)
    assert got["std"] == pytest.approx(expected.std(correction=0).item(), rel=1e-5)
    assert got["min"] == pytest.approx(expected.min().item()) and got["max"] == pytest.approx(expected.max().item())
    assert mon._capture.passes == 0  # reset after the flush


def test_sparse_gradients_are_monitored_from_their_values():
    torch.manual_seed(0)
    model = nn.Sequential(nn.EmbeddingBag(50, 4, mode="sum", sparse=True), nn.Linear(4, 2))
    opt = torch.optim.SparseAdam(list(model[0].parameters()), lr=0.01)
    dense_opt = torch.optim.SGD(model[1].parameters(), lr=0.01)
    tokens, offsets = torch.randperm(50)[:40], torch.arange(0, 40, 4)  # distinct: values = the dense gradient's rows
    with nbdiag.watch(model, opt, every=1) as mon:
        for _ in range(3):
            loss = model[1](model[0](tokens, offsets)).pow(2).mean()
            loss.backward()
            grad = model[0].weight.grad.coalesce()
            opt.step()
            dense_opt.step()
            opt.zero_grad()
            dense_opt.zero_grad()
            mon.step(loss=loss)
    assert mon.errors == []
    weights = mon.frame(kind="weight")
    last = weights[(weights.layer == "0.weight") & (weights.step == 2)].set_index("stat").value
    assert last["grad_norm"] == pytest.approx(torch.linalg.vector_norm(grad.to_dense()).item(), rel=1e-5)
    assert last["grad_max"] == pytest.approx(grad.to_dense().abs().max().item(), rel=1e-6)
