"""torch.distributed: merge one sampled step's statistics over ranks, so every rank records the global picture.

Activation and output-gradient vectors hold sufficient statistics (``nbdiag.stats``), so the merge is exact:
global mean, std, min, max and histograms equal one process's on the concatenated batch. Replicated parameters
(DDP) are taken from rank 0 (non-finite counts: the largest over ranks); sharded ones (DTensor parameters of FSDP2
and tensor parallelism) are merged from each rank's local-shard rows (:mod:`nbdiag.sharding`): norms from sums
of squares, means and stds with the parallel formula, maxima from maxima, counts from sums.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

import numpy as np
import torch.distributed as dist
from torch import nn

from nbdiag.errors import NbdiagWarning
from nbdiag.names import rank_row
from nbdiag.probe import named_parameters
from nbdiag.runs.shards import merge_sharded_groups
from nbdiag.sharding import COUNTED, UNKNOWN, UPDATE_BASE_GROUP, OutputLayouts, shard_layout
from nbdiag.stats import merge_vectors
from nbdiag.units import GROUP_PREFIX
from nbdiag.weights import NONFINITE_STAT, group_column

PER_RANK_ENV = "NBDIAG_PER_RANK"  # "1": also keep each rank's rows, as layers named "<layer>@rank<r>"
TIMEOUT_ENV = "NBDIAG_DIST_TIMEOUT"  # seconds a rank waits for the others at a sampled step (default below)
DEFAULT_TIMEOUT_S = 120.0

Tables = dict[str, tuple[list[str], np.ndarray]]  # one step: kind (or group) -> (names, (n, k) array)


def aggregator(model: nn.Module | None = None, per_rank: bool | None = None) -> Aggregator | None:
    """The merge function for an initialized process group; every rank must call it (it forms a gloo group).

    Args:
        model: the watched model: its DTensor parameters (FSDP2, tensor parallel) are merged from their shards;
            FSDP1's flat parameters are reported as not supported.
        per_rank: keep each rank's activation/gradient rows too; None reads ``NBDIAG_PER_RANK``.

    Returns:
        An :class:`Aggregator`, or None (with a warning) when the group cannot be formed: this rank then
        records its own statistics only.
    """
    if model is not None:
        warn_if_sharded(model)
    if per_rank is None:
        per_rank = os.environ.get(PER_RANK_ENV, "0") not in ("", "0", "false", "False")
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    try:
        group = dist.new_group(backend="gloo", timeout=timeout)  # host arrays; never touches the NCCL streams
    except Exception as error:  # e.g. watch() was called on some ranks only
        warnings.warn(
            f"nbdiag could not form its process group ({type(error).__name__}: {error}); each rank records its "
            "own statistics. Expected nbdiag.watch() on every rank at the same point of the script.",
            NbdiagWarning,
            stacklevel=4,
        )
        return None
    layout = shard_layout(named_parameters(model)) if model is not None else {}
    return Aggregator(group, per_rank, layout)


class Aggregator:
    """Called by the monitor at each sampled step on every rank: ``vectors, groups = aggregator(vectors, groups)``.

    One ``all_gather_object`` of the step's host arrays (a few KB per layer) per sampled step, on a gloo group
    with a finite timeout: a rank that stops sampling makes the others fail with an error (monitoring switches
    off there), never hang.
    """

    def __init__(self, group: dist.ProcessGroup, per_rank: bool, layout: dict[str, tuple] | None = None) -> None:
        self.group = group
        self.per_rank = per_rank
        self.layout = layout or {}  # sharded parameter -> (elements, counted, mesh ranks)
        self.outputs: OutputLayouts | None = None  # set by the monitor: how this rank's outputs enter the merge
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self._warned_weights = False

    def __call__(self, vectors: Tables, groups: Tables) -> tuple[Tables, Tables]:
        gathered: list = [None] * self.world_size
        shares = {} if self.outputs is None else {key: tuple(s) for key, s in self.outputs.shares.items()}
        tp_group = None if self.outputs is None else self.outputs.group
        dist.all_gather_object(gathered, (vectors, groups, self.layout, shares, tp_group), group=self.group)
        per_rank_vectors = [g[0] for g in gathered]
        counted = _counted_rows(per_rank_vectors, [g[3] for g in gathered], [g[4] for g in gathered])
        merged = {kind: self._merge_kind(kind, per_rank_vectors, counted) for kind in _kinds(per_rank_vectors)}
        per_rank_groups = [g[1] for g in gathered]
        sharded = merge_sharded_groups(per_rank_groups, [g[2] for g in gathered])
        groups = self._replicated(groups, per_rank_groups)
        for group, (names, values) in sharded.items():
            groups[group] = _override_rows(groups.get(group), names, values)
        groups.pop(UPDATE_BASE_GROUP, None)
        return merged, groups

    def _merge_kind(self, kind: str, per_rank: list[Tables], counted: set) -> tuple[list[str], np.ndarray]:
        """Merge each layer's vectors over the ranks whose piece counts (replicas once, see _counted_rows)."""
        rows: dict[str, list[np.ndarray]] = {}
        every: dict[str, list[np.ndarray]] = {}
        for rank, vectors in enumerate(per_rank):
            for layer, vector in zip(*vectors.get(kind, ([], [])), strict=True):
                every.setdefault(layer, []).append(vector)
                if (rank, kind, layer) in counted:
                    rows.setdefault(layer, []).append(vector)
        rows = {layer: rows.get(layer) or pieces for layer, pieces in every.items()}  # (none counted: every piece)
        layers = list(rows)
        merged = np.stack([merge_vectors(np.stack(r)) for r in rows.values()])  # (n_layers, VECTOR_LEN)
        if not self.per_rank:
            return layers, merged
        for rank, vectors in enumerate(per_rank):
            names, values = vectors.get(kind, ([], np.empty((0, merged.shape[1]))))
            layers += [rank_row(name, rank) for name in names]
            merged = np.concatenate([merged, values])
        return layers, merged

    def _replicated(self, own: Tables, per_rank: list[Tables]) -> Tables:
        """Rank 0's parameter groups, with non-finite counts maxed over ranks; this rank's own scalars."""
        merged = dict(per_rank[0])
        for group, stat in NONFINITE_STAT.items():
            column = group_column(group, stat)
            if group not in merged or any(g.get(group, ([], None))[0] != merged[group][0] for g in per_rank):
                continue  # (sharded parameters' rows are replaced by their merge afterwards)
            values = merged[group][1].copy()
            values[:, column] = np.max([g[group][1][:, column] for g in per_rank], axis=0)
            merged[group] = (merged[group][0], values)
        merged.update(_summed_units(per_rank))
        self._check_replicas(per_rank)
        merged.pop("scalars", None)
        if "scalars" in own:  # the monitor pairs scalar values with this rank's pending names
            merged["scalars"] = own["scalars"]
        return merged

    def _check_replicas(self, per_rank: list[Tables]) -> None:
        """Warn once when replicated (non-DTensor) parameters differ across ranks; shards differ by design."""
        if self._warned_weights or "weight" not in per_rank[0]:
            return
        names, reference = _replicated_rows(per_rank[0]["weight"], self.layout)
        for rank, groups in enumerate(per_rank[1:], start=1):
            other = groups.get("weight")
            other = None if other is None else _replicated_rows(other, self.layout)
            if other is None or other[0] != names or not np.allclose(other[1], reference, equal_nan=True):
                self._warned_weights = True
                warnings.warn(
                    f"parameters on rank {rank} differ from rank 0's: got diverged replicas (or FSDP1's flat "
                    "parameters), expected DDP-replicated weights; weight statistics of plain (non-DTensor) "
                    "parameters are rank 0's. See docs/distributed.md.",
                    NbdiagWarning,
                    stacklevel=2,
                )
                return


def warn_if_sharded(model: nn.Module) -> None:
    """Warn when ``model`` is wrapped by FSDP1 (``FullyShardedDataParallel``), whose flat parameters nbdiag cannot
    merge. FSDP2 (``fully_shard``) and tensor parallelism (DTensor parameters) are merged exactly: no warning."""
    for module in model.modules():
        if type(module).__name__ == "FullyShardedDataParallel":
            warnings.warn(
                "got a model wrapped by FullyShardedDataParallel (FSDP1): its flat parameters are sharded outside "
                "DTensor, so nbdiag reads parameter statistics on rank 0's shard only (activation and gradient "
                "statistics are merged exactly). Expected FSDP2 (torch.distributed.fsdp.fully_shard), DDP or a "
                "single process; see docs/distributed.md.",
                NbdiagWarning,
                stacklevel=4,
            )
            return


def _summed_units(per_rank: list[Tables]) -> Tables:
    """Per-unit counts (``units:<layer>`` groups) summed over the ranks that ran the layer with the same units."""
    summed: Tables = {}
    for groups in per_rank:
        for name, (rows, counts) in groups.items():
            if not name.startswith(GROUP_PREFIX):
                continue
            if name not in summed:
                summed[name] = (rows, counts.copy())
            elif summed[name][1].shape == counts.shape:
                summed[name][1][...] += counts
    return summed


def _counted_rows(per_rank: list[Tables], shares: list[dict], tp_groups: list) -> set[tuple[int, str, str]]:
    """(rank, kind, layer) whose vector enters the merge: data-parallel and sharded pieces always; of a replicated
    output only the replica the tensor-parallel coordinate 0 holds; of an output of unknown layout, one rank's when
    every rank of its tensor-parallel group holds the very same statistics (a replica), else every rank's."""
    counted = set()
    for rank, vectors in enumerate(per_rank):
        for kind, (layers, values) in vectors.items():
            for layer, vector in zip(layers, values, strict=True):
                share = shares[rank].get((layer, kind), (COUNTED, False))[0]
                if share == COUNTED or (
                    share == UNKNOWN and _first_or_distinct(rank, kind, layer, vector, per_rank, tp_groups)
                ):
                    counted.add((rank, kind, layer))
    return counted


def _first_or_distinct(rank: int, kind: str, layer: str, vector: np.ndarray, per_rank: list[Tables], tp_groups):
    """Whether ``rank`` counts its piece of an output of unknown layout (see :func:`_counted_rows`)."""
    peers = [r for r in (tp_groups[rank] or (rank,)) if 0 <= r < len(per_rank)]
    pieces = {r: _vector(per_rank[r], kind, layer) for r in peers}
    present = [r for r, v in pieces.items() if v is not None]
    identical = all(np.array_equal(pieces[r], vector, equal_nan=True) for r in present)
    return not identical or rank == min(present)


def _vector(vectors: Tables, kind: str, layer: str) -> np.ndarray | None:
    layers, values = vectors.get(kind, ([], None))
    return values[layers.index(layer)] if layer in layers else None


def _replicated_rows(table: tuple[list[str], np.ndarray], layout: dict) -> tuple[list[str], np.ndarray]:
    names, values = table
    keep = [i for i, name in enumerate(names) if name not in layout]
    return [names[i] for i in keep], values[keep]


def _override_rows(
    table: tuple[list[str], np.ndarray] | None, names: list[str], values: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """``table`` with the rows of ``names`` replaced by ``values`` (names it lacks appended)."""
    if table is None:
        return names, values
    old_names, old_values = list(table[0]), table[1].copy()
    row = {name: i for i, name in enumerate(old_names)}
    extra = [i for i, name in enumerate(names) if name not in row]
    for i, name in enumerate(names):
        if name in row:
            old_values[row[name]] = values[i]
    return old_names + [names[i] for i in extra], np.concatenate([old_values, values[extra]])


def _kinds(per_rank: list[Tables]) -> list[str]:
    return list(dict.fromkeys(kind for vectors in per_rank for kind in vectors))
