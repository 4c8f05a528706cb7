"""A fused Triton kernel: one pass over a tensor for every raw statistic of :func:`nbdiag.stats.raw_stats`.

Count, shifted sum and sum of squares, min, max and, on the strided sample, the fixed-edge histogram with its
zero / non-finite bins and the saturated count: one read of the tensor in its own dtype (fp16/bf16 are not copied
to fp32 first), per-program partials, one tiny finishing launch; no host sync. Imported only with Triton present
(it ships with CUDA builds of PyTorch); ``TRITON_INTERPRET=1`` runs it on CPU tensors, which is how the
equivalence tests run without a GPU. The pure-torch :func:`nbdiag.stats.reference_stats` is the reference.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from nbdiag.rawstats import HIST_EDGES, N_BINS, RAW_COUNTS, SATURATED, RawStats, saturation_thresholds

BLOCK = 2048  # elements per tile
MAX_PROGRAMS = 512  # programs per launch; each loops over its share of tiles
TABLE = 128  # search table: the N_BINS bucketize boundaries, padded with +inf to a power of two
_tables: dict[torch.device, torch.Tensor] = {}


@triton.jit
def _stats_kernel(
    x_ptr,
    table_ptr,
    partial_ptr,
    counts_ptr,
    n,
    stride,
    tiles,
    low_threshold,
    high_threshold,
    HAS_LOW: tl.constexpr,
    HAS_HIGH: tl.constexpr,
    BLOCK: tl.constexpr,
    TABLE: tl.constexpr,
    N_BINS: tl.constexpr,
    SATURATED: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    shift = tl.load(x_ptr).to(tl.float32)
    lanes = tl.arange(0, BLOCK)
    acc_sum = tl.zeros([BLOCK], dtype=tl.float32)
    acc_sq = tl.zeros([BLOCK], dtype=tl.float32)
    acc_low = tl.full([BLOCK], float("inf"), dtype=tl.float32)
    acc_high = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    acc_nan = tl.zeros([BLOCK], dtype=tl.int32)
    acc_saturated = tl.zeros([BLOCK], dtype=tl.int32)
    hist = tl.zeros([TABLE], dtype=tl.int32)
    for tile in range(pid, tiles, programs):
        offsets = tl.cast(tile, tl.int64) * BLOCK + lanes
        valid = offsets < n
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        centered = tl.where(valid, x - shift, 0.0)
        acc_sum += centered
        acc_sq += centered * centered
        acc_low = tl.minimum(acc_low, tl.where(valid, x, float("inf")))
        acc_high = tl.maximum(acc_high, tl.where(valid, x, float("-inf")))
        is_nan = x != x
        acc_nan += (valid & is_nan).to(tl.int32)
        sampled = valid & (offsets % stride == 0)
        # bucketize(right=True): how many boundaries are <= x (branch-free binary search over the padded table)
        pos = tl.zeros([BLOCK], dtype=tl.int32)
        for step in tl.static_range(6, -1, -1):
            boundary = tl.load(table_ptr + pos + ((1 << step) - 1))
            pos = tl.where(boundary <= x, pos + (1 << step), pos)
        pos = tl.where(is_nan, N_BINS, tl.minimum(pos, N_BINS))  # NaN and +Inf: the overflow bin
        hist += tl.histogram(tl.where(sampled, pos, TABLE - 1), TABLE)  # bin TABLE - 1 collects the unsampled
        if HAS_LOW:
            acc_saturated += (sampled & (x <= low_threshold)).to(tl.int32)
        if HAS_HIGH:
            acc_saturated += (sampled & (x >= high_threshold)).to(tl.int32)
    base = partial_ptr + pid * 5
    tl.store(base, tl.sum(acc_sum, 0))
    tl.store(base + 1, tl.sum(acc_sq, 0))
    tl.store(base + 2, tl.min(acc_low, 0))
    tl.store(base + 3, tl.max(acc_high, 0))
    tl.store(base + 4, tl.sum(acc_nan, 0).to(tl.float32))
    bins = tl.arange(0, TABLE)
    tl.atomic_add(counts_ptr + bins, hist.to(tl.int64), mask=bins < N_BINS + 1)
    tl.atomic_add(counts_ptr + SATURATED, tl.sum(acc_saturated, 0).to(tl.int64))


@triton.jit
def _finish_kernel(x_ptr, partial_ptr, moments_ptr, programs, BLOCK: tl.constexpr):
    rows = tl.arange(0, BLOCK)
    valid = rows < programs
    total = tl.load(partial_ptr + rows * 5, mask=valid, other=0.0)
    squares = tl.load(partial_ptr + rows * 5 + 1, mask=valid, other=0.0)
    low = tl.min(tl.load(partial_ptr + rows * 5 + 2, mask=valid, other=float("inf")), 0)
    high = tl.max(tl.load(partial_ptr + rows * 5 + 3, mask=valid, other=float("-inf")), 0)
    nans = tl.sum(tl.load(partial_ptr + rows * 5 + 4, mask=valid, other=0.0), 0)
    tl.store(moments_ptr, tl.load(x_ptr).to(tl.float32))
    tl.store(moments_ptr + 1, tl.sum(total, 0))
    tl.store(moments_ptr + 2, tl.sum(squares, 0))
    tl.store(moments_ptr + 3, tl.where(nans > 0, float("nan"), low))  # a NaN makes min and max NaN, as in torch
    tl.store(moments_ptr + 4, tl.where(nans > 0, float("nan"), high))


def _table(device: torch.device) -> torch.Tensor:
    table = _tables.get(device)
    if table is None:
        padded = np.full(TABLE, np.inf, dtype=np.float32)
        padded[: N_BINS - 1] = HIST_EDGES[1:-1]  # the finite edges; +inf from N_BINS - 1 on
        table = _tables[device] = torch.from_numpy(padded).to(device)
    return table


def fused_stats(flat: torch.Tensor, bounds: tuple[float | None, float | None] | None, stride: int) -> RawStats:
    """:func:`nbdiag.stats.reference_stats` in one pass: ``flat`` is a non-empty contiguous (n,) floating tensor
    of any float dtype (read as fp32), ``stride`` the histogram sample's stride."""
    n = flat.numel()
    tiles = triton.cdiv(n, BLOCK)
    programs = min(tiles, MAX_PROGRAMS)
    partials = torch.empty((programs, 5), dtype=torch.float32, device=flat.device)
    counts = torch.zeros(TABLE, dtype=torch.int64, device=flat.device)
    moments = torch.empty(5, dtype=torch.float32, device=flat.device)
    low, high = saturation_thresholds(bounds)
    _stats_kernel[(programs,)](
        flat,
        _table(flat.device),
        partials,
        counts,
        n,
        stride,
        tiles,
        0.0 if low is None else low,
        0.0 if high is None else high,
        HAS_LOW=low is not None,
        HAS_HIGH=high is not None,
        BLOCK=BLOCK,
        TABLE=TABLE,
        N_BINS=N_BINS,
        SATURATED=SATURATED,
    )
    _finish_kernel[(1,)](flat, partials, moments, programs, BLOCK=MAX_PROGRAMS)
    return RawStats(moments, counts[:RAW_COUNTS], n, triton.cdiv(n, stride))
