"""No hook may synchronize the device: every aten op nbdiag's hooks run, recorded on a CPU with a dispatch mode.

On CUDA these ops block the host until the device catches up (a data-dependent output size, a scalar read, a copy
to the host); on a CPU they are silent, so the contract is checked by name, not by timing. The flush's one copy per
sampled step is the sanctioned exception and is not recorded.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import nbdiag
from nbdiag import capture, stats
from nbdiag.quantities import weight
from tests import models

# ops whose CUDA kernels wait for the device: scalar reads, data-dependent output sizes, comparisons to a bool
SYNCING_OPS = {
    "_local_scalar_dense",  # .item(), float(t), bool(t), int(t)
    "item",
    "is_nonzero",
    "equal",
    "allclose",
    "bincount",  # output size from input.max()
    "nonzero",
    "argwhere",
    "unique",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "unique_dim_consecutive",
    "masked_select",
    "repeat_interleave",
    "histogramdd",
    "tolist",
}


def sync_reason(func, args, kwargs) -> str | None:
    """Why ``func(*args, **kwargs)`` would synchronize a CUDA device, or None."""
    name = func.overloadpacket.__name__
    if name in SYNCING_OPS:
        return name
    if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices if i is not None):
            return f"{name} with a boolean mask"
    if name in ("_to_copy", "to", "copy_"):
        source = args[1] if name == "copy_" else args[0]
        target = args[0].device if name == "copy_" else kwargs.get("device")
        if isinstance(source, torch.Tensor) and source.device.type != "cpu" and target == torch.device("cpu"):
            return f"{name} to the host"
    return None


class SyncRecorder(TorchDispatchMode):
    """Records every aten op while :attr:`depth` > 0 (inside an nbdiag hook), and the syncing ones among them."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.ops: list[str] = []
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth:
            self.ops.append(func.overloadpacket.__name__)
            reason = sync_reason(func, args, kwargs)
            if reason is not None:
                self.syncs.append(reason)
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def inside(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def wrap(self, fn):
        def recorded(*args, **kwargs):
            with self.inside():
                return fn(*args, **kwargs)

        return recorded


@pytest.fixture
def recorder(monkeypatch):
    """A SyncRecorder wired into every hook (through Capture.guard) and the parameter statistics of a step."""
    rec = SyncRecorder()
    original_guard = capture.Capture.guard
    monkeypatch.setattr(capture.Capture, "guard", lambda self, hook: rec.wrap(original_guard(self, hook)))
    monkeypatch.setattr(weight, "weight_matrix", rec.wrap(weight.weight_matrix))
    return rec


CASES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)), lambda: torch.randn(8, 6)),
    "cnn": (models.small_cnn, lambda: torch.randn(8, 1, 8, 8)),
    "lstm": (models.Recurrent, lambda: torch.randn(4, 6, 5)),
    # bf16 weights, no autocast: hooks see an LSTM's bf16 (output, (h, c)) on any CPU (no oneDNN bf16 RNN needed)
    "lstm-bf16-weights": (lambda: models.Recurrent().bfloat16(), lambda: torch.randn(4, 6, 5).bfloat16()),
}
# bf16 autocast of nn.LSTM runs oneDNN's bf16 RNN primitive, which CPUs without AVX-512 lack (issue 24)
RUNS = [
    *[pytest.param(case, None, id=f"fp32-{case}") for case in ("cnn", "lstm", "mlp")],
    pytest.param("lstm-bf16-weights", None, id="bf16-weights-lstm"),
    pytest.param("cnn", torch.bfloat16, id="bf16-autocast-cnn"),
    pytest.param("lstm", torch.bfloat16, id="bf16-autocast-lstm", marks=pytest.mark.needs("cpu_bf16_lstm")),
    pytest.param("mlp", torch.bfloat16, id="bf16-autocast-mlp"),
]


def sampled_steps(model, x, steps: int = 2, autocast: torch.dtype | None = None) -> nbdiag.Monitor:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = nbdiag.watch(model, opt, every=1)
    context = torch.autocast("cpu", dtype=autocast) if autocast else contextlib.nullcontext()
    for _ in range(steps):
        with context:
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            loss = out.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss=loss)
    mon.close()
    return mon


@pytest.mark.parametrize(("case", "autocast"), RUNS)
def test_hooks_run_no_syncing_op(recorder, case, autocast):
    build, batch = CASES[case]
    torch.manual_seed(0)
    with recorder:
        mon = sampled_steps(build(), batch(), autocast=autocast)
    assert mon.errors == []
    assert recorder.syncs == []
    # the recorder did see the hooks' reductions (else the test would pass vacuously)
    assert {"aminmax", "scatter_add_", "_foreach_norm", "bucketize"} <= set(recorder.ops)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_reduce_without_sync(recorder, dtype):
    x = torch.randn(1000).to(dtype)
    with recorder, recorder.inside():
        stats.raw_stats(x, (0.0, 1.0), hist_sample=100)
        stats.raw_stats(x[:1])
        stats.merge_raw([stats.raw_stats(x), stats.raw_stats(x[:7])])
    assert recorder.syncs == [] and "aminmax" in recorder.ops


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        (lambda t: t.float().sum().item(), "_local_scalar_dense"),
        (lambda t: torch.bincount(torch.zeros(3, dtype=torch.long)), "bincount"),  # what raw_stats used to call
        (lambda t: t[t > 0], "index with a boolean mask"),
        (lambda t: torch.nonzero(t), "nonzero"),
    ],
    ids=["item", "bincount", "mask", "nonzero"],
)
def test_recorder_catches_a_planted_sync(recorder, monkeypatch, planted, expected):
    reference = stats.reference_stats

    def syncing(flat, bounds, stride):
        planted(flat)
        return reference(flat, bounds, stride)

    monkeypatch.setattr(stats, "reference_stats", syncing)
    torch.manual_seed(0)
    with recorder:
        build, batch = CASES["mlp"]
        mon = sampled_steps(build(), batch(), steps=1)
    assert mon.errors == []
    assert expected in recorder.syncs


def test_sync_reason_of_a_copy_to_the_host():
    to_copy, host = torch.ops.aten._to_copy.default, {"device": torch.device("cpu")}
    assert sync_reason(to_copy, (torch.empty(3, device="meta"),), host) == "_to_copy to the host"
    assert sync_reason(to_copy, (torch.ones(3),), host) is None
