"""Scalars logged as accelerator tensors (``mon.step(loss=loss)`` with a CUDA loss): kept, detached, and read in
the next sampled step's one copy (or, past :data:`MAX_PENDING`, in one copy of their own), never one by one.
No block: the values join the record's scalars at the step each was logged."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quiet
from nbdiag.record import Block, Record

GROUP = "scalars"
MAX_PENDING = 256  # accelerator scalars read in one copy at the latest after this many


class DeviceScalars(Quiet):
    """The pending ``(step, name, 0-d tensor)`` of one record."""

    kind = GROUP

    def __init__(self, record: Record) -> None:
        self.record = record
        self._pending: list[tuple[int, str, torch.Tensor]] = []
        self._taken: list[tuple[int, str, torch.Tensor]] = []

    def add(self, step: int, tensors: dict[str, torch.Tensor]) -> None:
        """Keep ``tensors`` (detached 0-d device tensors) logged at ``step``."""
        self._pending.extend((step, name, t) for name, t in tensors.items())

    @property
    def full(self) -> bool:
        return len(self._pending) >= MAX_PENDING

    def read_now(self) -> None:
        """Copy every pending value to the host now (one copy) and record them."""
        pending, self._pending = self._pending, []
        if pending:
            values = torch.stack([t.float() for *_, t in pending]).cpu().numpy()
            self._record(pending, values)

    def capture(self, buffer: StepBuffer) -> None:
        self._taken, self._pending = self._pending, []
        if self._taken:
            buffer.add_group(GROUP, [n for _, n, _ in self._taken], torch.stack([t for *_, t in self._taken]))

    def block(self, step: int, flushed: Flushed) -> Block | None:
        taken, self._taken = self._taken, []
        found = flushed.groups.get(GROUP)
        self._record(taken, None if found is None else found[1])
        return None

    def _record(self, pending: list, values: np.ndarray | None) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for (step, name, _), value in zip(pending, [] if values is None else values.reshape(-1), strict=False):
            by_step.setdefault(step, {})[name] = float(value)
        for step, step_values in by_step.items():
            self.record.add_scalars(step, step_values)

    def release(self) -> None:
        self._pending, self._taken = [], []


def split_scalars(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Numbers (and CPU tensors) as floats now; accelerator tensors kept (detached) to read later in one copy."""
    numbers, device_tensors = {}, {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"scalar {name!r} must be a number or a 1-element tensor, got shape {tuple(value.shape)}; "
                    "log a reduction such as loss.mean()"
                )
            if value.device.type == "cpu":
                numbers[name] = float(value.detach())
            else:
                device_tensors[name] = value.detach().reshape(())
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            numbers[name] = float(value)
        else:
            raise TypeError(f"scalar {name!r} must be a number or a 1-element tensor, got {type(value).__name__}")
    return numbers, device_tensors
