"""First-layer filters: the weights of the model's first Conv2d, copied with a sampled step's statistics.

Karpathy's recipe, 4 (regularize): "visualize the first layer's weights; filters that look like noise are not
trained". The filters travel in the step's single device→host copy (a buffer group) and land in the record as a
``filters`` block: one row per filter (``<layer>[i]``), one column per weight (``w0 .. w{C*kh*kw-1}``), bounded to
``MAX_FILTERS`` filters of at most ``MAX_WEIGHTS`` weights (the first input channels when there are more).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nbdiag.meta import FilterMeta
from nbdiag.record import Block
from nbdiag.stored import stored_tensor

GROUP = "filters"
MAX_FILTERS = 16  # 16 filters of 3x7x7 cost 2,352 floats per sampled step
MAX_WEIGHTS = 3 * 11 * 11  # weights kept per filter (AlexNet's 3x11x11 whole)


@dataclass
class FirstFilters:
    """Where the first Conv2d's filters come from and how they are shaped: the monitor's ``filters`` step quantity
    (see :mod:`nbdiag.quantity`).

    Attributes:
        layer: the module's name.
        shape: (channels kept, kh, kw) of one filter.
        weight: the conv's weight parameter (None once the monitor is closed).
    """

    layer: str
    shape: tuple[int, int, int]
    weight: torch.Tensor | None
    kind = GROUP

    @property
    def names(self) -> list[str]:
        count = 0 if self.weight is None else min(self.weight.shape[0], MAX_FILTERS)
        return [f"{self.layer}[{i}]" for i in range(count)]

    def rows(self) -> torch.Tensor:
        """(filters, C*kh*kw) detached device tensor of the kept weights (no host copy here)."""
        channels = self.shape[0]
        return self.weight.detach()[:MAX_FILTERS, :channels].reshape(min(len(self.weight), MAX_FILTERS), -1)

    def capture(self) -> tuple[list[str], torch.Tensor] | None:
        """``(filter names, rows())`` for this step; None once released."""
        return None if self.weight is None else (self.names, self.rows())

    def block(self, names: list[str], values: np.ndarray) -> Block:
        """The record block of the host copy."""
        return filters_block(names, values)

    def release(self) -> None:
        """Drop the weight (the monitor closes)."""
        self.weight = None

    def meta(self) -> FilterMeta:
        """What views need to draw the filters (kept in ``record.meta.filters``)."""
        trainable = self.weight is not None and self.weight.requires_grad
        return FilterMeta(self.layer, self.shape, trainable)


def first_filters(model: nn.Module) -> FirstFilters | None:
    """The first ``nn.Conv2d`` of ``model`` (definition order), or None when it has none.

    Its weight as stored (:func:`nbdiag.stored.stored_tensor`): a spectral-normed conv shows its unnormalized
    original, because reading ``module.weight`` would run the parametrization (and step its power iteration).
    """
    for name, module in model.named_modules():
        weight = stored_tensor(module) if isinstance(module, nn.Conv2d) else None
        if weight is not None and weight.ndim == 4:
            _, channels, kh, kw = weight.shape
            kept = max(1, min(channels, MAX_WEIGHTS // (kh * kw)))
            return FirstFilters(name or type(module).__name__, (kept, kh, kw), weight)
    return None


def filters_block(names: list[str], values: np.ndarray) -> Block:
    """The record block of a flushed filters group."""
    return Block(tuple(names), tuple(f"w{j}" for j in range(values.shape[1])), values)


def filter_images(block: Block, shape: tuple[int, int, int]) -> np.ndarray:
    """(filters, C, kh, kw) float64 weights of a ``filters`` block."""
    return block.values.reshape(len(block.layers), *shape)
