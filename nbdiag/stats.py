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

# ---------------------------------------------------------------------------------------------------------------
# Histogram bin edges: symmetric logarithmic ("symlog"), 4 bins per decade for 1e-10 <= |x| < 1e5, one bin for
# |x| < 1e-10 around zero and one open bin at each end. The same edges serve every layer and kind, so histograms
# compare across depth and time (TensorBoard's default buckets are exponential for the same reason).
# ---------------------------------------------------------------------------------------------------------------
HIST_MIN_EXP = -10
HIST_MAX_EXP = 5
HIST_BINS_PER_DECADE = 4


def _symlog_edges() -> np.ndarray:
    magnitudes = 10.0 ** np.linspace(
        HIST_MIN_EXP, HIST_MAX_EXP, (HIST_MAX_EXP - HIST_MIN_EXP) * HIST_BINS_PER_DECADE + 1
    )
    inner = np.concatenate([-magnitudes[::-1], magnitudes])
    return np.concatenate([[-np.inf], inner, [np.inf]]).astype(np.float32)


HIST_EDGES: np.ndarray = _symlog_edges()  # (B + 1,) float32, -inf and +inf at the ends
N_BINS: int = len(HIST_EDGES) - 1  # B = 123: bin i holds HIST_EDGES[i] <= x < HIST_EDGES[i + 1]

# Layout of a statistics vector: these scalars, then N_BINS histogram counts.
VECTOR_FIELDS = ("count", "mean", "var", "min", "max", "sampled", "zeros", "saturated", "nonfinite")
N_FIELDS = len(VECTOR_FIELDS)
VECTOR_LEN = N_FIELDS + N_BINS
_F = {name: i for i, name in enumerate(VECTOR_FIELDS)}

# Statistics derived on the host, per kind of tensor (the columns of the record).
ACTIVATION_STATS = ("mean", "std", "min", "max", "zero_frac", "saturated_frac", "nonfinite", "count")
GRADIENT_STATS = ("mean", "std", "min", "max", "zero_frac", "nonfinite", "norm", "count")

# Saturation: an output within 1% of its range's width from a bound where the activation's slope vanishes.
SATURATION_MARGIN = 0.01
_inner_edges_cache: dict[torch.device, torch.Tensor] = {}


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
    return None


def _inner_edges(device: torch.device) -> torch.Tensor:
    edges = _inner_edges_cache.get(device)
    if edges is None:
        edges = torch.from_numpy(HIST_EDGES[1:-1].copy()).to(device)
        _inner_edges_cache[device] = edges
    return edges


@torch.no_grad()
def tensor_stats(
    x: torch.Tensor,
    bounds: tuple[float | None, float | None] | None = None,
    hist_sample: int | None = None,
) -> torch.Tensor:
    """Statistics of ``x`` as a (VECTOR_LEN,) fp32 tensor on ``x``'s device. No host sync.

    Moments, min and max read every element (two fused passes). The zero, saturated and non-finite counts and
    the histogram are taken on an evenly strided sample of at most ``hist_sample`` elements (all when None or
    when ``x`` is smaller): a fraction p estimated from m samples has a standard error sqrt(p(1-p)/m), at most
    0.4% for m = 16384. Non-finite *presence* is exact: any NaN/Inf makes the moments non-finite.

    Args:
        x: any floating tensor (fp16/bf16 are reduced in fp32, so variance cannot overflow).
        bounds: output bounds for the saturated count (see :func:`output_bounds`), or None.
        hist_sample: sample size for counts and histogram; None = every element.

    Returns:
        ``[count, mean, var, min, max, sampled, zeros, saturated, nonfinite, hist[0..N_BINS)]``; var is the
        population variance; zeros/saturated/nonfinite/hist count the ``sampled`` elements.
    """
    flat = x.detach().reshape(-1).float().contiguous()  # (n,) fp32; copies only non-fp32 or strided inputs
    n = flat.numel()
    if n == 0:
        return torch.zeros(VECTOR_LEN, device=x.device)
    var, mean = torch.var_mean(flat, correction=0)
    low, high = torch.aminmax(flat)
    sample = _strided_sample(flat, hist_sample)
    m = sample.numel()
    scalars = torch.stack(
        [
            torch.full((), float(n), device=flat.device),
            mean,
            var,
            low,
            high,
            torch.full((), float(m), device=flat.device),
            (sample == 0).sum().float(),
            _saturated_count(sample, bounds),
            (m - torch.isfinite(sample).sum()).float(),
        ]
    )
    return torch.cat([scalars, _histogram(sample)])


def _strided_sample(flat: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or flat.numel() <= size:
        return flat
    stride = _coprime_stride(math.ceil(flat.numel() / size))
    return flat[::stride].contiguous()


def _coprime_stride(stride: int) -> int:
    """The smallest odd stride >= ``stride`` that is not a multiple of 3, 5 or 7, so the sample does not alias
    with the power-of-two (and 3x3, 5x5, 7x7) layouts of feature maps."""
    if stride <= 1:
        return 1
    while stride % 2 == 0 or stride % 3 == 0 or stride % 5 == 0 or stride % 7 == 0:
        stride += 1
    return stride


def _saturated_count(flat: torch.Tensor, bounds) -> torch.Tensor:
    if bounds is None:
        return torch.zeros((), device=flat.device)
    low, high = bounds
    width = (high - low) if (low is not None and high is not None) else abs(high if high is not None else low)
    margin = SATURATION_MARGIN * width
    count = torch.zeros((), device=flat.device)
    if low is not None:
        count = count + (flat <= low + margin).sum()
    if high is not None:
        count = count + (flat >= high - margin).sum()
    return count.float()


def _histogram(sample: torch.Tensor) -> torch.Tensor:
    index = torch.bucketize(sample, _inner_edges(sample.device), right=True)  # (m,) in [0, N_BINS)
    index = index.masked_fill(torch.isnan(sample), N_BINS)  # NaN -> a dropped extra bin; +-inf -> end bins
    return torch.bincount(index, minlength=N_BINS + 1)[:N_BINS].float()


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
    """Sampled non-finite count scaled to the tensor; at least 1 wherever the exact moments show NaN/Inf."""
    scaled = np.nan_to_num(v[:, _F["nonfinite"]] * count / sampled)
    present = ~np.isfinite(v[:, [_F["mean"], _F["var"], _F["min"], _F["max"]]]).all(axis=1)
    return np.where(present, np.maximum(scaled, 1.0), 0.0)


def histogram_counts(vectors: np.ndarray) -> np.ndarray:
    """The (n, N_BINS) histogram counts held in (n, VECTOR_LEN) vectors."""
    return np.asarray(vectors)[:, N_FIELDS:]


def bin_centers() -> np.ndarray:
    """A representative value per bin (geometric centre of finite bins; the outer bins get their finite edge)."""
    edges = HIST_EDGES.astype(np.float64)
    low, high = edges[:-1], edges[1:]
    same_sign = (low * high) > 0
    centers = np.where(same_sign, np.sign(low) * np.sqrt(np.abs(low * high)), 0.0)
    centers[0], centers[-1] = edges[1], edges[-2]
    return centers
