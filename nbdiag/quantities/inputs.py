"""Kind ``inputs``: a few samples of the tensor entering ``model.forward`` (Karpathy's recipe, 2: "visualize just
before the net"). A root forward pre-hook keeps a detached copy of the first :data:`~nbdiag.inputs.MAX_SAMPLES`
samples of the step's first training forward (at most :data:`~nbdiag.inputs.MAX_VALUES` values each); it rides
the step's one copy. Reading it back: :func:`nbdiag.inputs.latest_sample`."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from nbdiag.buffer import StepBuffer
from nbdiag.inputs import GROUP, MAX_SAMPLES, MAX_VALUES, inputs_block
from nbdiag.meta import InputMeta
from nbdiag.probe import in_backward, under_transform
from nbdiag.quantities.base import Flushed, Quiet, Registration, StepHooks
from nbdiag.record import Block


class Inputs(Quiet):
    """The model's input samples of each sampled step; their shape and dtype go to ``record.meta.inputs``."""

    kind = GROUP

    def __init__(self, model: nn.Module, buffer: StepBuffer) -> None:
        self.model = model
        self.buffer = buffer
        self.shape: InputMeta | None = None

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        # a global pre-hook filtered to the model: a deep copy never inherits it
        return [(None, functools.partial(register_module_forward_pre_hook, hooks.guard(self._hook)))]

    def _hook(self, module: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if module is not self.model or not torch.is_grad_enabled() or self.buffer.held(GROUP):
            return
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or under_transform(x) or in_backward():
            return
        rows = x.detach()[:MAX_SAMPLES]
        self.shape = InputMeta(tuple(rows.shape[1:]), str(rows.dtype).replace("torch.", ""))
        sample = rows.reshape(len(rows), -1)[:, :MAX_VALUES].clone()  # small; the batch is not kept
        self.buffer.add_group(GROUP, [f"sample {i}" for i in range(len(sample))], sample)

    def block(self, step: int, flushed: Flushed) -> Block | None:
        found = flushed.groups.get(GROUP)
        return None if found is None else inputs_block(*found)

    def meta(self) -> dict[str, Any]:
        return {} if self.shape is None else {"inputs": self.shape}

    def release(self) -> None:
        self.model = None
