"""Kind ``update``: ||Δw|| / ||w|| of each parameter the optimizer holds, across one ``optimizer.step()``."""

from __future__ import annotations

import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quiet
from nbdiag.record import Block
from nbdiag.sharding import UPDATE_BASE_GROUP, is_dtensor
from nbdiag.update_norms import UpdateTracker
from nbdiag.weights import UPDATE_STATS

KIND = "update"


class Updates(Quiet):
    """The update/weight ratio and update norm per tracked parameter (a copy of them lives only between the
    optimizer's pre- and post-step hooks of a sampled step)."""

    kind = KIND
    reads_steps = True

    def __init__(
        self, tracked: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, buffer: StepBuffer
    ) -> None:
        self.optimizer = optimizer
        self.buffer = buffer
        self.names = [n for n, _ in tracked]
        self.tracker: UpdateTracker | None = UpdateTracker([p for _, p in tracked])
        self._sharded = any(is_dtensor(p) for _, p in tracked)

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Snapshot the tracked parameters this optimizer holds (by identity: SAM's base optimizer, a wrapper's)."""
        if self.tracker is None:
            return
        held = {id(p) for group in getattr(optimizer, "param_groups", ()) for p in group["params"]}
        self.tracker.before_step([i for i, p in enumerate(self.tracker.params) if id(p) in held])

    def after_step(self) -> None:
        measured = None if self.tracker is None else self.tracker.after_step()
        if measured is None:
            return
        indices, values = measured  # rows of several steps in one mon.step() add up by parameter
        for i, row in zip(indices, values, strict=True):
            self.buffer.set_row(KIND, self.names[i], row)
        if self._sharded:  # the shards' ||w|| before the step: the merged ratio's denominator
            for i, norm in zip(indices, self.tracker.base_norms, strict=True):
                self.buffer.set_row(UPDATE_BASE_GROUP, self.names[i], norm.reshape(1))

    def block(self, step: int, flushed: Flushed) -> Block | None:
        found = flushed.groups.get(KIND)
        return None if found is None else Block(tuple(found[0]), UPDATE_STATS, found[1])

    def release(self) -> None:
        self.optimizer, self.tracker = None, None
