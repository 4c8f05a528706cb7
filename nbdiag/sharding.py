"""DTensor-aware statistics: read sharded tensors (FSDP2, tensor parallel) through their local shards.

FSDP2 (``fully_shard``) and tensor parallelism (``parallelize_module``) make parameters, and sometimes module
outputs, :class:`torch.distributed.tensor.DTensor` s. Reductions on a DTensor either communicate or fail (a norm
of a sharded parameter is a ``_NormPartial`` that cannot be redistributed to a sum), so nbdiag never reduces one:
it reduces the rank's *local* shard (:func:`local`) and sends the sufficient statistics (element count, sum of
squares, max, counts) with the one gather of a sampled step, where :mod:`nbdiag.runs.distributed` adds them up.

A shard is *counted* by exactly one rank per distinct piece of the full tensor (:func:`counted`): along a mesh
dimension where the tensor is replicated only the rank at coordinate 0 counts it, so replicated parameters and
outputs are counted once, not once per rank.
"""

from __future__ import annotations

from typing import Any

import torch

try:  # torch.distributed is optional (some macOS and mobile builds lack it)
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.placement_types import Partial, Replicate, Shard
except ImportError:  # pragma: no cover - builds without torch.distributed
    DTensor = Partial = Replicate = Shard = None  # type: ignore[assignment,misc]

PARTIAL_REASON = (
    "a Partial DTensor (values pending a sum across ranks, e.g. the gradient of a tensor-parallel replicated "
    "parameter): nbdiag would have to communicate the tensor to read it"
)
UPDATE_BASE_GROUP = "update_base"  # per sharded parameter: its local shard's ||w|| before the sampled step


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a DTensor (a parameter wrapping one included)."""
    return DTensor is not None and isinstance(t, DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """The rank's local shard of a DTensor (detached; a view, no copy, no communication); other tensors as they are."""
    return t.to_local().detach() if is_dtensor(t) else t


def is_partial(t: torch.Tensor) -> bool:
    """Whether a DTensor holds pending reductions (a ``Partial`` placement): its local values are not its values."""
    return is_dtensor(t) and any(isinstance(p, Partial) for p in t.placements)


def counted(t: torch.Tensor) -> bool:
    """Whether this rank counts its local shard of ``t`` toward the full tensor's statistics: always for a plain
    tensor; for a DTensor, when the rank sits at coordinate 0 of every mesh dimension along which ``t`` is
    replicated (or partial), so each distinct piece of the full tensor is counted by exactly one rank."""
    if not is_dtensor(t):
        return True
    mesh = t.device_mesh
    coordinate = mesh.get_coordinate()
    if coordinate is None:  # this rank is not in the tensor's mesh
        return False
    return all(isinstance(p, Shard) or c == 0 for p, c in zip(t.placements, coordinate, strict=True))


def shard_layout(params: list[tuple[str, torch.Tensor]]) -> dict[str, tuple[int, bool]]:
    """name -> (local element count, counted by this rank) for each DTensor parameter (plain ones are left out)."""
    return {name: (local(p).numel(), counted(p)) for name, p in params if is_dtensor(p)}


def wrapper_free_type(cls: type) -> type:
    """The user's class under FSDP2's dynamic subclass: ``FSDPLinear`` (bases ``FSDPModule``, ``Linear``) -> Linear."""
    if cls.__name__.startswith("FSDP") and any(b.__name__ == "FSDPModule" for b in cls.__bases__):
        others = [b for b in cls.__bases__ if b.__name__ != "FSDPModule"]
        if others:
            return others[0]
    return cls
