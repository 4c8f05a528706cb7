"""Kind ``mode``: whether each dropout / batch-norm module was in train mode at the sampled step (read on the host)."""

from __future__ import annotations

from torch import nn

from nbdiag.meta import ValidationMode
from nbdiag.modes import training_flags
from nbdiag.quantities.base import Flushed, Quiet
from nbdiag.record import Block

KIND = "mode"


class TrainingModes(Quiet):
    """``training`` (1.0 / 0.0) per mode-dependent module (:func:`nbdiag.modes.mode_modules`)."""

    kind = KIND

    def __init__(self, modules: list[tuple[str, nn.Module]]) -> None:
        self.modules = modules

    def block(self, step: int, flushed: Flushed) -> Block | None:
        if not self.modules:
            return None
        return Block(tuple(name for name, _ in self.modules), ("training",), training_flags(self.modules))

    def at_validation(self, seen: ValidationMode) -> ValidationMode:
        """``seen`` counting one more ``mon.validate()`` call, and whether it found these modules in train mode."""
        in_train = tuple(name for name, module in self.modules if module.training)
        if in_train:
            return ValidationMode(seen.calls + 1, seen.train_mode_calls + 1, in_train[:8])
        return ValidationMode(seen.calls + 1, seen.train_mode_calls, seen.layers)

    def release(self) -> None:
        self.modules = []
