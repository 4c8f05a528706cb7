"""Kind ``gradient``: the gradient reaching each recorded layer's output (a tensor hook set in the forward hook)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quiet, Registration, StepHooks
from nbdiag.record import Block
from nbdiag.sharding import OutputLayouts, local, tensor_share
from nbdiag.stats import GRADIENT_STATS, derive, histogram_counts, raw_stats

KIND = "gradient"


class OutputGradients(Quiet):
    """Mean, std, min, max, zero fraction, non-finite count, norm and histogram of each output's gradient."""

    kind = KIND
    reads_outputs = True
    nonfinite = (("nonfinite", KIND),)

    def __init__(self, buffer: StepBuffer, hist_sample: int | None, layouts: OutputLayouts | None = None) -> None:
        self.buffer = buffer
        self.layouts = layouts  # sharded / replicated outputs (tensor parallelism): see nbdiag.sharding
        self.hist_sample = hist_sample
        self._hooks: StepHooks | None = None
        self._per_layer: dict[str, Callable] = {}  # layer -> its guarded hook, made once

    def registrations(self, hooks: StepHooks) -> list[Registration]:
        self._hooks = hooks  # the tensor hooks are registered in the forward pass, on each output
        return []

    def on_output(self, layer: str, module: nn.Module, tensor: torch.Tensor) -> None:
        if tensor.requires_grad and self._hooks is not None and tensor_share(tensor) is not None:
            tensor.register_hook(self._hook(layer))

    def _hook(self, layer: str) -> Callable:
        """The guarded gradient hook of ``layer``'s output, made (and compile-disabled) once per layer."""
        hook = self._per_layer.get(layer)
        if hook is None:
            hook = self._per_layer[layer] = self._hooks.guard(functools.partial(self._on_grad, layer))
        return hook

    def _on_grad(self, layer: str, grad: torch.Tensor) -> None:
        self._hooks.backward_started()
        if self.layouts is not None and self.layouts.gradient(layer, grad) is None:
            return  # a Partial DTensor gradient (noted once)
        self.buffer.add(layer, KIND, raw_stats(local(grad), None, self.hist_sample))

    def block(self, step: int, flushed: Flushed) -> Block | None:
        if KIND not in flushed.vectors:
            return None
        layers, values = flushed.vectors[KIND]
        hist = histogram_counts(values).astype(np.float32)
        return Block(tuple(layers), GRADIENT_STATS, derive(values, GRADIENT_STATS), hist)

    def release(self) -> None:
        self._hooks, self._per_layer = None, {}
