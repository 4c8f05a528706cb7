"""Per-unit activity of activation layers: which units (features / channels) fired, which were pinned at a bound.

seeds/002 (CS231n training recipes), activation functions: a dead ReLU is a unit that never activates on any input,
and a saturated tanh/sigmoid unit passes (almost) no gradient. Both are properties of a *unit*, not of a share of
outputs: a healthy ReLU layer outputs zero for about half of its inputs, and none of its units is dead.

Device side (:func:`unit_counts`): one reduction over the batch and spatial axes of a hooked tensor to a fixed-size
``(3, units)`` int64 block (fired, saturated and element counts per unit); no host sync, no data-dependent shape.
Host side (:class:`UnitWindow`): the blocks of the last :data:`UNIT_WINDOW` sampled steps per layer, summed, so a
unit is *dead* when it never fired over that window and *saturated* when most of its outputs in it were pinned.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nbdiag.activation_types import activation_kind
from nbdiag.names import without_rank
from nbdiag.probe import layer_type
from nbdiag.record import Block
from nbdiag.stats import output_bounds, saturated_mask

UNIT_WINDOW = 10  # sampled steps a unit is judged over: the same span as nbdiag.health.window.WINDOW_ENTRIES
UNIT_SATURATED_FRAC = 0.5  # a unit is saturated when at least half of its outputs over the window were pinned
GROUP_PREFIX = "units:"  # step-buffer group of one layer's counts: "units:<layer>", rows COUNT_ROWS
COUNT_ROWS = ["fired", "saturated", "elements"]
UNIT_STATS = (
    "units",
    "dead_units",
    "dead_unit_frac",
    "saturated_units",
    "saturated_unit_frac",
    "window_steps",
    "window_start",
)

# Where the unit axis is: the last dimension after these (features of Linear / LayerNorm / embeddings, also on
# (N, T, F) sequences); dimension 1 (channels) after convolutions, batch norm and pooling. Element-wise modules
# (activations, dropout) inherit the axis of the module before them in registration order.
LAST_AXIS_TYPES = frozenset({"Linear", "Bilinear", "LazyLinear", "LayerNorm", "RMSNorm", "Embedding", "EmbeddingBag"})
ELEMENTWISE_TYPES = frozenset(
    {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus"}
    | {"Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softsign", "Dropout", "AlphaDropout"}
)
DEAD_CAPABLE = (nn.ReLU, nn.ReLU6)  # exactly zero for every negative input, so a unit can die


@dataclass(frozen=True)
class UnitSpec:
    """How one module's outputs are read per unit: the unit axis, and which counts mean something."""

    axis: int  # 1 (channels) or -1 (features)
    dead: bool  # a unit can die (ReLU-like): "fired" counts outputs > 0
    bounds: tuple[float | None, float | None] | None  # saturation bounds (see nbdiag.stats.output_bounds)


def unit_specs(leaves: list[tuple[str, nn.Module]]) -> dict[int, UnitSpec]:
    """``id(module) -> UnitSpec`` for the leaves whose units can die or saturate (the others get none)."""
    specs, axis = {}, 1
    for _, module in leaves:
        kind, activation = layer_type(module), activation_kind(module)  # registered activations are element-wise
        if kind in LAST_AXIS_TYPES:
            axis = -1
        elif kind not in ELEMENTWISE_TYPES and activation is None:
            axis = 1
        dead, bounds = isinstance(module, DEAD_CAPABLE) or activation == "relu-like", output_bounds(module)
        if dead or bounds is not None:
            specs[id(module)] = UnitSpec(axis, dead, bounds)
    return specs


@torch.no_grad()
def unit_counts(x: torch.Tensor, spec: UnitSpec) -> torch.Tensor | None:
    """``(3, units)`` int64 on ``x``'s device: per unit, outputs > 0, outputs within the saturation margin of a bound,
    and outputs in all (``COUNT_ROWS``). Units lie on ``spec.axis`` (a 1-D tensor is one unit); None for a scalar.
    For a module that cannot die, "fired" is the element count (such a unit is never dead)."""
    if x.ndim == 0:
        return None
    x = x.detach()
    axis = 0 if x.ndim == 1 else spec.axis % x.ndim
    units = 1 if x.ndim == 1 else x.shape[axis]
    reduce = tuple(d for d in range(x.ndim) if d != axis or x.ndim == 1)
    elements = torch.full((units,), x.numel() // max(units, 1), dtype=torch.int64, device=x.device)
    fired = torch.count_nonzero(x > 0, dim=reduce).reshape(units) if spec.dead else elements
    if spec.bounds is None:
        saturated = torch.zeros_like(elements)
    else:
        saturated = torch.count_nonzero(saturated_mask(x, spec.bounds), dim=reduce).reshape(units)
    return torch.stack([fired, saturated, elements])


def add_counts(previous: torch.Tensor | None, counts: torch.Tensor) -> torch.Tensor:
    """Merge the counts of repeated calls of one layer within a step (sums; a call with other units is dropped)."""
    if previous is None:
        return counts
    return previous + counts if previous.shape == counts.shape else previous


class UnitWindow:
    """Host: the per-unit counts of each layer's last :data:`UNIT_WINDOW` sampled steps, read as a ``units`` Block."""

    def __init__(self, size: int = UNIT_WINDOW) -> None:
        self.size = size
        self._history: dict[str, deque[tuple[int, np.ndarray]]] = {}

    def block(self, step: int, counts: dict[str, np.ndarray], specs: dict[str, UnitSpec]) -> Block | None:
        """Add this step's ``layer -> (3, units)`` counts; the ``units`` Block of the windows ending at ``step``.

        Dead units: never fired over the window (NaN for layers that cannot die); saturated units: at least
        :data:`UNIT_SATURATED_FRAC` of their outputs over the window pinned (NaN for unbounded layers).
        """
        if not counts:
            return None
        rows = [self._row(step, layer, array, specs.get(without_rank(layer))) for layer, array in counts.items()]
        return Block(tuple(counts), UNIT_STATS, np.array(rows, dtype=np.float64).reshape(len(rows), len(UNIT_STATS)))

    def _row(self, step: int, layer: str, array: np.ndarray, spec: UnitSpec | None) -> list[float]:
        history = self._history.setdefault(layer, deque(maxlen=self.size))
        if history and history[-1][1].shape != array.shape:
            history.clear()  # the layer's width changed: its units are other units now
        history.append((step, array))
        fired, saturated, elements = np.sum([a for _, a in history], axis=0)
        units = float(len(elements))
        # a unit that saw no input (a routed expert that got no token) is not dead: it never had the chance to fire
        dead = float(np.sum((fired == 0) & (elements > 0))) if spec is not None and spec.dead else np.nan
        pinned = np.nan
        if spec is not None and spec.bounds is not None:
            pinned = float(np.sum(saturated >= UNIT_SATURATED_FRAC * np.maximum(elements, 1)))
        return [units, dead, dead / units, pinned, pinned / units, float(len(history)), float(history[0][0])]


def split_groups(groups: dict[str, tuple[list[str], np.ndarray]]) -> dict[str, np.ndarray]:
    """Remove the ``units:<layer>`` groups from a flushed step's ``groups``; return ``layer -> (3, units)``."""
    names = [name for name in groups if name.startswith(GROUP_PREFIX)]
    return {name[len(GROUP_PREFIX) :]: groups.pop(name)[1] for name in names}
