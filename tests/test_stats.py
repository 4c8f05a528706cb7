"""tensor_stats and its host-side reading, against torch and numpy on the same tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nbdiag import stats
from nbdiag.stats import ACTIVATION_STATS, GRADIENT_STATS, HIST_EDGES, N_BINS, derive, merge_vectors, tensor_stats


def host(vector: torch.Tensor) -> np.ndarray:
    return vector.numpy()[None, :]


def test_moments_match_torch():
    x = torch.randn(3, 50, 7) * 2.5 + 0.7
    d = dict(zip(GRADIENT_STATS, derive(host(tensor_stats(x)), GRADIENT_STATS)[0], strict=True))
    assert d["count"] == x.numel()
    assert d["mean"] == pytest.approx(torch.mean(x).item(), rel=1e-5)
    assert d["std"] == pytest.approx(torch.std(x, correction=0).item(), rel=1e-5)
    assert d["min"] == x.min().item() and d["max"] == x.max().item()
    assert d["norm"] == pytest.approx(torch.linalg.vector_norm(x).item(), rel=1e-5)


def test_histogram_matches_numpy_on_same_edges():
    x = torch.cat(
        [torch.randn(5000) * 10.0 ** torch.randint(-9, 5, (5000,)), torch.zeros(17), torch.tensor([1e9, -1e9])]
    )
    counts = tensor_stats(x).numpy()[stats.N_FIELDS :]
    expected, _ = np.histogram(x.numpy(), bins=HIST_EDGES)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == x.numel()
    assert len(HIST_EDGES) == N_BINS + 1 and HIST_EDGES[0] < 0 < HIST_EDGES[-1]


def test_zero_fraction_and_nonfinite():
    x = torch.tensor([0.0, 0.0, 1.0, -2.0, float("nan"), float("inf"), 3.0, 0.0])
    d = dict(zip(ACTIVATION_STATS, derive(host(tensor_stats(x)), ACTIVATION_STATS)[0], strict=True))
    assert d["zero_frac"] == pytest.approx(3 / 8)
    assert d["nonfinite"] == 2
    assert np.isnan(d["mean"])  # a NaN is never hidden behind a finite-looking mean
    hist = tensor_stats(x).numpy()[stats.N_FIELDS :]
    assert hist.sum() == 6  # NaN and +Inf are counted as non-finite, not binned
    assert hist[stats.ZERO_BIN] == 3
    negative_inf = tensor_stats(torch.tensor([-float("inf"), 1.0])).numpy()
    assert negative_inf[stats.N_FIELDS] == 1  # -Inf lands in the lowest bin; presence still shows in the moments
    assert derive(host(torch.from_numpy(negative_inf)), ("nonfinite",))[0, 0] >= 1


@pytest.mark.parametrize(
    ("module", "inputs", "expected"),
    [
        (nn.Tanh(), torch.tensor([-5.0, -1.0, 0.0, 2.0, 2.5]), 2),  # |tanh| >= 0.98 <=> |x| >= 2.298: -5 and 2.5
        (nn.Sigmoid(), torch.tensor([-6.0, -1.0, 0.0, 4.0, 5.0]), 2),  # s <= 0.01 or s >= 0.99 <=> |x| >= 4.595
        (nn.Hardtanh(-2.0, 2.0), torch.tensor([-3.0, -1.97, 0.0, 1.95, 1.9]), 2),  # within 0.04 of +-2
        (nn.ReLU6(), torch.tensor([-1.0, 0.0, 5.95, 7.0, 3.0]), 2),  # only the top bound (zeros are "dead")
        (nn.ReLU(), torch.tensor([-1.0, 0.0, 5.0]), 0),
    ],
)
def test_saturation_counts_follow_bounds(module, inputs, expected):
    y = module(inputs)
    saturated = tensor_stats(y, stats.output_bounds(module)).numpy()[stats.VECTOR_FIELDS.index("saturated")]
    assert saturated == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_reduces_in_fp32(dtype):
    x = (torch.randn(4096) * 300).to(dtype)  # sum of squares overflows fp16 (max 65504)
    d = dict(zip(GRADIENT_STATS, derive(host(tensor_stats(x)), GRADIENT_STATS)[0], strict=True))
    reference = x.float()
    assert np.isfinite(d["std"])
    assert d["std"] == pytest.approx(reference.std(correction=0).item(), rel=1e-4)
    assert d["norm"] == pytest.approx(torch.linalg.vector_norm(reference).item(), rel=1e-4)


def test_merge_equals_stats_of_concatenation():
    parts = [torch.randn(100) * 3 + 1, torch.randn(37) - 4, torch.rand(250)]
    merged = merge_vectors(np.stack([tensor_stats(p).double().numpy() for p in parts]))
    direct = tensor_stats(torch.cat(parts)).double().numpy()
    np.testing.assert_allclose(merged, direct, rtol=1e-5, atol=1e-6)


def test_histogram_subsample_is_strided_and_bounded():
    x = torch.randn(100_000)
    sampled = tensor_stats(x, hist_sample=1000).numpy()
    assert sampled[stats.N_FIELDS :].sum() <= 1000
    assert sampled[stats.N_FIELDS :].sum() >= 900
    assert sampled[stats.VECTOR_FIELDS.index("sampled")] == sampled[stats.N_FIELDS :].sum()
    assert sampled[0] == 100_000  # moments still use every element
    assert sampled[1] == pytest.approx(x.mean().item(), abs=1e-6)
    stride = stats._coprime_stride(int(np.ceil(100_000 / 1000)))
    assert stride == 101  # odd and not a multiple of 3, 5 or 7: no aliasing with feature-map layouts
    expected, _ = np.histogram(x.numpy()[::stride], bins=HIST_EDGES)
    np.testing.assert_array_equal(sampled[stats.N_FIELDS :], expected)


def test_nonfinite_presence_is_exact_even_when_not_sampled():
    x = torch.randn(100_000)
    x[1] = float("nan")  # not on the sampling stride
    derived = derive(host(tensor_stats(x, hist_sample=1000)), ACTIVATION_STATS)[0]
    assert derived[ACTIVATION_STATS.index("nonfinite")] >= 1


def test_empty_tensor_gives_zero_count():
    v = tensor_stats(torch.empty(0, 3))
    assert v.shape == (stats.VECTOR_LEN,) and v[0] == 0


def test_empty_tensor_has_no_nonfinite_values():
    """An MoE expert that got no token outputs a (0, d) tensor: undefined moments, not NaN in the data."""
    derived = derive(host(tensor_stats(torch.empty(0, 32))), ACTIVATION_STATS)[0]
    assert derived[ACTIVATION_STATS.index("nonfinite")] == 0
    assert derived[ACTIVATION_STATS.index("count")] == 0


def test_layer_that_sees_an_empty_batch_is_not_reported_non_finite():
    """A routed layer called on zero rows (an idle expert) records its call, and no train.nonfinite finding."""
    import nbdiag

    expert, head = nn.Linear(4, 4), nn.Linear(4, 2)
    model = nn.ModuleDict({"expert": expert, "head": head})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        for _ in range(3):
            x = torch.randn(8, 4)
            loss = head(x).sum() + expert(x[:0]).sum()  # the expert is routed no row this step
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss=loss)
    assert "train.nonfinite" not in {f.id for f in mon.findings()}
    frame = mon.frame()
    nonfinite = frame[(frame.layer == "expert") & (frame.stat == "nonfinite")].value
    assert len(nonfinite) > 0 and (nonfinite == 0).all()


def test_device_merge_of_raw_stats_equals_stats_of_concatenation():
    torch.manual_seed(0)
    parts = [torch.randn(300) * 3 + 1, torch.randn(37) - 4, torch.rand(250) + 1000.0, torch.empty(0), torch.ones(5)]
    merged = stats.merge_raw([stats.raw_stats(p) for p in parts])
    vector = stats.finalize(merged.moments[None].numpy(), merged.counts[None].numpy(), [merged.n], [merged.m])[0]
    whole = torch.cat(parts).double()
    assert merged.n == whole.numel()
    assert vector[stats.VECTOR_FIELDS.index("mean")] == pytest.approx(whole.mean().item(), rel=1e-6)
    # the part near 1000 would cost the fp32 sum of squares ~5 digits of a common-shift merge; Chan's keeps them
    assert vector[stats.VECTOR_FIELDS.index("var")] == pytest.approx(whole.var(correction=0).item(), rel=1e-5)
    assert vector[3] == whole.min().item() and vector[4] == whole.max().item()
    expected, _ = np.histogram(whole.numpy(), bins=HIST_EDGES)
    np.testing.assert_array_equal(vector[stats.N_FIELDS :], expected)


def test_sparse_tensor_is_described_by_its_stored_values():
    values = torch.tensor([[1.0, -2.0], [3.0, 0.0], [0.5, 0.5]])
    sparse = torch.sparse_coo_tensor(torch.tensor([[0, 4, 4]]), values, (10, 2), check_invariants=True)  # row 4 twice
    d = dict(zip(GRADIENT_STATS, derive(host(tensor_stats(sparse)), GRADIENT_STATS)[0], strict=True))
    assert d["count"] == 6
    assert d["mean"] == pytest.approx(values.mean().item())
    assert d["norm"] == pytest.approx(torch.linalg.vector_norm(values).item())
    assert d["min"] == -2.0 and d["max"] == 3.0


class AcceleratorTensor:
    """Stands in for a flat MPS/XPU tensor at the flush: a device and a blocking ``.cpu()``, nothing CUDA."""

    def __init__(self, values: torch.Tensor, device: str) -> None:
        self.values, self.device, self.shape, self.dtype = values, torch.device(device), values.shape, values.dtype

    def cpu(self) -> torch.Tensor:
        return self.values


@pytest.mark.parametrize("device", ["mps", "xpu"])
def test_flush_copy_on_non_cuda_accelerators_uses_no_cuda_api(monkeypatch, device):
    from nbdiag import buffer

    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA API called for a non-CUDA device")

    monkeypatch.setattr(torch.cuda, "current_stream", no_cuda)
    monkeypatch.setattr(torch, "empty", no_cuda)  # the pinned staging buffer is CUDA's
    values = torch.arange(5, dtype=buffer.host_dtype(torch.device(device)))
    np.testing.assert_array_equal(buffer.to_host(AcceleratorTensor(values, device)), values.numpy())
    assert buffer.host_dtype(torch.device("mps")) == torch.float32  # MPS has no float64: counts exact to 2^24
    assert buffer.host_dtype(torch.device("xpu")) == torch.float64


def test_parameter_rows_match_torch_with_constant_and_nonfinite_parameters(monkeypatch):
    from nbdiag import weights

    monkeypatch.setattr(weights, "CHUNK_ELEMENTS", 300)  # several chunks
    torch.manual_seed(0)
    bad = torch.randn(50)
    bad[[3, 7, 9]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    params = [torch.randn(20, 10) * 3 + 1, torch.ones(64), bad, torch.randn(400).bfloat16(), torch.tensor([2.5])]
    rows = weights.weight_matrix(params).double()
    for row, p in zip(rows, params, strict=True):
        f = p.double().reshape(-1)
        finite = f[f.isfinite()]
        assert row[3] == (~f.isfinite()).sum()  # non-finite count, exact
        if len(finite) == len(f):
            assert row[0].item() == pytest.approx(torch.linalg.vector_norm(f).item(), rel=1e-5)
            assert row[1].item() == pytest.approx(f.mean().item(), rel=1e-5, abs=1e-7)
            assert row[2].item() == pytest.approx(f.std(correction=0).item(), rel=1e-4, abs=1e-7)
    assert rows[1, 2] == 0.0  # a constant parameter (LayerNorm's ones) has std exactly 0
    grads = weights.grad_matrix(params).double()
    assert grads[0, 1] == params[0].abs().max() and grads[2, 2] == 3
