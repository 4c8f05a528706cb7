"""One sampled step, assembled: every quantity reads its end-of-step values, the buffer is copied to the host once
(merged over ranks under torch.distributed), and every quantity turns its part into one record block.

The hop count from a forward hook to a panel: hook (``Capture._on_forward``) → quantity ``on_output`` → buffer →
:func:`flush_step` (one copy) → quantity ``block`` → ``Record.append`` → a view's panel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quantity
from nbdiag.record import Block, NonFinite, Record, StepEntry

Aggregate = Callable[[dict, dict], tuple[dict, dict]]


def flush_step(
    step: int, quantities: list[Quantity], buffer: StepBuffer, record: Record, aggregate: Aggregate | None = None
) -> None:
    """Record sampled step ``step``: its entry, the first non-finite value it holds, the meta its quantities know.

    A quantity that raises loses its block at this step only (logged with its kind as the source); a failure of
    the copy itself propagates (the monitor switches capture off).
    """
    for quantity in quantities:
        _guarded(record, step, quantity, quantity.capture, buffer)
    vectors, groups = buffer.flush()
    if aggregate is not None:  # torch.distributed: exact statistics over all ranks
        vectors, groups = aggregate(vectors, groups)
    flushed = Flushed(vectors, groups)
    blocks: dict[str, Block] = {}
    for quantity in quantities:
        block = _guarded(record, step, quantity, quantity.block, step, flushed)
        if block is not None:
            blocks[quantity.kind] = block
    update_meta(record, quantities)
    record.append(StepEntry(step, blocks))
    found = first_nonfinite(step, blocks, ((q.kind, q.nonfinite) for q in quantities))
    if found is not None:
        record.note_nonfinite(found)


def update_meta(record: Record, quantities: list[Quantity]) -> None:
    """Set the meta fields the quantities know, where they changed (one swap under the record's lock)."""
    known: dict[str, Any] = {}
    for quantity in quantities:
        known.update(quantity.meta())
    changed = {name: value for name, value in known.items() if getattr(record.meta, name) != value}
    if changed:
        record.update_meta(**changed)


def first_nonfinite(
    step: int, blocks: dict[str, Block], checks: Iterable[tuple[str, tuple[tuple[str, str], ...]]]
) -> NonFinite | None:
    """The first row holding NaN/Inf, searching each kind's ``nonfinite`` columns in the quantities' order
    (activations in forward order, then output gradients, then parameter gradients, then weights)."""
    ordered = [(kind, column, called) for kind, columns in checks for column, called in columns]
    for kind, column, called in ordered:
        block = blocks.get(kind)
        if block is None or column not in block.stats:
            continue
        counts = block.values[:, block.stats.index(column)]
        bad = np.flatnonzero(counts > 0)
        if len(bad):
            return NonFinite(step, block.layers[bad[0]], called, float(counts[bad[0]]))
    return None


def _guarded(record: Record, step: int, quantity: Quantity, method: Callable, *args: Any) -> Any:
    try:
        return method(*args)
    except Exception as error:  # never break training (nor the other quantities)
        record.errors.add(quantity.kind, error, step=step)
        return None
