"""Kind ``model``: one row per sampled step on gradients that ``zero_grad()`` should have cleared.

``stale_grad_norm``: the norm of the gradients still held when the step's first gradient arrives (a leaf's tensor
hook runs before its AccumulateGrad): zero_grad was skipped (zeros if it ran with ``set_to_none=False``).
``grad_carried``: 1.0 when every probed parameter still holds the very gradient tensor it held at the previous
sampled step's end, 0.0 when one was released or replaced, NaN when unknown (see :meth:`StaleGradients._carried`).
"""

from __future__ import annotations

import functools
import weakref

import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quiet, Registration, StepHooks
from nbdiag.record import Block
from nbdiag.weights import norms_fp32, stored_values

KIND = "model"
MODEL_STATS = ("stale_grad_norm", "grad_carried")
CARRIED_PROBES = 8  # gradients (of the first zeroed parameters) followed by weak reference from one sampled step on


class StaleGradients(Quiet):
    """Reads the gradients ``zero_grad()`` clears: the optimizer's parameters (all parameters without one)."""

    kind = KIND

    def __init__(self, zeroed: list[nn.Parameter], buffer: StepBuffer) -> None:
        self.zeroed = zeroed
        self.buffer = buffer
        self._seen = False
        self._held: list[tuple[torch.Tensor, weakref.ref | None]] | None = None  # (param, its grad) at the flush

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        on_first_grad = hooks.guard(self._on_incoming_grad)
        return [(p, functools.partial(p.register_hook, on_first_grad)) for p in self.zeroed]

    def _on_incoming_grad(self, grad: torch.Tensor) -> None:
        if self._seen:
            return
        self._seen = True
        grads = [stored_values(p.grad) for p in self.zeroed if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack(norms_fp32(grads)))
            row = torch.stack([norm, norm.new_tensor(self._carried())])
            self.buffer.add_group(KIND, ["(model)"], row.reshape(1, len(MODEL_STATS)))

    def _carried(self) -> float:
        """1.0 when every probed parameter still holds the very gradient tensor it held at the previous sampled
        step's end (nothing released it since: ``zero_grad()`` was not called, or zeroed in place with
        ``set_to_none=False``), 0.0 when one was released or replaced (gradients were reset in between),
        NaN when no probed parameter held a gradient then or now (before the first flushed step, unused ones)."""
        known = [(param, held) for param, held in self._held or () if held is not None or param.grad is not None]
        if not known:
            return float("nan")
        return 0.0 if any(held is None or held() is not param.grad for param, held in known) else 1.0

    def new_step(self) -> None:
        """Note which gradient tensors the parameters hold now, by weak reference, to tell at the next sampled
        step whether they were kept."""
        self._seen = False
        probes = self.zeroed[:CARRIED_PROBES]
        self._held = [(p, weakref.ref(p.grad) if p.grad is not None else None) for p in probes]

    def block(self, step: int, flushed: Flushed) -> Block | None:
        found = flushed.groups.get(KIND)
        return None if found is None else Block(tuple(found[0]), MODEL_STATS, found[1])

    def release(self) -> None:
        self.zeroed, self._held = [], None
