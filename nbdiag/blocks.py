"""Repeated blocks of a model, read from its recorded layer names: which layers are block ``i``'s ``attn.qkv``.

A transformer or a ResNet is a stack of blocks of the same structure (the children of a ``ModuleList`` /
``Sequential``: ``blocks.0``, ``blocks.1``...). A layer inside one has a *block index* and a *role*, its name
within the block (``blocks.11.attn.qkv`` -> block 11, role ``attn.qkv``). Views draw a statistic over block index
x role instead of one point per layer, where Linear, LayerNorm and GELU alternate in a sawtooth.

Recognised from the names and types alone (standard library only), so a run read back from disk gets the same
answer as the live model. A numbered child ``<container>.<i>`` holding at least two layers is a block when at least
:data:`MIN_REPEATS` numbered children (of any container) hold the same set of (role, layer type); every numbered
child of a container that holds such a block is a block too (a ResNet stage's first block, with its
``downsample``, included). Blocks of several containers (ResNet stages, encoder and decoder) are numbered on in
forward order; a role a block lacks is a gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nbdiag.names import OUTPUT_SEPARATOR, is_rank_row

MIN_REPEATS = 2  # children of the same structure that make a container a stack of blocks
MIN_BLOCK_LAYERS = 2  # a "block" of one layer is a plain layer


@dataclass(frozen=True)
class Blocks:
    """The repeated blocks found among a model's layers.

    Attributes:
        blocks: each block's name (``"blocks.0"``), in forward order; its index here is the block index.
        roles: the roles in forward order of first appearance (``"ln1"``, ``"attn.qkv"``...).
        layers: ``(block index, role) -> layer name``, for the layers inside blocks.
    """

    blocks: tuple[str, ...]
    roles: tuple[str, ...]
    layers: Mapping[tuple[int, str], str]
    _where: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._where.update({layer: key for key, layer in self.layers.items()})

    def __len__(self) -> int:
        return len(self.blocks)

    def locate(self, layer: str) -> tuple[int, str] | None:
        """``(block index, role)`` of ``layer``; None for a layer outside every block (an embedding, a head)."""
        return self._where.get(layer)

    def of_role(self, role: str) -> list[str | None]:
        """The layer of ``role`` in each block, in block order (None where a block has no such layer)."""
        return [self.layers.get((i, role)) for i in range(len(self.blocks))]

    def of_block(self, index: int) -> list[str]:
        """The layers of block ``index``, in role order."""
        return [self.layers[(index, role)] for role in self.roles if (index, role) in self.layers]


def find_blocks(layers: Sequence[str], types: Mapping[str, str | None]) -> Blocks | None:
    """The repeated blocks among ``layers``.

    Args:
        layers: recorded layer names in forward order (``"blocks.3.attn.qkv"``, ``"0"``; per-rank rows are skipped).
        types: each layer's module type name (``"Linear"``); a missing one counts as unknown.

    Returns:
        The :class:`Blocks`, or None when no container holds repeated blocks (a plain MLP or CNN).
    """
    children: dict[str, dict[int, dict[str, str]]] = {}  # container -> child index -> role -> type
    for layer in layers:
        split = _split(layer)
        if split is not None:
            container, index, role = split
            children.setdefault(container, {}).setdefault(index, {})[role] = types.get(layer) or ""
    stacks = _stacks(children)
    if not stacks:
        return None
    order: dict[str, int] = {}  # block name -> block index
    roles: dict[str, None] = {}
    placed: dict[tuple[int, str], str] = {}
    for layer in layers:
        split = _split(layer)
        if split is None or split[0] not in stacks:
            continue
        container, index, role = split
        name = f"{container}.{index}" if container else str(index)
        block = order.setdefault(name, len(order))
        roles.setdefault(role)
        placed.setdefault((block, role), layer)
    return Blocks(tuple(order), tuple(roles), placed)


def _split(layer: str) -> tuple[str, int, str] | None:
    """``"h.3.attn.qkv"`` -> ``("h", 3, "attn.qkv")``: the outermost numbered child with a layer inside it."""
    if is_rank_row(layer):
        return None
    parts = layer.split(OUTPUT_SEPARATOR, 1)[0].split(".")
    for k, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[:k]), int(part), layer[len(".".join(parts[: k + 1])) + 1 :]
    return None


def _stacks(children: dict[str, dict[int, dict[str, str]]]) -> set[str]:
    """The containers holding a child whose (role, type) set of MIN_BLOCK_LAYERS layers or more is shared by at
    least MIN_REPEATS numbered children in all."""
    counts: dict[frozenset, int] = {}
    for found in children.values():
        for roles in found.values():
            if len(roles) >= MIN_BLOCK_LAYERS:
                signature = frozenset(roles.items())
                counts[signature] = counts.get(signature, 0) + 1
    repeated = {signature for signature, count in counts.items() if count >= MIN_REPEATS}
    return {
        container
        for container, found in children.items()
        if any(frozenset(roles.items()) in repeated for roles in found.values())
    }
