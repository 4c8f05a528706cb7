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
# chunk, so the transient extra memory is bounded by it (8 MB in fp32). A larger parameter is reduced in pieces of
# this size whose partial statistics are combined (issue 21: a whole-parameter copy was O(parameters)).
CHUNK_ELEMENTS = 1 << 21


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
    each parameter's first element, so a constant parameter (a LayerNorm's ones) has std exactly 0. A parameter
    larger than :data:`CHUNK_ELEMENTS` is reduced in pieces (norms and sums about its first element add up).
    """
    flats = [stored_values(p).reshape(-1) for p in params]
    pieces, owners = _pieces(flats)
    shifts = [flats[o][:1] for o in owners]
    partial = torch.cat([_weight_partials([pieces[i] for i in c], [shifts[i] for i in c]) for c in _chunks(pieces)])
    sums = _combined(partial, owners, len(flats), squared=(0, 2))  # (P, 4): norm, sum, spread, non-finite
    sizes = torch.tensor([max(f.numel(), 1) for f in flats], dtype=torch.float32).to(sums.device, non_blocking=True)
    first = torch.cat([f[:1].float() if f.numel() else f.new_zeros(1, dtype=torch.float32) for f in flats])
    mean = sums[:, 1] / sizes
    var = ((sums[:, 2] / sizes.sqrt()) ** 2 - (mean - first) ** 2).clamp_min(0)  # sum((x - c)^2)/n - (mean - c)^2
    return torch.stack([sums[:, 0], mean, var.sqrt(), sums[:, 3]], dim=1)


def _weight_partials(flats: list[torch.Tensor], shifts: list[torch.Tensor]) -> torch.Tensor:
    """(k, 4) fp32 per tensor: norm, sum, norm of ``flat - shift``, non-finite count."""
    norms = torch.stack(norms_fp32(flats))
    sums = torch.stack([f.sum(dtype=torch.float32) for f in flats])
    spread = torch.stack(norms_fp32(_shifted(flats, shifts)))
    return torch.stack([norms, sums, spread, _nonfinite_counts(flats)], dim=1)


def _pieces(flats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """Each flat as itself, or as consecutive views of at most :data:`CHUNK_ELEMENTS` elements when larger; and per
    piece the index of its flat (ascending: a flat's pieces are consecutive)."""
    pieces: list[torch.Tensor] = []
    owners: list[int] = []
    for i, flat in enumerate(flats):
        parts = flat.split(CHUNK_ELEMENTS) if flat.numel() > CHUNK_ELEMENTS else (flat,)
        pieces.extend(parts)
        owners.extend([i] * len(parts))
    return pieces, owners


def _combined(
    partial: torch.Tensor, owners: list[int], n: int, squared: tuple[int, ...] = (), maxima: tuple[int, ...] = ()
) -> torch.Tensor:
    """(n, k) rows of the flats from the (pieces, k) rows of their pieces: columns in ``squared`` are norms (root of
    the summed squares), in ``maxima`` the largest, the others add up. The rows of unsplit flats are their own."""
    if len(owners) == n:
        return partial
    rows = []
    start = 0
    while start < len(owners):  # every flat has at least one piece, its pieces consecutive
        end = _end(owners, start)
        rows.append(partial[start] if end - start == 1 else _combine_rows(partial[start:end], squared, maxima))
        start = end
    return torch.stack(rows)


def _end(owners: list[int], start: int) -> int:
    end = start + 1
    while end < len(owners) and owners[end] == owners[start]:
        end += 1
    return end


def _combine_rows(rows: torch.Tensor, squared: tuple[int, ...], maxima: tuple[int, ...]) -> torch.Tensor:
    columns = []
    for j in range(rows.shape[1]):
        column = rows[:, j]
        if j in squared:
            columns.append(torch.linalg.vector_norm(column))
        elif j in maxima:
            columns.append(column.max())
        else:
            columns.append(column.sum())
    return torch.stack(columns)


def _shifted(flats: list[torch.Tensor], shifts: list[torch.Tensor]) -> list[torch.Tensor]:
    """``flat - shift`` per tensor; fp16/bf16 are shifted in fp32 (in fp16, 4e4 - (-4e4) would overflow)."""
    if flats[0].dtype not in (torch.float16, torch.bfloat16):
        return torch._foreach_sub(flats, shifts)
    wide = [f.float() for f in flats]
    torch._foreach_sub_(wide, [s.float() for s in shifts])
    return wide


@torch.no_grad()
def grad_matrix(grads: list[torch.Tensor]) -> torch.Tensor:
    """(P, 3) fp32: norm, max |g|, non-finite count per gradient (a sparse gradient: of its stored values); a
    gradient larger than :data:`CHUNK_ELEMENTS` is reduced in pieces."""
    flats = [stored_values(g).reshape(-1) for g in grads]
    pieces, owners = _pieces(flats)
    partial = torch.cat([_grad_rows([pieces[i] for i in c]) for c in _chunks(pieces)])
    return _combined(partial, owners, len(flats), squared=(0,), maxima=(1,))


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


def _chunks(flats: list[torch.Tensor]) -> list[list[int]]:
    """Indices of consecutive groups of one device and dtype, each of at most CHUNK_ELEMENTS elements (or one
    tensor)."""
    chunks: list[list[int]] = []
    size = 0
    for i, f in enumerate(flats):
        last = flats[chunks[-1][0]] if chunks else None
        fits = last is not None and size + f.numel() <= CHUNK_ELEMENTS
        if fits and last.device == f.device and last.dtype == f.dtype:
            chunks[-1].append(i)
            size += f.numel()
        else:
            chunks.append([i])
            size = f.numel()
    return chunks
