"""How recorded rows are named, in one place: the per-rank suffix and the layer a parameter belongs to.

A recorded row is a layer (``"3"``, ``"encoder.0"``), one output of a layer with several (``"lstm/0"``), a
parameter (``"encoder.0.weight"``), or, under ``watch(per_rank=True)`` in torch.distributed, one rank's own row
of a layer (``"encoder.0@rank1"``). Every module that builds or reads these names calls the helpers below.
"""

from __future__ import annotations

RANK_SEPARATOR = "@rank"
OUTPUT_SEPARATOR = "/"


def rank_row(layer: str, rank: int) -> str:
    """``('3', 1)`` -> ``'3@rank1'``: the row holding one rank's own statistics of ``layer``."""
    return f"{layer}{RANK_SEPARATOR}{rank}"


def is_rank_row(row: str) -> bool:
    """Whether ``row`` is one rank's own row (``'3@rank1'``), not the merged one."""
    return RANK_SEPARATOR in row


def without_rank(row: str) -> str:
    """``'3@rank1'`` -> ``'3'``; a merged row is returned unchanged."""
    return row.split(RANK_SEPARATOR, 1)[0]


def module_of(row: str) -> str:
    """``'lstm/1/0@rank1'`` -> ``'lstm'``: the module a recorded row belongs to (no rank, no output path)."""
    return without_rank(row).split(OUTPUT_SEPARATOR, 1)[0]


def owning_layer(parameter: str) -> str:
    """``'encoder.0.weight'`` -> ``'encoder.0'``: the module that holds a parameter (a root parameter: itself)."""
    return parameter.rsplit(".", 1)[0]
