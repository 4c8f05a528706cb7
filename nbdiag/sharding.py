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

from typing import Any, NamedTuple

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
UNITS_REASON = (
    "per-unit counts of an output split over tensor-parallel ranks along its units (or of a layout nbdiag cannot "
    "tell) would not add up; the layer's other statistics are recorded"
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
    return is_dtensor(t) and any(_partial(p) for p in t.placements)


def _partial(placement: Any) -> bool:
    return placement.is_partial() if hasattr(placement, "is_partial") else isinstance(placement, Partial)


def _split(placement: Any) -> bool:
    """A placement that splits the tensor over the mesh dimension: ``Shard`` and FSDP2-over-TP's ``_StridedShard``
    (which is no ``Shard`` subclass); not ``Replicate`` nor ``Partial``."""
    replicate = placement.is_replicate() if hasattr(placement, "is_replicate") else isinstance(placement, Replicate)
    return not replicate and not _partial(placement)


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
    return all(_split(p) or c == 0 for p, c in zip(t.placements, coordinate, strict=True))


def shard_layout(params: list[tuple[str, torch.Tensor]]) -> dict[str, tuple[int, bool, tuple[int, ...]]]:
    """name -> (local element count, counted by this rank, the global ranks of its mesh) per DTensor parameter
    (plain ones are left out). The mesh's ranks tell replicas apart across meshes: under FSDP2 x TP, a parameter
    sharded over the data-parallel mesh only is held whole by every tensor-parallel rank's own data-parallel mesh,
    and the merge counts the mesh of the lowest rank only."""
    return {name: (local(p).numel(), counted(p), mesh_ranks(p)) for name, p in params if is_dtensor(p)}


def mesh_ranks(t: torch.Tensor) -> tuple[int, ...]:
    """The global ranks of a DTensor's device mesh (empty for a plain tensor)."""
    if not is_dtensor(t):
        return ()
    try:
        return tuple(int(r) for r in t.device_mesh.mesh.reshape(-1).tolist())
    except Exception:  # a mesh without a rank tensor: one mesh assumed
        return ()


def wrapper_free_type(cls: type) -> type:
    """The user's class under FSDP2's dynamic subclass: ``FSDPLinear`` (bases ``FSDPModule``, ``Linear``) -> Linear."""
    if cls.__name__.startswith("FSDP") and any(b.__name__ == "FSDPModule" for b in cls.__bases__):
        others = [b for b in cls.__bases__ if b.__name__ != "FSDPModule"]
        if others:
            return others[0]
    return cls


# -- module outputs under tensor parallelism ------------------------------------------------------------------------
COUNTED, DUPLICATE, UNKNOWN = 1, 0, -1  # how a rank's statistics of an output enter the merge over ranks


class OutputShare(NamedTuple):
    """How this rank's piece of a module output relates to the full output.

    ``counted``: :data:`COUNTED` (a disjoint piece, or this rank holds the replica that is counted),
    :data:`DUPLICATE` (a replica counted by another rank), :data:`UNKNOWN` (a local tensor of unknown layout: the
    merge counts it once if every rank of the tensor-parallel group holds identical statistics, else merges all).
    ``feature_sharded``: split along the last (feature) dimension, so per-unit counts cannot be added over ranks.
    """

    counted: int
    feature_sharded: bool


DATA_PARALLEL = OutputShare(COUNTED, False)


def placement_share(placements: tuple, coordinate: tuple[int, ...] | None, ndim: int) -> OutputShare | None:
    """The share of a tensor with ``placements`` on a mesh where this rank sits at ``coordinate``; None when a
    placement is ``Partial`` (the local values are not the tensor's values)."""
    if any(_partial(p) for p in placements):
        return None
    if coordinate is None:
        return OutputShare(DUPLICATE, False)
    replica = any(not _split(p) and c != 0 for p, c in zip(placements, coordinate, strict=True))
    feature = any(_split(p) and getattr(p, "dim", 0) % max(ndim, 1) == ndim - 1 for p in placements)
    return OutputShare(DUPLICATE if replica else COUNTED, feature)


def tensor_share(t: torch.Tensor) -> OutputShare | None:
    """The share of a DTensor from its own placements (None: Partial); a plain tensor is data-parallel."""
    if not is_dtensor(t):
        return DATA_PARALLEL
    return placement_share(tuple(t.placements), t.device_mesh.get_coordinate(), t.ndim)


def style_output(module: torch.nn.Module) -> tuple[Any, Any] | None:
    """(output placement, device mesh) that a tensor-parallel style (``ColwiseParallel``, ``RowwiseParallel``,
    ``SequenceParallel``, ``PrepareModuleOutput``) gives ``module``'s output, read from the forward hook that
    ``parallelize_module`` registered; None for a module without one (or a torch whose hooks look different)."""
    for hook in getattr(module, "_forward_hooks", {}).values():
        if "distribute_module" not in getattr(hook, "__qualname__", "") or not getattr(hook, "__closure__", None):
            continue
        try:
            cells = dict(zip(hook.__code__.co_freevars, (c.cell_contents for c in hook.__closure__), strict=True))
        except ValueError:  # an empty cell
            continue
        layouts = _style_layouts(cells.get("output_fn"))
        if layouts is not None and cells.get("device_mesh") is not None:
            placement = layouts[0] if isinstance(layouts, (tuple, list)) else layouts
            return placement, cells["device_mesh"]
    return None


def _style_layouts(output_fn: Any) -> Any:
    """The output layouts a style's output function applies: a bound method's style attributes
    (``PrepareModuleOutput``), or the arguments ``ColwiseParallel`` / ``RowwiseParallel`` bind to their static
    ``_prepare_output_fn``; ``SequenceParallel`` shards along the sequence (its local output is never split along
    features)."""
    func = getattr(output_fn, "func", output_fn)
    style = getattr(func, "__self__", None)
    if style is not None:
        for attribute in ("desired_output_layouts", "output_layouts", "sequence_sharding"):
            if getattr(style, attribute, None) is not None:
                return getattr(style, attribute)
        return None
    owner = getattr(func, "__qualname__", "").split(".")[0]
    args = getattr(output_fn, "args", ())
    if owner in ("ColwiseParallel", "RowwiseParallel") and args:
        return args[0]
    if owner == "SequenceParallel" and Shard is not None:
        return (Shard(1),)
    return None


def style_share(placement: Any, mesh: Any, ndim: int) -> OutputShare | None:
    """The share of a local-tensor output that a style declared ``placement`` on a 1-D tensor-parallel ``mesh``."""
    if placement is None:
        return OutputShare(UNKNOWN, False)
    return placement_share((placement,), mesh.get_coordinate(), ndim)


def tp_group(styles: dict[int, tuple[Any, Any]]) -> tuple[int, ...] | None:
    """The global ranks of this rank's tensor-parallel group (from the first style's mesh), or None."""
    for _, mesh in styles.values():
        try:
            return tuple(int(r) for r in mesh.mesh.reshape(-1).tolist())
        except Exception:  # a mesh without a rank tensor
            return None
    return None


class OutputLayouts:
    """Per recorded layer and kind, how this rank's output (or output gradient) enters the merge over ranks.

    From the output's DTensor placements when it is a DTensor; from the tensor-parallel style of the module when
    it returns a local tensor; else, in a model with tensor-parallel styles, :data:`UNKNOWN` (the merge compares
    the ranks' statistics). Without any style every plain output is data-parallel. ``unrecorded`` collects what
    cannot be read ("<layer> (<what>)" -> why), said once by the monitor.
    """

    def __init__(self, leaves: list[tuple[str, torch.nn.Module]]) -> None:
        self.styles = {id(m): s for _, m in leaves if (s := style_output(m)) is not None}
        self.group = tp_group(self.styles)
        self.shares: dict[tuple[str, str], OutputShare] = {}  # (layer, kind) -> share, when not data-parallel
        self.unrecorded: dict[str, str] = {}

    def forward(self, layer: str, module: torch.nn.Module, output: torch.Tensor) -> OutputShare | None:
        """The share of ``module``'s ``output`` (None: Partial, not readable; noted)."""
        if is_dtensor(output):
            share = tensor_share(output)
        elif not self.styles:
            return DATA_PARALLEL
        elif id(module) in self.styles:
            share = style_share(*self.styles[id(module)], output.ndim)
        else:
            share = OutputShare(UNKNOWN, False)
        return self._note(layer, "activation", share)

    def gradient(self, layer: str, grad: torch.Tensor) -> OutputShare | None:
        """The share of the gradient of ``layer``'s output: its placements, else the output's share."""
        share = tensor_share(grad) if is_dtensor(grad) else self.shares.get((layer, "activation"), DATA_PARALLEL)
        return self._note(layer, "gradient", share)

    def _note(self, layer: str, kind: str, share: OutputShare | None) -> OutputShare | None:
        if share is None:
            self.unrecorded.setdefault(f"{layer} ({kind})", PARTIAL_REASON)
        elif share != DATA_PARALLEL:
            self.shares[(layer, kind)] = share
        else:
            self.shares.pop((layer, kind), None)
        return share
