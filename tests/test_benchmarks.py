"""The overhead benchmark harness runs end to end (tiny sizes, one round); no timing is asserted."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def overhead():
    """benchmarks/overhead.py as a module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("overhead")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("name", ["resnet50", "gpt2"])
def test_gpu_case_builders_train_on_cpu_at_tiny_size(overhead, name):
    models = sys.modules["overhead_models"]
    case = models.make_case(name, steps=2, device="cpu", smoke=True)
    model = case.build()
    x, y = case.batches[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = case.loss(model(x), y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_full_size_builders_have_the_reference_shapes(overhead):
    models = sys.modules["overhead_models"]
    with torch.device("meta"):
        resnet = models.ResNet()
    assert sum(p.numel() for p in resnet.parameters()) == 25_557_032  # torchvision resnet50
    with torch.device("meta"):
        gpt = models.GPT()
    assert sum(p.numel() for p in gpt.parameters()) == 124_439_808  # GPT-2 small, head tied to wte


def test_smoke_run_gives_a_ratio_per_method(overhead, tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--smoke", "--rounds", "1", "--steps", "2", "--warmup", "1", "--threads", "1"]
    argv += ["--model", "mlp", "resnet50", "gpt2", "--methods", "nbdiag", "--json", str(out)]
    results = overhead.main(argv)
    expected = {"plain", "nbdiag idle", "nbdiag every=100", "nbdiag every=10", "nbdiag every=1"}
    assert [r.case for r in results] == ["mlp", "resnet50", "gpt2"]
    for result in results:
        ratio = result.ratio()
        assert set(ratio) == expected, result.skipped
        assert ratio["plain"] == 1.0
        assert all(r > 0 for r in ratio.values())
        assert not result.problems
    payload = json.loads(out.read_text())
    assert payload["cases"]["gpt2"]["ratio"]["plain"] == 1.0
    assert payload["versions"]["torch"] == torch.__version__


def test_missing_anchor_is_skipped_with_a_note(overhead, capsys):
    methods = sys.modules["overhead_methods"]

    class Missing(methods.Method):
        name = "missing tool"
        modules = ("no_such_module_for_nbdiag_bench",)

    args = overhead.parse_args(["--smoke", "--rounds", "1", "--steps", "1", "--warmup", "1", "--model", "mlp"])
    case = sys.modules["overhead_models"].make_case("mlp", steps=1, device="cpu", smoke=True)
    result = overhead.measure(case, [methods.Method(), Missing()], args)
    assert set(result.seconds) == {"plain"}
    assert "no_such_module_for_nbdiag_bench" in result.skipped["missing tool"]
    assert "skipped missing tool" in capsys.readouterr().out


def test_steps_per_round_keeps_whole_sampling_periods(overhead):
    assert overhead.steps_per_round(0.001, 100, 100, 5.0) == 100
    assert overhead.steps_per_round(1.0, 1, 100, 5.0) == 5
    assert overhead.steps_per_round(1.0, 10, 100, 5.0) == 10  # at least one period
    assert overhead.steps_per_round(0.01, 10, 100, 0.5) == 50


def test_host_cost_counts_ops_per_hooked_tensor(monkeypatch, capsys):
    """benchmarks/host_cost.py at 2 blocks: its op count is nbdiag's, so twice the blocks give about twice the ops."""
    sys.path.insert(0, str(BENCH))
    try:
        host_cost = importlib.import_module("host_cost")
    finally:
        sys.path.remove(str(BENCH))
    two, four = host_cost.ops_per_step(2), host_cost.ops_per_step(4)
    assert 0 < two < four < 2.5 * two  # per-layer ops plus a fixed per-step part
    monkeypatch.setattr(sys, "argv", ["host_cost.py", "--blocks", "2", "--rounds", "1", "--steps", "1"])
    host_cost.main()
    assert "us per hooked layer" in capsys.readouterr().out


def test_profile_hooks_counts_the_cnn_ops_with_the_shared_counter():
    """benchmarks/profile_hooks.py counts with host_cost.NbdiagOps (it had patched hooks that no longer exist)."""
    sys.path.insert(0, str(BENCH))
    try:
        profile_hooks = importlib.import_module("profile_hooks")
        overhead_models = importlib.import_module("overhead_models")
    finally:
        sys.path.remove(str(BENCH))
    case = overhead_models.make_case("mlp", steps=2, device="cpu", smoke=True)
    case.base = case.build()
    assert profile_hooks.ops_per_step(case) > 0
