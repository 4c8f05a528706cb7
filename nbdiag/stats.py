"""Tensor -> fixed-length statistics vector, computed on the tensor's device in fp32, and its host-side reading.

A vector holds the *sufficient* statistics (count, mean, population variance, min, max, zero / saturated /
non-finite counts, histogram counts), so vectors from several calls of one module, or from several ranks,
merge exactly (:func:`merge_vectors`), and the derived statistics (std, norm, fractions) are computed on the host.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nbdiag.activation_types import registered_bounds
from nbdiag.rawstats import (
    HIST_EDGES,
    N_BINS,
    OVERFLOW,
    RAW_COUNTS,
    SATURATED,
    ZERO_BIN,
    RawStats,
    saturation_thresholds,
)

# Layout of a statistics vector: these scalars, then N_BINS histogram counts.
VECTOR_FIELDS = ("count", "mean", "var", "min", "max", "sampled", "zeros", "saturated", "nonfinite")
N_FIELDS = len(VECTOR_FIELDS)
VECTOR_LEN = N_FIELDS + N_BINS
_F = {name: i for i, name in enumerate(VECTOR_FIELDS)}

# Statistics derived on the host, per kind of tensor (the columns of the record).
ACTIVATION_STATS = ("mean", "std", "min", "max", "zero_frac", "saturated_frac", "nonfinite", "count")
GRADIENT_STATS = ("mean", "std", "min", "max", "zero_frac", "nonfinite", "norm", "count")

_edges_cache: dict[torch.device, torch.Tensor] = {}
_ones_cache: dict[torch.device, torch.Tensor] = {}
_kernel_cache: dict[str, object] = {}


def output_bounds(module: nn.Module) -> tuple[float | None, float | None] | None:
    """The (low, high) bounds of a bounded activation module's output, or None when unbounded.

    A side is None where reaching it does not stall learning (ReLU6's 0 is counted as 'zero', not saturated).
    """
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return (-1.0, 1.0)
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return (0.0, 1.0)
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return (float(module.min_val), float(module.max_val))
    if isinstance(module, nn.ReLU6):
        return (None, 6.0)
    return registered_bounds(module)  # nbdiag.register_activation, third-party classes


def _ones(size: int, device: torch.device) -> torch.Tensor:
    """(size,) int64 ones on ``device`` (a cached buffer, grown as needed; read-only)."""
    ones = _ones_cache.get(device)
    if ones is None or ones.numel() < size:
        ones = torch.ones(max(size, 4096), dtype=torch.int64, device=device)
        _ones_cache[device] = ones
    return ones[:size]


def _fused_kernel():
    """The Triton statistics kernel when Triton imports (CUDA builds of PyTorch ship it), else None."""
    if "fused" not in _kernel_cache:
        try:
            from nbdiag.kernels.triton_stats import fused_stats
        except ImportError:  # no Triton: the reference path
            fused_stats = None
        _kernel_cache["fused"] = fused_stats
    return _kernel_cache["fused"]


def _edges(device: torch.device) -> torch.Tensor:
    """Bucketize boundaries: the finite edges then +inf, so bin N_BINS (overflow) catches NaN and +Inf."""
    edges = _edges_cache.get(device)
    if edges is None:
        edges = torch.from_numpy(np.append(HIST_EDGES[1:-1], np.float32(np.inf))).to(device)
        _edges_cache[device] = edges
    return edges


@torch.no_grad()
def raw_stats(
    x: torch.Tensor,
    bounds: tuple[float | None, float | None] | None = None,
    hist_sample: int | None = None,
) -> RawStats:
    """Statistics of ``x`` on its device, without any host sync (see :class:`RawStats`).

    Moments, min and max read every element. The histogram, zero, saturated and non-finite counts are taken on
    an evenly strided sample of at most ``hist_sample`` elements (all when None or when ``x`` is smaller): a
    fraction p estimated from m samples has a standard error sqrt(p(1-p)/m), at most 0.8% for m = 4096.
    Non-finite *presence* is exact all the same: any NaN/Inf makes the moments non-finite. A sparse tensor is
    described by its stored values (``_values()``, not coalesced: duplicate indices count as separate values).
    On CUDA with Triton the fused kernel of :mod:`nbdiag.kernels.triton_stats` computes the same in one pass.

    Args:
        x: any floating tensor (fp16/bf16 are reduced in fp32, so variance cannot overflow).
        bounds: output bounds for the saturated count (see :func:`output_bounds`), or None.
        hist_sample: sample size for counts and histogram; None = every element.
    """
    flat = _flat(x)
    n = flat.numel()
    if n == 0:
        moments = torch.zeros(5, dtype=torch.float32, device=flat.device)
        return RawStats(moments, torch.zeros(RAW_COUNTS, dtype=torch.int64, device=flat.device), 0, 0)
    kernel = _fused_kernel() if flat.is_cuda else None
    return (kernel or reference_stats)(flat, bounds, sample_stride(n, hist_sample))


def reference_stats(flat: torch.Tensor, bounds: tuple[float | None, float | None] | None, stride: int) -> RawStats:
    """The pure-torch path of :func:`raw_stats` on a non-empty contiguous (n,) floating tensor, reduced in fp32
    (CPU, MPS, and the reference of the fused kernel); ``stride`` is the histogram sample's stride."""
    if flat.dtype != torch.float32:
        flat = flat.float()
    shift = flat[0]
    centered = flat - shift
    low, high = torch.aminmax(flat)
    moments = torch.stack([shift, centered.sum(), torch.dot(centered, centered), low, high])
    sample = flat[::stride].contiguous() if stride > 1 else flat
    bins = torch.bucketize(sample, _edges(sample.device), right=True)
    counts = torch.zeros(RAW_COUNTS, dtype=torch.int64, device=flat.device)
    counts.scatter_add_(0, bins, _ones(sample.numel(), flat.device))  # fixed size: bincount would sync on CUDA
    if bounds is not None:
        counts[SATURATED] = _saturated_count(sample, bounds)
    return RawStats(moments, counts, flat.numel(), sample.numel())


def sample_stride(n: int, hist_sample: int | None) -> int:
    """The stride of the histogram sample of an ``n``-element tensor: 1 (every element) up to ``hist_sample``."""
    return 1 if hist_sample is None or n <= hist_sample else _coprime_stride(math.ceil(n / hist_sample))


@torch.no_grad()
def merge_raw(parts: list[RawStats]) -> RawStats:
    """Raw statistics of the union of disjoint parts, on their device and without a host sync (exact up to fp32).

    Means and second moments combine with Chan et al.'s parallel formula (each part's sum of squares about its own
    mean, plus the spread of the means), so parts far apart lose no precision; the result's shift is the mean.
    """
    parts = [p for p in parts if p.n > 0] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    device = parts[0].moments.device
    total = sum(p.n for p in parts)
    sizes = torch.tensor([float(p.n) for p in parts]).to(device, non_blocking=True)  # host -> device: no sync
    moments = torch.stack([p.moments for p in parts])
    offsets = moments[:, 1] / sizes  # each part's mean minus its shift
    means = moments[:, 0] + offsets
    second = (moments[:, 2] - moments[:, 1] * offsets).sum()  # sum of (x - mean_i)^2 over all parts
    spread = means - means[0]
    mean_offset = (sizes * spread).sum() / total
    second = second + (sizes * (spread - mean_offset) ** 2).sum()
    merged = torch.stack(
        [means[0] + mean_offset, torch.zeros_like(second), second, moments[:, 3].min(), moments[:, 4].max()]
    )
    counts = torch.stack([p.counts for p in parts]).sum(0)
    return RawStats(merged, counts, total, sum(p.m for p in parts))


def finalize(moments: np.ndarray, counts: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Host: (k, 5) moments, (k, RAW_COUNTS) counts and sizes -> (k, VECTOR_LEN) float64 statistics vectors."""
    moments, counts = np.asarray(moments, np.float64), np.asarray(counts, np.float64)
    n, m = np.asarray(n, np.float64), np.asarray(m, np.float64)
    safe_n = np.where(n > 0, n, 1.0)
    mean_shifted = moments[:, 1] / safe_n
    out = np.empty((len(n), VECTOR_LEN))
    out[:, _F["count"]] = n
    out[:, _F["mean"]] = np.where(n > 0, moments[:, 0] + mean_shifted, np.nan)
    with np.errstate(invalid="ignore"):
        out[:, _F["var"]] = np.where(n > 0, np.maximum(moments[:, 2] / safe_n - mean_shifted**2, 0.0), np.nan)
    out[:, _F["min"]], out[:, _F["max"]] = moments[:, 3], moments[:, 4]
    out[:, _F["sampled"]] = m
    out[:, _F["zeros"]] = counts[:, ZERO_BIN]
    out[:, _F["saturated"]] = counts[:, SATURATED]
    out[:, _F["nonfinite"]] = counts[:, OVERFLOW]
    out[:, N_FIELDS:] = counts[:, :N_BINS]
    return out


def tensor_stats(
    x: torch.Tensor,
    bounds: tuple[float | None, float | None] | None = None,
    hist_sample: int | None = None,
) -> torch.Tensor:
    """Statistics of ``x`` as a (VECTOR_LEN,) float64 CPU tensor (reads the device: one sync).

    The convenient form of :func:`raw_stats` + :func:`finalize` for labs and tests; hooks use the raw form.
    Layout: ``[count, mean, var, min, max, sampled, zeros, saturated, nonfinite, hist[0..N_BINS)]`` with the
    population variance; zeros (|x| < 1e-10), saturated, non-finite (NaN/+Inf) and hist count the sample.
    """
    raw = raw_stats(x, bounds, hist_sample)
    vector = finalize(raw.moments.cpu()[None], raw.counts.cpu()[None], np.array([raw.n]), np.array([raw.m]))
    return torch.from_numpy(vector[0])


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(n,) contiguous view of ``x`` in its dtype (a copy only for strided layouts); a sparse tensor's stored
    values (linalg/aminmax have no sparse kernels; ``_values()`` needs no coalescing)."""
    x = x.detach()
    if x.layout != torch.strided:
        x = x._values() if x.layout == torch.sparse_coo else x.values()
    return x.view(-1) if x.is_contiguous() else x.reshape(-1).contiguous()


def _coprime_stride(stride: int) -> int:
    """The smallest odd stride >= ``stride`` that is not a multiple of 3, 5 or 7, so the sample does not alias
    with the power-of-two (and 3x3, 5x5, 7x7) layouts of feature maps."""
    if stride <= 1:
        return 1
    while stride % 2 == 0 or stride % 3 == 0 or stride % 5 == 0 or stride % 7 == 0:
        stride += 1
    return stride


def saturated_mask(values: torch.Tensor, bounds: tuple[float | None, float | None]) -> torch.Tensor:
    """Where ``values`` lie within :data:`SATURATION_MARGIN` of the range's width from a bound (the one saturation
    rule: the layer statistics, the fused kernel, the per-unit counts of :mod:`nbdiag.units` and the labs use it)."""
    low, high = saturation_thresholds(bounds)
    if low is not None and high is not None:
        return (values <= low) | (values >= high)
    return values <= low if low is not None else values >= high


def _saturated_count(sample: torch.Tensor, bounds: tuple[float | None, float | None]) -> torch.Tensor:
    return saturated_mask(sample, bounds).sum()


# ---------------------------------------------------------------------------------------------------------------
# Host side: numpy arrays of vectors, shape (..., VECTOR_LEN), float64.
# ---------------------------------------------------------------------------------------------------------------


def merge_vectors(vectors: np.ndarray) -> np.ndarray:
    """Merge (k, VECTOR_LEN) statistics vectors of disjoint parts into the vector of their union (exact).

    Means and variances combine with the parallel (Chan et al.) formula; counts and histograms add.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.shape[0] == 1:
        return vectors[0].copy()
    counts = vectors[:, _F["count"]]
    total = counts.sum()
    out = vectors.sum(axis=0)
    if total > 0:
        means = vectors[:, _F["mean"]]
        mean = float(np.dot(counts, means) / total)
        second = np.dot(counts, vectors[:, _F["var"]] + (means - mean) ** 2) / total
        out[_F["mean"]], out[_F["var"]] = mean, second
    nonempty = counts > 0
    out[_F["min"]] = vectors[nonempty, _F["min"]].min() if nonempty.any() else np.nan
    out[_F["max"]] = vectors[nonempty, _F["max"]].max() if nonempty.any() else np.nan
    return out


def derive(vectors: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Derived statistics ``names`` (e.g. :data:`ACTIVATION_STATS`) from (n, VECTOR_LEN) vectors -> (n, len(names))."""
    v = np.asarray(vectors, dtype=np.float64)
    count = v[:, _F["count"]]
    sampled = np.where(v[:, _F["sampled"]] > 0, v[:, _F["sampled"]], np.nan)
    mean, var = v[:, _F["mean"]], np.maximum(v[:, _F["var"]], 0.0)
    columns = {
        "count": count,
        "mean": mean,
        "std": np.sqrt(var),
        "min": v[:, _F["min"]],
        "max": v[:, _F["max"]],
        "zero_frac": v[:, _F["zeros"]] / sampled,
        "saturated_frac": v[:, _F["saturated"]] / sampled,
        "nonfinite": _nonfinite_estimate(v, count, sampled),
        "norm": np.sqrt(count * (var + mean**2)),
    }
    return np.stack([columns[name] for name in names], axis=1)


def _nonfinite_estimate(v: np.ndarray, count: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    """Sampled NaN/+Inf count scaled to the tensor; at least 1 wherever the exact moments show NaN/Inf. An empty
    tensor (an MoE expert that got no token) has undefined moments, not non-finite values: it counts 0."""
    scaled = np.nan_to_num(v[:, _F["nonfinite"]] * count / sampled)
    present = (count > 0) & ~np.isfinite(v[:, [_F["mean"], _F["var"], _F["min"], _F["max"]]]).all(axis=1)
    return np.where(present, np.maximum(scaled, 1.0), 0.0)


def histogram_counts(vectors: np.ndarray) -> np.ndarray:
    """The (n, N_BINS) histogram counts held in (n, VECTOR_LEN) vectors."""
    return np.asarray(vectors)[:, N_FIELDS:]
