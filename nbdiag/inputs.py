"""What the model sees: a few samples of the tensor entering ``model.forward`` on sampled steps.

Karpathy's recipe, 2: "visualize just before the net" (the data and labels as the tensor holds them). A forward
pre-hook on the root module, attached only on sampled steps, keeps a detached view of the first ``MAX_SAMPLES``
samples of the first training forward of the step (at most ``MAX_VALUES`` values each, a small device copy);
the flush copies it with
the step's statistics (one buffer group, the same single device→host copy) into an ``inputs`` block, and the view
is dropped. Off by default when the monitor writes a run directory (``watch(..., inputs=True)`` turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from nbdiag.probe import in_backward, under_transform
from nbdiag.record import Block

GROUP = "inputs"
MAX_SAMPLES = 8
MAX_VALUES = 3 * 32 * 32  # per sample: a CIFAR-sized image whole; longer inputs keep their first values


class InputSampler:
    """The root forward pre-hook of sampled steps and the sample it took (None once flushed)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.sample: torch.Tensor | None = None
        self.shape: tuple[int, ...] = ()
        self.dtype = ""
        self._handle: Any = None

    def attach(self) -> None:
        if self._handle is None:  # a global pre-hook filtered to the model: a deep copy never inherits it
            self._handle = register_module_forward_pre_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: tuple) -> None:
        try:
            if module is not self.model or self.sample is not None or not torch.is_grad_enabled():
                return
            x = args[0] if args else None
            if not isinstance(x, torch.Tensor) or x.ndim < 1 or under_transform(x) or in_backward():
                return
            rows = x.detach()[:MAX_SAMPLES]
            self.shape, self.dtype = tuple(rows.shape[1:]), str(rows.dtype).replace("torch.", "")
            self.sample = rows.reshape(len(rows), -1)[:, :MAX_VALUES].clone()  # small; the batch is not kept
        except Exception:  # noqa: BLE001 - never break the user's forward
            self.sample = None

    def take(self) -> torch.Tensor | None:
        """The sample of this step (and forget it)."""
        sample, self.sample = self.sample, None
        return sample


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
    meta = record.meta.get("inputs") or {}
    for entry in reversed(record.entries()):
        block = entry.blocks.get(GROUP)
        if block is not None and meta:
            shape, dtype = tuple(meta["shape"]), meta["dtype"]
            values = block.values
            if int(np.prod(shape)) == values.shape[1]:
                values = values.reshape(len(values), *shape)
            return InputSample(entry.step, values, input_kind(shape, dtype), dtype)
    return None
