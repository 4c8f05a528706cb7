"""Kind ``model``: one row per sampled step on gradients that ``zero_grad()`` should have cleared.

``stale_grad_norm``: the norm of the gradients still held when a backward pass's first gradient arrives (a leaf's
tensor hook runs before its AccumulateGrad), the smallest over the step's passes: 0 when some pass found them
cleared (``zero_grad()`` with ``set_to_none=False`` zeroes them; with the default it releases them). A GAN whose
critic's backward runs through the generator, or a meta-learning inner ``torch.autograd.grad``, meets the previous
step's gradients first and clears them before its own backward: the smallest, not the first, tells.
``grad_carried``: 1.0 when every probed parameter holds, at the step's end, the very gradient tensor it held at the
previous sampled step's end, 0.0 when one was released or replaced, NaN when unknown (see
:meth:`StaleGradients._carried`).
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
        self._pass: int | None = None  # the autograd graph task whose first gradient was read
        self._stale: torch.Tensor | None = None  # the smallest stale norm over this step's passes (device)
        self._cleared = False  # some pass of this step found no gradient held
        self._held: list[tuple[torch.Tensor, weakref.ref | None]] | None = None  # (param, its grad) at the flush

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        on_first_grad = hooks.guard(self._on_incoming_grad)
        return [(p, functools.partial(p.register_hook, on_first_grad)) for p in self.zeroed]

    def _on_incoming_grad(self, grad: torch.Tensor) -> None:
        graph_task = torch._C._current_graph_task_id()  # one per backward() / autograd.grad() call
        if graph_task == self._pass:
            return
        self._pass = graph_task
        grads = [stored_values(p.grad) for p in self.zeroed if p.grad is not None]
        if not grads:  # released (zero_grad with set_to_none): this pass found them cleared
            self._cleared = True
            return
        norm = torch.linalg.vector_norm(torch.stack(norms_fp32(grads)))
        self._stale = norm if self._stale is None else torch.minimum(self._stale, norm)

    def capture(self, buffer: StepBuffer) -> None:
        """The step's row: the smallest stale norm over its backward passes, and whether the gradients are carried."""
        if self._stale is not None:  # no row when no pass found gradients held (the common, zeroed case)
            stale = torch.zeros_like(self._stale) if self._cleared else self._stale
            row = torch.stack([stale, stale.new_tensor(self._carried())])
            buffer.add_group(KIND, ["(model)"], row.reshape(1, len(MODEL_STATS)))

    def _carried(self) -> float:
        """1.0 when every probed parameter holds now (the step's end) the very gradient tensor it held at the previous
        sampled step's end (nothing released it since: ``zero_grad()`` was not called, or zeroed in place with
        ``set_to_none=False``), 0.0 when one was released or replaced (gradients were reset in between),
        NaN when no probed parameter held a gradient then or now (before the first flushed step, unused ones)."""
        known = [(param, held) for param, held in self._held or () if held is not None or param.grad is not None]
        if not known:
            return float("nan")
        return 0.0 if any(held is None or held() is not param.grad for param, held in known) else 1.0

    def new_step(self) -> None:
        """Note which gradient tensors the parameters hold now, by weak reference, to tell at the next sampled
        step whether they were kept."""
        self._pass, self._stale, self._cleared = None, None, False
        probes = self.zeroed[:CARRIED_PROBES]
        self._held = [(p, weakref.ref(p.grad) if p.grad is not None else None) for p in probes]

    def block(self, step: int, flushed: Flushed) -> Block | None:
        found = flushed.groups.get(KIND)
        return None if found is None else Block(tuple(found[0]), MODEL_STATS, found[1])

    def release(self) -> None:
        self.zeroed, self._held, self._stale = [], None, None
