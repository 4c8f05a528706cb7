"""Host side: per-parameter statistics of a full sharded parameter, added up from every rank's local-shard rows.

Each rank sends, per DTensor parameter, the rows of its local shard (``weight``: norm, mean, std, non-finite count;
``param_grad``: norm, max |g|, non-finite count; ``update``: ratio, norm and the shard's ||w|| before the step)
and its layout (local element count, whether it counts this shard: :func:`nbdiag.sharding.counted`). Over the
ranks that count a non-empty shard, the full parameter's statistics are exact up to float rounding:

- norms: sqrt of the summed squared norms; max |g|: the largest; non-finite counts: the sum;
- mean and std: the parallel (Chan et al.) formula on (count, mean, std) in float64;
- update ratio: ||dw|| / ||w|| with both norms summed over shards (not an average of the shards' ratios).
"""

from __future__ import annotations

import numpy as np

from nbdiag.sharding import UPDATE_BASE_GROUP

Table = tuple[list[str], np.ndarray]
Layout = dict[str, tuple]  # sharded parameter -> (local elements, counted by that rank, its mesh's global ranks)


def merge_sharded_groups(per_rank: list[dict[str, Table]], layouts: list[Layout]) -> dict[str, Table]:
    """The merged ``weight`` / ``param_grad`` / ``update`` rows of every sharded parameter (group -> table).

    Args:
        per_rank: each rank's flushed groups (name -> (names, (P, k) array)).
        layouts: each rank's :func:`nbdiag.sharding.shard_layout`.
    """
    sharded = [name for layout in layouts for name in layout]
    if not sharded:
        return {}
    sharded = list(dict.fromkeys(sharded))
    out: dict[str, Table] = {}
    for group, merge in (("weight", _merge_weight), ("param_grad", _merge_grad), ("update", _merge_update)):
        names, rows = [], []
        for name in sharded:
            parts = _parts(per_rank, layouts, group, name)
            if parts:
                names.append(name)
                rows.append(merge(parts))
        if names:
            out[group] = (names, np.stack(rows))
    return out


class _Part:
    """One rank's counted, non-empty shard of a parameter: its element count and its rows."""

    def __init__(self, count: int, row: np.ndarray, base: float | None) -> None:
        self.count, self.row, self.base = count, row, base


def _parts(per_rank: list[dict[str, Table]], layouts: list[Layout], group: str, name: str) -> list[_Part]:
    parts = []
    meshes = [layout[name][2] if len(layout.get(name, ())) > 2 else () for layout in layouts]
    counted_meshes = [mesh for layout, mesh in zip(layouts, meshes, strict=True) if layout.get(name, (0, False))[1]]
    first_mesh = counted_meshes[0] if counted_meshes else ()
    for groups, layout, mesh in zip(per_rank, layouts, meshes, strict=True):
        count, is_counted = layout.get(name, (0, False))[:2]
        row = _row(groups.get(group), name)
        if not is_counted or count == 0 or row is None or mesh != first_mesh:  # another mesh's replica
            continue
        base = _row(groups.get(UPDATE_BASE_GROUP), name) if group == "update" else None
        parts.append(_Part(count, row, None if base is None else float(base[0])))
    return parts


def _row(table: Table | None, name: str) -> np.ndarray | None:
    if table is None:
        return None
    names, values = table
    try:
        return np.asarray(values[names.index(name)], dtype=np.float64)
    except ValueError:
        return None


def _merge_weight(parts: list[_Part]) -> np.ndarray:
    """norm, mean, std, non-finite of the union of the shards."""
    counts = np.array([p.count for p in parts], dtype=np.float64)
    rows = np.stack([p.row for p in parts])
    total = counts.sum()
    mean = float(np.dot(counts, rows[:, 1]) / total)
    var = float(np.dot(counts, rows[:, 2] ** 2 + (rows[:, 1] - mean) ** 2) / total)
    return np.array([np.sqrt(np.sum(rows[:, 0] ** 2)), mean, np.sqrt(max(var, 0.0)), rows[:, 3].sum()])


def _merge_grad(parts: list[_Part]) -> np.ndarray:
    """norm, max |g|, non-finite count of the union of the shards."""
    rows = np.stack([p.row for p in parts])
    return np.array([np.sqrt(np.sum(rows[:, 0] ** 2)), rows[:, 1].max(), rows[:, 2].sum()])


def _merge_update(parts: list[_Part]) -> np.ndarray:
    """update ratio, update norm: ||dw|| and ||w before|| each summed over the shards."""
    rows = np.stack([p.row for p in parts])
    update_norm = float(np.sqrt(np.sum(rows[:, 1] ** 2)))
    bases = [p.base if p.base is not None else _base_from_ratio(p.row) for p in parts]
    base = float(np.sqrt(np.sum(np.square(bases))))
    return np.array([update_norm / max(base, np.finfo(np.float32).tiny), update_norm])


def _base_from_ratio(row: np.ndarray) -> float:
    """||w|| before the step from a shard's (ratio, ||dw||), for rows sent without their base (0 when unknown)."""
    ratio, norm = row[0], row[1]
    return float(norm / ratio) if ratio > 0 else 0.0
