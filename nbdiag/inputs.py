"""What the model sees: the ``inputs`` block read back as a few samples of the tensor entering ``model.forward``.

Karpathy's recipe, 2: "visualize just before the net" (the data and labels as the tensor holds them). The kind is
recorded by :class:`nbdiag.quantities.inputs.Inputs` (a root forward pre-hook on sampled steps; at most
``MAX_SAMPLES`` samples of at most ``MAX_VALUES`` values, riding the step's one device→host copy). Off by default
when the monitor writes a run directory (``watch(..., inputs=True)`` turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nbdiag.record import Block

GROUP = "inputs"
MAX_SAMPLES = 8
MAX_VALUES = 3 * 32 * 32  # per sample: a CIFAR-sized image whole; longer inputs keep their first values


def inputs_block(names: list[str], values: np.ndarray) -> Block:
    """The record block of a flushed inputs group."""
    return Block(tuple(names), tuple(f"x{j}" for j in range(values.shape[1])), values)


@dataclass(frozen=True)
class InputSample:
    """A few samples of what entered the model at ``step``, with what kind of input they look like.

    Attributes:
        step: the sampled step.
        values: (samples, ...) the values in their original shape (cropped to ``MAX_VALUES`` per sample).
        kind: 'images' (N, C, H, W with C in 1, 3, 4), 'images (channels last)', 'token ids' (integers) or 'tabular'.
        dtype: the input's dtype.
    """

    step: int
    values: np.ndarray
    kind: str
    dtype: str

    @property
    def value_range(self) -> tuple[float, float]:
        return float(np.nanmin(self.values)), float(np.nanmax(self.values))

    def features(self) -> pd.DataFrame:
        """Per feature (flattened), the mean and std over the samples: a tabular input's scale at a glance."""
        flat = self.values.reshape(len(self.values), -1)
        return pd.DataFrame({"mean": flat.mean(axis=0), "std": flat.std(axis=0)}).rename_axis("feature")

    def __str__(self) -> str:
        low, high = self.value_range
        head = f"inputs @ step {self.step}: {len(self.values)} samples of shape {self.values.shape[1:]} ({self.dtype})"
        return f"{head}, looks like {self.kind}, values in [{low:.4g}, {high:.4g}]"


def input_kind(shape: tuple[int, ...], dtype: str) -> str:
    """Guess the kind of input from one sample's shape and the dtype."""
    if "int" in dtype or dtype == "bool":
        return "token ids"
    if len(shape) == 3 and shape[0] in (1, 3, 4):
        return "images"
    if len(shape) == 3 and shape[-1] in (1, 3, 4):
        return "images (channels last)"
    return "tabular"


def latest_sample(record: Any) -> InputSample | None:
    """The newest ``inputs`` block of ``record`` as an :class:`InputSample` (None when nothing was sampled)."""
    meta = record.meta.inputs
    for entry in reversed(record.entries()):
        block = entry.blocks.get(GROUP)
        if block is not None and meta is not None:
            shape, dtype = meta.shape, meta.dtype
            values = block.values
            if int(np.prod(shape)) == values.shape[1]:
                values = values.reshape(len(values), *shape)
            return InputSample(entry.step, values, input_kind(shape, dtype), dtype)
    return None
