"""Kind ``activation``: each recorded layer's output, reduced to raw statistics on the device (forward hook)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.names import without_rank
from nbdiag.quantities.base import Flushed, Quiet
from nbdiag.record import Block
from nbdiag.sharding import OutputLayouts, local
from nbdiag.stats import ACTIVATION_STATS, derive, histogram_counts, output_bounds, raw_stats

KIND = "activation"


class Activations(Quiet):
    """Mean, std, min, max, zero and saturated fractions, non-finite count and histogram of each layer's output.

    ``saturated_frac`` applies to bounded activations only (tanh, sigmoid, ...): NaN elsewhere (``Block.optional``).
    """

    kind = KIND
    reads_outputs = True
    nonfinite = (("nonfinite", KIND),)

    def __init__(
        self,
        leaves: list[tuple[str, nn.Module]],
        buffer: StepBuffer,
        hist_sample: int | None,
        layouts: OutputLayouts | None = None,
    ) -> None:
        self.buffer = buffer
        self.layouts = layouts  # sharded / replicated outputs (tensor parallelism): see nbdiag.sharding
        self.hist_sample = hist_sample
        self._bounds = {id(m): output_bounds(m) for _, m in leaves}
        self.bounded_layers: set[str] = set()

    def on_output(self, layer: str, module: nn.Module, tensor: torch.Tensor) -> None:
        if self.layouts is not None and self.layouts.forward(layer, module, tensor) is None:
            return  # a Partial DTensor: its local values are not its values (noted once)
        bounds = self._bounds.get(id(module))
        if bounds is not None:
            self.bounded_layers.add(layer)
        self.buffer.add(layer, KIND, raw_stats(local(tensor), bounds, self.hist_sample))

    def block(self, step: int, flushed: Flushed) -> Block | None:
        if KIND not in flushed.vectors:
            return None
        layers, values = flushed.vectors[KIND]
        derived = derive(values, ACTIVATION_STATS)
        saturated = ACTIVATION_STATS.index("saturated_frac")
        derived[[without_rank(layer) not in self.bounded_layers for layer in layers], saturated] = np.nan
        hist = histogram_counts(values).astype(np.float32)
        return Block(tuple(layers), ACTIVATION_STATS, derived, hist, optional=("saturated_frac",))

    def release(self) -> None:
        self._bounds = {}
