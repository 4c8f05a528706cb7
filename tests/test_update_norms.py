"""Update norms without a parameter snapshot (issue 21, part 2): the sampled ||dw|| against an exact one computed
here from a whole copy, small parameters exact, zero updates exactly 0, and the extra memory of a sampled step."""

from __future__ import annotations

import contextlib
import copy
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import nbdiag
from nbdiag.update_norms import EXACT_ELEMENTS, UpdateTracker
from tests.corpus import programs  # noqa: F401  (registers the programs)
from tests.corpus.harness import build

SAMPLED_RTOL = 0.05  # the sample's error on these models is at most 1.8% (see nbdiag.update_norms)


@contextlib.contextmanager
def exact_updates():
    """Every optimizer step's exact ||dw|| per parameter (by id), from a whole copy taken by global step hooks."""
    found: dict[int, list[float]] = {}
    held: dict[int, torch.Tensor] = {}

    def before(optimizer, args, kwargs):
        held.clear()
        for group in optimizer.param_groups:
            for p in group["params"]:
                held[id(p)] = p.detach().double().clone()

    def after(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                delta = p.detach().double() - held[id(p)]
                found.setdefault(id(p), []).append(float(torch.sqrt((delta * delta).sum())))

    handles = [
        register_optimizer_step_pre_hook(before),
        register_optimizer_step_post_hook(after),
    ]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


def recorded_norms(mon, model: nn.Module) -> dict[int, np.ndarray]:
    """The record's update_norm per parameter (by id), in step order."""
    frame = mon.record.frame("update", stats=["update_norm"]).sort_values("step", kind="stable")
    by_name = dict(model.named_parameters())
    return {id(by_name[n]): g.value.to_numpy() for n, g in frame.groupby("layer") if n in by_name}


def compare(found: dict[int, list[float]], recorded: dict[int, np.ndarray], model: nn.Module) -> tuple[int, int]:
    """Assert every recorded update norm matches the exact one: to float rounding for parameters of at most
    EXACT_ELEMENTS elements, within SAMPLED_RTOL for larger ones. Returns (exact, sampled) parameters compared."""
    counts = [0, 0]
    for name, p in model.named_parameters():
        if id(p) not in recorded:
            continue
        got, want = recorded[id(p)], np.array(found[id(p)])
        assert len(got) == len(want), (name, len(got), len(want))
        small = p.numel() <= EXACT_ELEMENTS
        rtol = 1e-4 if small else SAMPLED_RTOL
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7, err_msg=f"{name} ({p.numel()} elements)")
        counts[0 if small else 1] += 1
    return counts[0], counts[1]


def train(model: nn.Module, optimizer, batches, loss_fn, *, no_sync: bool = False) -> nbdiag.Monitor:
    """Train watched (every=1); with ``no_sync`` (CUDA), the optimizer step (where the update hooks run) under
    ``set_sync_debug_mode("error")``: a hook that synced would raise, be logged, and leave rows missing."""
    mon = nbdiag.watch(model, optimizer, every=1, display=False)
    for x, y in batches:
        loss = loss_fn(model(x), y)
        loss.backward()
        with _sync_errors() if no_sync else contextlib.nullcontext():
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mon.step(loss=loss)
    mon.close()
    assert not mon.errors, mon.errors
    return mon


@contextlib.contextmanager
def _sync_errors():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    mlp_batches = [(torch.randn(32, 64), torch.randint(0, 10, (32,))) for _ in range(4)]
    cnn = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).to(memory_format=torch.channels_last)  # fmt: skip
    cnn_batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))) for _ in range(4)]
    transformer = nn.Sequential(
        nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True), nn.Flatten(), nn.Linear(64 * 6, 5)
    )
    seq_batches = [(torch.randn(4, 6, 64), torch.randint(0, 5, (4,))) for _ in range(4)]
    ce = nn.functional.cross_entropy
    return {
        "mlp-sgd": (mlp, torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9), mlp_batches, ce),
        "cnn-channels-last-adamw": (cnn, torch.optim.AdamW(cnn.parameters(), lr=1e-3), cnn_batches, ce),
        "transformer-adam": (transformer, torch.optim.Adam(transformer.parameters(), lr=1e-3), seq_batches, ce),
    }


@pytest.mark.parametrize("case", ["mlp-sgd", "cnn-channels-last-adamw", "transformer-adam"])
def test_update_norms_match_an_exact_copy_on_models(case, one_thread):
    model, optimizer, batches, loss_fn = _models()[case]
    with exact_updates() as found:
        mon = train(model, optimizer, batches, loss_fn)
    exact, sampled = compare(found, recorded_norms(mon, model), model)
    assert exact > 0 and sampled > 0, (exact, sampled)
    ratio = mon.record.frame("update", stats=["update_ratio"])
    norm = mon.record.frame("update", stats=["update_norm"])
    weight_norm = mon.record.frame("weight", stats=["norm"])
    assert np.isfinite(ratio.value).all() and (ratio.value > 0).all()
    assert len(ratio) == len(norm) == len(weight_norm)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", ["mlp-sgd", "cnn-channels-last-adamw"])
def test_update_norms_match_an_exact_copy_on_cuda_without_a_sync(case):
    model, optimizer, batches, loss_fn = _models()[case]
    assert not optimizer.state  # no step yet: moving the parameters in place keeps the optimizer's hold on them
    model.cuda()
    batches = [(x.cuda(), y.cuda()) for x, y in batches]
    with exact_updates() as found:
        mon = train(model, optimizer, batches, loss_fn, no_sync=True)
    exact, sampled = compare(found, recorded_norms(mon, model), model)
    assert exact > 0 and sampled > 0, (exact, sampled)


@pytest.mark.parametrize("name", ["mnist", "cifar10_lenet"])
def test_update_norms_match_an_exact_copy_on_corpus_programs(name, one_thread):
    prog = build(name)
    monitors = {k: nbdiag.watch(m, prog.optimizers.get(k), every=1, display=False) for k, m in prog.models.items()}
    with exact_updates() as found:
        torch.manual_seed(1)
        prog.train(monitors)
    compared = [0, 0]
    for key, mon in monitors.items():
        mon.close()
        if prog.optimizers.get(key) is not None:
            exact, sampled = compare(found, recorded_norms(mon, prog.models[key]), prog.models[key])
            compared = [compared[0] + exact, compared[1] + sampled]
    assert compared[0] > 0 and compared[1] > 0, compared


def _tracked(*params: torch.Tensor) -> tuple[UpdateTracker, list[nn.Parameter]]:
    params = [nn.Parameter(p) for p in params]
    return UpdateTracker(params), params


def _measure(tracker: UpdateTracker, params: list[nn.Parameter], change) -> np.ndarray:
    before = [p.detach().double().clone() for p in params]
    tracker.before_step()
    with torch.no_grad():
        for p in params:
            change(p)
    _, rows = tracker.after_step()
    want = np.array([float((p.detach().double() - b).norm()) for p, b in zip(params, before, strict=True)])
    norms = np.array([float(b.norm()) for b in before])
    np.testing.assert_allclose(rows[:, 0].numpy(), rows[:, 1].numpy() / norms, rtol=1e-5)  # the ratio's weight norm
    return rows[:, 1].double().numpy(), want


def test_small_and_unsampleable_parameters_are_exact_and_large_ones_sampled():
    torch.manual_seed(0)
    small = torch.randn(EXACT_ELEMENTS)
    gapped = torch.randn(300, 200)[:, :100]  # not dense: cannot be sampled as one flat view
    large = torch.randn(300, 100)
    tracker, params = _tracked(small, gapped, large)
    assert [tracker.sample_of(p.detach()) is None for p in params] == [True, True, False]
    got, want = _measure(tracker, params, lambda p: p.add_(torch.randn_like(p) * 1e-3))
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-6)  # whole copies: exact to fp32 rounding
    assert got[2] == pytest.approx(want[2], rel=SAMPLED_RTOL)
    assert got[2] != pytest.approx(want[2], rel=1e-6)  # sampled, not a copy


def test_zero_updates_read_exactly_zero_and_missed_ones_never_zero():
    torch.manual_seed(0)
    tracker, params = _tracked(torch.randn(100), torch.randn(1000, 64))
    got, _ = _measure(tracker, params, lambda p: None)
    assert (got == 0).all()
    sample = set(tracker.sample_of(params[1].detach()).index.tolist())
    missed = next(i for i in range(params[1].numel()) if i not in sample)  # an element the sample does not read

    def touch_one(p):  # an embedding row a batch touched under SGD, in the extreme: one element
        if p.ndim == 2:
            p.view(-1)[missed] += 0.5

    got, want = _measure(tracker, params, touch_one)
    assert got[0] == 0
    assert 0 < got[1] <= want[1] * (1 + 1e-5)  # | ||w_after|| - ||w_before|| |: a lower bound, never above


def test_bf16_and_transposed_parameters_are_sampled_within_tolerance():
    torch.manual_seed(0)
    tracker, params = _tracked(torch.randn(256, 128).bfloat16(), torch.randn(128, 256).t())
    assert all(tracker.sample_of(p.detach()) is not None for p in params)
    got, want = _measure(tracker, params, lambda p: p.add_(torch.randn_like(p) * 1e-2))
    np.testing.assert_allclose(got, want, rtol=SAMPLED_RTOL)


def test_a_sampled_step_holds_memory_per_parameter_not_per_element():
    """The extra peak of a sampled step on two Linear(1024, 1024) with AdamW (benchmarks/device_memory.py's
    measure) stays under 10% of the parameter bytes; the whole snapshot it replaces was 100%."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import device_memory

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024))
    batch = (torch.randn(16, 1024), torch.randint(0, 1024, (16,)))
    case = device_memory.Case("wide", lambda: copy.deepcopy(base), [batch], False, "")
    peaks = {}
    for label, watched in (("plain", False), ("every=1", True)):
        model = case.build()
        opt = torch.optim.AdamW(model.parameters())
        mon = nbdiag.watch(model, opt, every=1, dense=0, display=False) if watched else None
        device_memory.step(model, opt, case, *batch, mon)  # warm-up: AdamW's state

        def sampled_step(model=model, opt=opt, mon=mon):
            device_memory.step(model, opt, case, *batch, mon)

        peaks[label] = device_memory.peak_bytes(sampled_step, "cpu")
        if mon is not None:
            assert len(mon.record.frame("update")) == 2 * 4 * 2  # two steps, 4 parameters, 2 stats
            mon.close()
    param_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    assert peaks["every=1"] - peaks["plain"] < 0.10 * param_bytes, peaks


def test_parameters_larger_than_a_chunk_are_reduced_in_pieces_that_add_up(monkeypatch):
    """weight_matrix / grad_matrix of a parameter split into pieces (no whole-parameter copy) against float64."""
    from nbdiag import weights

    monkeypatch.setattr(weights, "CHUNK_ELEMENTS", 1000)
    torch.manual_seed(0)
    big = torch.randn(45, 100) * 2 + 0.5  # 4,500 elements: 5 pieces
    bad = torch.randn(3000)
    bad[[10, 2500]] = torch.tensor([float("nan"), float("inf")])  # in two different pieces
    params = [torch.randn(30), big, torch.full((2500,), 0.25), bad, torch.randn(1200).bfloat16()]
    rows, grads = weights.weight_matrix(params).double(), weights.grad_matrix(params).double()
    for i, p in enumerate(params):
        f = p.double().reshape(-1)
        assert rows[i, 3] == grads[i, 2] == (~f.isfinite()).sum()
        if f.isfinite().all():
            np.testing.assert_allclose(rows[i, :3], [f.norm(), f.mean(), f.std(correction=0)], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(grads[i, :2], [f.norm(), f.abs().max()], rtol=1e-5)
    assert rows[2, 2] == 0.0  # a constant parameter in 3 pieces: std exactly 0 (sums about its first element)
