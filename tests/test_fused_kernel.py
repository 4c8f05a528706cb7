"""The fused Triton kernel against the pure-torch reference: counts bit for bit, moments to fp32 tolerance.

Runs on a CUDA device, or on a CPU under Triton's interpreter (``TRITON_INTERPRET=1``, set here when there is no
GPU) where Triton is installed; skipped where it is not (CPU builds of PyTorch do not ship it). On a CPU:
``pip install --target /tmp/triton-site triton==3.9.0``, then
``PYTHONPATH=/tmp/triton-site:. pytest tests/test_fused_kernel.py``.
"""

from __future__ import annotations

import os

import pytest
import torch

from nbdiag import stats

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are decorated, at import
triton_stats = pytest.importorskip("nbdiag.kernels.triton_stats", reason="needs Triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mixed = torch.randn(3000, generator=g) * 10.0 ** torch.randint(-12, 7, (3000,), generator=g)
    mixed[::97] = 0.0
    return {
        "random": torch.randn(10_000, generator=g) * 2.5 + 0.7,
        "symlog range": mixed,
        "constant": torch.full((777,), 3.25),
        "all NaN": torch.full((50,), float("nan")),
        "+-Inf": torch.tensor([float("inf"), -float("inf"), 1.0, 0.0, -3.0]),
        "NaN inside": torch.tensor([1.0, float("nan"), -2.0, 4.0]),
        "bf16": (torch.randn(5000, generator=g) * 300).bfloat16(),
        "fp16": (torch.randn(5000, generator=g) * 300).half(),
        "one element": torch.tensor([-0.5]),
    }


def assert_equivalent(flat: torch.Tensor, bounds, stride: int) -> None:
    fused = triton_stats.fused_stats(flat, bounds, stride)
    reference = stats.reference_stats(flat, bounds, stride)
    assert (fused.n, fused.m) == (reference.n, reference.m)
    assert torch.equal(fused.counts.cpu(), reference.counts.cpu())  # histogram, zero/NaN bins, saturated: exact
    got, want = fused.moments.cpu().double(), reference.moments.cpu().double()
    assert got[0].item() == want[0].item() or (got[0].isnan() and want[0].isnan())  # the shift
    torch.testing.assert_close(got[3:], want[3:], rtol=0, atol=0, equal_nan=True)  # min, max: exact
    scale = float(flat.numel()) ** 0.5 * max(flat.float().abs().nan_to_num(0, 0, 0).max().item(), 1e-30)
    torch.testing.assert_close(got[1:3], want[1:3], rtol=2e-5, atol=1e-6 * scale**2, equal_nan=True)


@pytest.mark.parametrize("name", list(tensors()))
@pytest.mark.parametrize("hist_sample", [None, 1000])
def test_fused_kernel_matches_reference(name, hist_sample):
    flat = tensors()[name].to(DEVICE)
    assert_equivalent(flat, None, stats.sample_stride(flat.numel(), hist_sample))


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, 1.0), (None, 6.0), (-2.0, None)])
def test_fused_saturated_count_matches_reference(bounds):
    flat = (torch.randn(4000, generator=torch.Generator().manual_seed(1)) * 3).clamp(-2, 6).to(DEVICE)
    assert_equivalent(flat, bounds, 3)


def test_programs_loop_over_more_tiles_than_programs(monkeypatch):
    monkeypatch.setattr(triton_stats, "MAX_PROGRAMS", 4)  # 11 tiles on 4 programs: each loops 2-3 times
    flat = torch.rand(triton_stats.BLOCK * 10 + 5, generator=torch.Generator().manual_seed(2)) - 0.25
    flat[triton_stats.BLOCK * 9 + 1] = float("inf")
    assert_equivalent(flat.to(DEVICE), (0.0, 0.5), 7)


def test_fused_kernel_is_what_raw_stats_runs_on_cuda(monkeypatch):
    calls = []
    kernel = triton_stats.fused_stats
    monkeypatch.setattr(triton_stats, "fused_stats", lambda *a: calls.append(1) or kernel(*a))
    monkeypatch.setitem(stats._kernel_cache, "fused", triton_stats.fused_stats)
    stats.raw_stats(torch.randn(100, device=DEVICE))
    assert len(calls) == (1 if DEVICE == "cuda" else 0)  # CPU tensors always take the reference path
