"""torch.distributed: merge one sampled step's statistics over ranks, so every rank records the global picture.

Activation and output-gradient vectors hold sufficient statistics (``nbdiag.stats``), so the merge is exact:
global mean, std, min, max and histograms equal one process's on the concatenated batch. Parameter groups are
replicated under DDP and taken from rank 0 (non-finite counts: the largest over ranks).
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

import numpy as np
import torch.distributed as dist
from torch import nn

from nbdiag.errors import NbdiagWarning
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
        model: the watched model, checked for sharded parameters (FSDP, tensor parallel), which are not merged.
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
    return Aggregator(group, per_rank)


class Aggregator:
    """Called by the monitor at each sampled step on every rank: ``vectors, groups = aggregator(vectors, groups)``.

    One ``all_gather_object`` of the step's host arrays (a few KB per layer) per sampled step, on a gloo group
    with a finite timeout: a rank that stops sampling makes the others fail with an error (monitoring switches
    off there), never hang.
    """

    def __init__(self, group: dist.ProcessGroup, per_rank: bool) -> None:
        self.group = group
        self.per_rank = per_rank
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self._warned_weights = False

    def __call__(self, vectors: Tables, groups: Tables) -> tuple[Tables, Tables]:
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, (vectors, groups), group=self.group)
        per_rank_vectors = [v for v, _ in gathered]
        merged = {kind: self._merge_kind(kind, per_rank_vectors) for kind in _kinds(per_rank_vectors)}
        return merged, self._replicated(groups, [g for _, g in gathered])

    def _merge_kind(self, kind: str, per_rank: list[Tables]) -> tuple[list[str], np.ndarray]:
        rows: dict[str, list[np.ndarray]] = {}
        for vectors in per_rank:
            for layer, vector in zip(*vectors.get(kind, ([], [])), strict=True):
                rows.setdefault(layer, []).append(vector)
        layers = list(rows)
        merged = np.stack([merge_vectors(np.stack(r)) for r in rows.values()])  # (n_layers, VECTOR_LEN)
        if not self.per_rank:
            return layers, merged
        for rank, vectors in enumerate(per_rank):
            names, values = vectors.get(kind, ([], np.empty((0, merged.shape[1]))))
            layers += [f"{name}@rank{rank}" for name in names]
            merged = np.concatenate([merged, values])
        return layers, merged

    def _replicated(self, own: Tables, per_rank: list[Tables]) -> Tables:
        """Rank 0's parameter groups, with non-finite counts maxed over ranks; this rank's own scalars."""
        merged = dict(per_rank[0])
        for group, stat in NONFINITE_STAT.items():
            column = group_column(group, stat)
            if group not in merged or any(g.get(group, ([], None))[0] != merged[group][0] for g in per_rank):
                continue
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
        if self._warned_weights or "weight" not in per_rank[0]:
            return
        names, reference = per_rank[0]["weight"]
        for rank, groups in enumerate(per_rank[1:], start=1):
            other = groups.get("weight")
            if other is None or other[0] != names or not np.allclose(other[1], reference, equal_nan=True):
                self._warned_weights = True
                warnings.warn(
                    f"parameters on rank {rank} differ from rank 0's: got sharded (FSDP, tensor parallel) or "
                    "diverged replicas, expected DDP-replicated weights; weight statistics are rank 0's. "
                    "See docs/distributed.md.",
                    NbdiagWarning,
                    stacklevel=2,
                )
                return


def warn_if_sharded(model: nn.Module) -> None:
    """Warn (once per model) when ``model`` has FSDP-wrapped modules or DTensor (tensor-parallel) parameters."""
    kind = _sharding(model)
    if kind is not None:
        warnings.warn(
            f"got a model with {kind}; nbdiag merges activation and gradient statistics over ranks but reads "
            "parameter statistics on rank 0's shard only, and sharded activations may be counted once per "
            "rank. Expected DDP or a single process; see docs/distributed.md for what is supported.",
            NbdiagWarning,
            stacklevel=4,
        )


def _sharding(model: nn.Module) -> str | None:
    for module in model.modules():
        name = type(module).__name__
        if name == "FullyShardedDataParallel" or name.startswith("FSDP"):
            return f"FSDP-wrapped modules ({name})"
    if any(type(p).__name__ == "DTensor" or type(p.data).__name__ == "DTensor" for p in model.parameters()):
        return "DTensor (tensor-parallel or FSDP2) parameters"
    return None


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


def _kinds(per_rank: list[Tables]) -> list[str]:
    return list(dict.fromkeys(kind for vectors in per_rank for kind in vectors))
