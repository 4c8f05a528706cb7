"""Kind ``weight``: per-parameter weight statistics (read at the flush) and gradient statistics (read just before
the optimizer step, after DDP's all-reduce, and after it for those a closure computed inside it (LBFGS); without an
optimizer, as each gradient is accumulated)."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.errors import NbdiagWarning
from nbdiag.quantities.base import Flushed, Quiet, Registration, StepHooks
from nbdiag.record import Block
from nbdiag.sharding import PARTIAL_REASON, is_partial
from nbdiag.weights import GRAD_ROW_STATS, WEIGHT_STATS, grad_matrix, weight_matrix

KIND = "weight"
GRADS = "param_grad"  # the buffer group of the gradient rows


class Weights(Quiet):
    """Norm, mean, std, non-finite count of each parameter, and its gradient's norm, max |g|, non-finite count."""

    kind = KIND
    nonfinite = (("grad_nonfinite", "gradient"), ("nonfinite", KIND))
    reads_steps = True

    def __init__(
        self, params: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer | None, buffer: StepBuffer
    ) -> None:
        self.params = params
        self.optimizer = optimizer
        self.buffer = buffer
        self._by_name = dict(params)
        self.unrecorded: dict[str, str] = {}  # "<name> (<what>)" -> why it is not recorded (sharded tensors)
        self._said: set[str] = set()
        self._read: set[str] = set()  # parameters whose gradient row this step holds

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        if self.optimizer is not None:  # gradients read around the step: before_step / after_step
            return []
        registrations: list[Registration] = []
        for name, p in self.params:  # no optimizer: read each gradient as it is accumulated
            hook = hooks.guard(functools.partial(self._on_grad, name))
            registrations.append((p, functools.partial(p.register_post_accumulate_grad_hook, hook)))
        return registrations

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._read_grads()

    def after_step(self) -> None:
        self._read_grads(missing_only=True)  # a closure (LBFGS) computed them inside step()

    def _read_grads(self, missing_only: bool = False) -> None:
        names = [name for name, p in self.params if p.grad is not None and not self._partial(name, p.grad)]
        if missing_only:
            names = [name for name in names if name not in self._read]
        if names:
            rows = grad_matrix([self._by_name[name].grad for name in names])
            for name, row in zip(names, rows, strict=True):
                self.buffer.set_row(GRADS, name, row)
            self._read.update(names)

    def new_step(self) -> None:
        self._read = set()

    def _on_grad(self, name: str, param: torch.Tensor) -> None:
        if param.grad is not None and param is self._by_name.get(name) and not self._partial(name, param.grad):
            self.buffer.set_row(GRADS, name, grad_matrix([param.grad])[0])

    def _partial(self, name: str, grad: torch.Tensor) -> bool:
        """A gradient still pending a reduction across ranks (a ``Partial`` DTensor: a tensor-parallel replicated
        parameter's) is not read: its local values are not its values. Noted in :attr:`unrecorded`."""
        if not is_partial(grad):
            return False
        self.unrecorded.setdefault(f"{name} (gradient)", PARTIAL_REASON)
        return True

    def capture(self, buffer: StepBuffer) -> None:
        if self.params:
            buffer.add_group(KIND, [n for n, _ in self.params], weight_matrix([p for _, p in self.params]))

    def meta(self) -> dict[str, Any]:
        return {"not_recorded_sharded": dict(self.unrecorded)} if self.unrecorded else {}

    def block(self, step: int, flushed: Flushed) -> Block | None:
        new = {name: why for name, why in self.unrecorded.items() if name not in self._said}
        if new:  # said once (and kept in record.meta.not_recorded_sharded)
            self._said.update(new)
            reasons = "; ".join(f"{name}: {why}" for name, why in new.items())
            # the caller of mon.step(): block <- _guarded <- flush_step <- Monitor._flush <- Monitor.step
            warnings.warn(f"not recorded for these layers: {reasons}", NbdiagWarning, stacklevel=6)
        if KIND not in flushed.groups:
            return None
        names, weights = flushed.groups[KIND]
        grads = np.full((len(names), len(GRAD_ROW_STATS)), np.nan)
        if GRADS in flushed.groups:
            row = {n: i for i, n in enumerate(names)}
            for name, values in zip(*flushed.groups[GRADS], strict=True):
                grads[row[name]] = values
        return Block(tuple(names), WEIGHT_STATS, np.concatenate([weights, grads], axis=1))

    def release(self) -> None:
        self.params, self.optimizer, self._by_name = [], None, {}
