"""The seam for per-step quantities beside the hooks' statistics (predictions on a fixed batch, input samples, ...).

A quantity is read on the device at the end of a sampled step, rides the step's single device->host copy as a
buffer group, and becomes one record block of its ``kind``; the run writer, the reader and the distributed merge
(rank 0's values, like parameter groups) then carry it with no code of their own.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from nbdiag.record import Block


class StepQuantity(Protocol):
    """What the monitor asks of a quantity. Every method may raise: the failure is logged (source ``kind``) and
    only this quantity's block is missing at that step."""

    kind: str  # the record block's kind; also the buffer group's name (must not be a kind the hooks fill)

    def capture(self) -> tuple[list[str], torch.Tensor] | None:
        """``(row names, (rows, columns) device tensor)`` for this step, or None for nothing. No host sync."""

    def block(self, names: list[str], values: np.ndarray) -> Block:
        """The record block of the host copy of :meth:`capture`'s tensor."""

    def release(self) -> None:
        """Drop references to the model (the monitor closes)."""
