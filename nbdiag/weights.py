"""Per-parameter statistics: weights, their gradients, and the update/weight ratio across an optimizer step."""

from __future__ import annotations

import torch

from nbdiag.sharding import local

WEIGHT_ROW_STATS = ("norm", "mean", "std", "nonfinite")  # the columns of weight_row (group "weight")
GRAD_ROW_STATS = ("grad_norm", "grad_max", "grad_nonfinite")  # of grad_row / grad_matrix (group "param_grad")
WEIGHT_STATS = WEIGHT_ROW_STATS + GRAD_ROW_STATS  # the record's "weight" block
UPDATE_STATS = ("update_ratio", "update_norm")
GROUP_STATS = {"weight": WEIGHT_ROW_STATS, "param_grad": GRAD_ROW_STATS, "update": UPDATE_STATS}
NONFINITE_STAT = {"weight": "nonfinite", "param_grad": "grad_nonfinite"}  # per group: the column counting NaN/Inf


def group_column(group: str, stat: str) -> int:
    """The column of ``stat`` in the per-parameter ``group``'s (P, k) array (see :data:`GROUP_STATS`)."""
    return GROUP_STATS[group].index(stat)


# Parameters are reduced in chunks of at most this many elements: the foreach forms allocate a shifted copy of a
# chunk, so the transient extra memory is bounded by it (or by the largest single parameter).
CHUNK_ELEMENTS = 1 << 22


def norms_fp32(tensors: list[torch.Tensor], ord: float = 2) -> list[torch.Tensor]:
    """``ord``-norms of floating ``tensors`` (any mix of dtypes) as fp32 0-d tensors, in order.

    fp16/bf16/fp32 are reduced in fp32 (an fp16 norm cannot overflow); float64 is reduced in float64, then cast
    (``_foreach_norm(..., dtype=float32)`` refuses to narrow a double).
    """
    doubles = [i for i, t in enumerate(tensors) if t.dtype == torch.float64]
    if not doubles:
        return list(torch._foreach_norm(tensors, ord, dtype=torch.float32))
    if len(doubles) == len(tensors):
        return [n.float() for n in torch._foreach_norm(tensors, ord)]
    out: list[torch.Tensor | None] = [None] * len(tensors)
    others = [i for i, t in enumerate(tensors) if t.dtype != torch.float64]
    for indices in (doubles, others):
        for i, norm in zip(indices, norms_fp32([tensors[i] for i in indices], ord), strict=True):
            out[i] = norm
    return out


def stored_values(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor itself; a sparse one's stored values (norm/aminmax have no sparse kernels; no coalescing, so
    for an uncoalesced gradient duplicate indices count as separate values); a DTensor's local shard (FSDP2,
    tensor parallel: :mod:`nbdiag.runs.distributed` adds the shards' statistics up)."""
    t = local(t)
    if t.layout == torch.strided:
        return t.detach()
    return t._values().detach() if t.layout == torch.sparse_coo else t.values().detach()


@torch.no_grad()
def weight_matrix(params: list[torch.Tensor]) -> torch.Tensor:
    """(P, 4) fp32 on the parameters' device: norm, mean, population std, non-finite count per parameter.

    Foreach forms (a few launches per chunk of parameters, not a few per parameter); the variance uses sums about
    each parameter's first element, so a constant parameter (a LayerNorm's ones) has std exactly 0.
    """
    return torch.cat([_weight_rows(chunk) for chunk in _chunks([stored_values(p).reshape(-1) for p in params])])


def _weight_rows(flats: list[torch.Tensor]) -> torch.Tensor:
    sizes = torch.tensor([max(f.numel(), 1) for f in flats], dtype=torch.float32).to(flats[0].device, non_blocking=True)
    norms = torch.stack(norms_fp32(flats))
    sums = torch.stack([f.sum(dtype=torch.float32) for f in flats])
    shifts = [f[:1] for f in flats]
    spread = torch.stack(norms_fp32(_shifted(flats, shifts)))
    first = torch.cat([s.float() if s.numel() else s.new_zeros(1, dtype=torch.float32) for s in shifts])
    mean = sums / sizes
    var = ((spread / sizes.sqrt()) ** 2 - (mean - first) ** 2).clamp_min(0)  # sum((x - c)^2)/n - (mean - c)^2
    return torch.stack([norms, mean, var.sqrt(), _nonfinite_counts(flats)], dim=1)


def _shifted(flats: list[torch.Tensor], shifts: list[torch.Tensor]) -> list[torch.Tensor]:
    """``flat - shift`` per tensor; fp16/bf16 are shifted in fp32 (in fp16, 4e4 - (-4e4) would overflow)."""
    if flats[0].dtype not in (torch.float16, torch.bfloat16):
        return torch._foreach_sub(flats, shifts)
    wide = [f.float() for f in flats]
    torch._foreach_sub_(wide, [s.float() for s in shifts])
    return wide


@torch.no_grad()
def grad_matrix(grads: list[torch.Tensor]) -> torch.Tensor:
    """(P, 3) fp32: norm, max |g|, non-finite count per gradient (a sparse gradient: of its stored values)."""
    return torch.cat([_grad_rows(chunk) for chunk in _chunks([stored_values(g).reshape(-1) for g in grads])])


def _grad_rows(flats: list[torch.Tensor]) -> torch.Tensor:
    norms = torch.stack(norms_fp32(flats))
    nonempty = [f if f.numel() else f.new_zeros(1) for f in flats]
    if flats[0].device.type == "cpu":  # aminmax: 10x cheaper on CPU than an inf-norm foreach
        extremes = [torch.aminmax(f) for f in nonempty]
        lows, highs = torch.stack([lo for lo, _ in extremes]), torch.stack([hi for _, hi in extremes])
        maxima = torch.maximum(-lows, highs).float()
    else:
        maxima = torch.stack(norms_fp32(nonempty, float("inf")))
    return torch.stack([norms, maxima, _nonfinite_counts(flats)], dim=1)


def _nonfinite_counts(flats: list[torch.Tensor]) -> torch.Tensor:
    """(P,) fp32 NaN/+-Inf counts: x - x is NaN exactly there and 0 elsewhere; NaN -> 1, then a sum (2.4x cheaper
    on CPU than count_nonzero, 3x than an ord-0 norm; exact up to 2^24 non-finite elements per tensor)."""
    return torch.stack([z.nan_to_num_(1.0).sum(dtype=torch.float32) for z in torch._foreach_sub(flats, flats)])


def _chunks(flats: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Consecutive groups of one device and dtype, each of at most CHUNK_ELEMENTS elements (or one tensor)."""
    chunks: list[list[torch.Tensor]] = []
    size = 0
    for f in flats:
        last = chunks[-1] if chunks else None
        fits = last is not None and size + f.numel() <= CHUNK_ELEMENTS
        if fits and last[0].device == f.device and last[0].dtype == f.dtype:
            last.append(f)
            size += f.numel()
        else:
            chunks.append([f])
            size = f.numel()
    return chunks
