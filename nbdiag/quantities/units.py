"""Kind ``units``: per-unit fired / saturated counts of activation layers, judged over a window of sampled steps.

The device side (:func:`nbdiag.units.unit_counts`) and the host window (:class:`nbdiag.units.UnitWindow`) live in
:mod:`nbdiag.units`; this quantity feeds the counts of each hooked output into the step's buffer (summed over a
layer's calls) and reads the window's block.
"""

from __future__ import annotations

import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quiet
from nbdiag.record import Block
from nbdiag.sharding import DATA_PARALLEL, DUPLICATE, UNITS_REASON, OutputLayouts, local
from nbdiag.units import COUNT_ROWS, GROUP_PREFIX, UNIT_STATS, UnitSpec, UnitWindow, add_counts, unit_counts, unit_specs

KIND = "units"


class Units(Quiet):
    """Dead and saturated units per layer (only the layers whose units can die or saturate)."""

    kind = KIND
    reads_outputs = True

    def __init__(
        self, leaves: list[tuple[str, nn.Module]], buffer: StepBuffer, layouts: OutputLayouts | None = None
    ) -> None:
        self.buffer = buffer
        self.layouts = layouts  # per-unit counts add over ranks only for data-parallel pieces
        self._specs = unit_specs(leaves)  # id(module) -> UnitSpec
        self.layers: dict[str, UnitSpec] = {}  # recorded output -> its spec
        self._window = UnitWindow()

    def on_output(self, layer: str, module: nn.Module, tensor: torch.Tensor) -> None:
        spec = self._specs.get(id(module))
        if spec is not None and self.layouts is not None:
            share = self.layouts.forward(layer, module, tensor)
            if share is None or share.counted == DUPLICATE:  # Partial, or a replica another rank counts
                self.layers[layer] = spec
                return
            if share != DATA_PARALLEL:  # split along its units, or a layout nbdiag cannot tell
                self.layouts.unrecorded.setdefault(f"{layer} (units)", UNITS_REASON)
                return
        counts = None if spec is None else unit_counts(local(tensor), spec)
        if counts is not None:
            self.layers[layer] = spec
            self.buffer.accumulate(GROUP_PREFIX + layer, COUNT_ROWS, counts, add_counts)

    def block(self, step: int, flushed: Flushed) -> Block | None:
        names = [name for name in flushed.groups if name.startswith(GROUP_PREFIX)]
        counts = {name[len(GROUP_PREFIX) :]: flushed.groups[name][1] for name in names}
        block = self._window.block(step, counts, self.layers)
        return None if block is None else Block(block.layers, UNIT_STATS, block.values, optional=UNIT_STATS)

    def release(self) -> None:
        self._specs = {}
