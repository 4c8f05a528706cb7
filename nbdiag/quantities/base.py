"""The one protocol of a measured kind: a :class:`Quantity` (and, when it needs hooks, a :class:`HookQuantity`).

A sampled step goes: hooks fire during forward/backward/``optimizer.step`` (hook-backed quantities put device
values into the step's :class:`~nbdiag.buffer.StepBuffer`); at ``mon.step()`` each quantity's :meth:`capture`
adds what it reads at the end of the step; the buffer is copied to the host in one transfer; each quantity's
:meth:`block` turns its part of the copy into one record block of its ``kind``. :mod:`nbdiag.step` runs that loop;
:class:`~nbdiag.capture.Capture` registers the hooks of every quantity together (all or none) and drops a pass that
raised. The run writer, the reader, the views' generic tables and the distributed merge need no code per kind.

Every method may raise: the failure is logged (source ``kind``) and only this quantity's block is missing at that
step (a hook that raises switches capture off, as before).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.record import Block

# (tensor, register): ``register()`` adds one hook and returns its handle; a tensor hook is registered only while
# its tensor requires a gradient (a frozen parameter takes none).
Registration = tuple[torch.Tensor | None, Callable[[], Any]]


@dataclass(frozen=True)
class Flushed:
    """One sampled step on the host: ``vectors`` (kind -> (layers, (n, VECTOR_LEN) statistics vectors)) and
    ``groups`` (group -> (names, (n, k) array)), after the distributed merge when there is one."""

    vectors: dict[str, tuple[list[str], np.ndarray]]
    groups: dict[str, tuple[list[str], np.ndarray]]


class StepHooks(Protocol):
    """What :class:`~nbdiag.capture.Capture` gives a hook-backed quantity when it makes its registrations."""

    buffer: StepBuffer
    model: nn.Module

    def guard(self, hook: Callable) -> Callable:
        """``hook`` wrapped so that an exception switches capture off instead of reaching training."""

    def backward_started(self) -> None:
        """Note that a backward pass is running (an output-gradient hook fired)."""


class Quantity(Protocol):
    """A measured kind: what the step assembly (:mod:`nbdiag.step`) asks of it."""

    kind: str  # its record block's kind
    nonfinite: tuple[tuple[str, str], ...]  # (column, what to call it) checked for NaN/Inf, in this order

    def capture(self, buffer: StepBuffer) -> None:
        """At the end of a sampled step, before the copy: add device values read now. No host sync."""

    def block(self, step: int, flushed: Flushed) -> Block | None:
        """The record block of this step (None: nothing this step)."""

    def meta(self) -> dict[str, Any]:
        """The :class:`~nbdiag.meta.RunMeta` fields this quantity knows (set when they change)."""

    def release(self) -> None:
        """Drop references to the model, its parameters and the optimizer (the monitor closes)."""


class HookQuantity(Quantity, Protocol):
    """A quantity read by hooks. :class:`~nbdiag.capture.Capture` attaches and detaches the hooks of all of them
    together, so attaching is all-or-nothing and re-attaching registers the very same hook functions (so
    ``torch.compile``'s guards on them hold)."""

    reads_outputs: bool  # whether the forward hooks call on_output
    reads_steps: bool  # whether the optimizer step hooks call before_step / after_step

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        """Its hooks, made once (wrap each function in ``hooks.guard``)."""

    def on_output(self, layer: str, module: nn.Module, tensor: torch.Tensor) -> None:
        """Called by the one forward hook of each recorded layer, per output tensor, in training passes."""

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Before the outermost optimizer step that holds watched parameters (after DDP's all-reduce)."""

    def after_step(self) -> None:
        """After that step."""

    def new_step(self) -> None:
        """Forget host state kept for the step just flushed."""


class Quiet:
    """Defaults for the optional parts of the protocol; a kind overrides what it uses."""

    kind = ""
    nonfinite: tuple[tuple[str, str], ...] = ()
    reads_outputs = False
    reads_steps = False

    def capture(self, buffer: StepBuffer) -> None:
        return None

    def block(self, step: int, flushed: Flushed) -> Block | None:
        return None

    def meta(self) -> dict[str, Any]:
        return {}

    def release(self) -> None:
        return None

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        return []

    def on_output(self, layer: str, module: nn.Module, tensor: torch.Tensor) -> None:
        return None

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        return None

    def after_step(self) -> None:
        return None

    def new_step(self) -> None:
        return None


class TensorSource(Protocol):
    """The short form of a kind read at the end of the step: one ``(names, tensor)``, one block."""

    kind: str

    def capture(self) -> tuple[list[str], torch.Tensor] | None:
        """``(row names, (rows, columns) device tensor)`` for this step, or None for nothing. No host sync."""

    def block(self, names: list[str], values: np.ndarray) -> Block:
        """The record block of the host copy of :meth:`capture`'s tensor."""

    def release(self) -> None:
        """Drop references to the model."""


class FromTensor(Quiet):
    """A :class:`TensorSource` (the fixed-batch predictions, the first-layer filters) as a :class:`Quantity`: its
    tensor rides the step's copy as the group of its kind."""

    def __init__(self, source: TensorSource, meta: dict[str, Any] | None = None) -> None:
        self.source = source
        self.kind = source.kind
        self._meta = meta or {}

    def capture(self, buffer: StepBuffer) -> None:
        captured = self.source.capture()
        if captured is not None:
            buffer.add_group(self.kind, *captured)

    def block(self, step: int, flushed: Flushed) -> Block | None:
        found = flushed.groups.get(self.kind)
        return None if found is None else self.source.block(*found)

    def meta(self) -> dict[str, Any]:
        return self._meta

    def release(self) -> None:
        self.source.release()
