"""Kind ``dynamic_range``: how many binary orders of magnitude each layer's output spans, log2(amax / amin),
amin over the non-zero magnitudes.

This is what low-precision training watches: bf16 keeps 8 bits of mantissa over fp32's exponent range, fp8 E4M3
spans about 2^17.8 between its smallest subnormal and its largest value (448), E5M2 about 2^31.8; a tensor whose
range exceeds its format's flushes its small values to zero or overflows its large ones, even when scaled. NVIDIA
Transformer Engine's debug tools log the same statistic ("dynamic_range", log2(amax / amin) over non-zero |x|).

Device side: |x|'s max and its smallest non-zero value, two reductions in the tensor's own dtype (exact: max and
min need no rounding), into a fixed (2,) fp32 row; no host sync, no data-dependent shape. A layer called several
times in a step keeps the max of amax and the min of amin. Host side: the log2 of their ratio.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.quantities.base import Flushed, Quiet
from nbdiag.record import Block
from nbdiag.sharding import is_partial, local
from nbdiag.weights import stored_values

KIND = "dynamic_range"
PREFIX = KIND + ":"  # the buffer group of one layer
STATS = ("amax", "amin_nonzero", "log2_range")


@torch.no_grad()
def amax_amin(x: torch.Tensor) -> torch.Tensor:
    """(2,) fp32 on ``x``'s device: max |x| and the smallest non-zero |x| (+inf when every value is 0)."""
    magnitude = stored_values(x).abs()  # a new tensor: changed in place below, never the output itself
    amax = magnitude.amax().float()
    amin = magnitude.masked_fill_(magnitude == 0, float("inf")).amin().float()
    return torch.stack([amax, amin])


def _merge(held: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.maximum(held[0, 0], new[0, 0]), torch.minimum(held[0, 1], new[0, 1])]).reshape(1, 2)


class DynamicRange(Quiet):
    """``amax``, ``amin_nonzero`` and ``log2_range`` of each recorded layer's output (floating outputs only).

    ``amin_nonzero`` and ``log2_range`` are NaN for an output that is all zeros (``Block.optional``).
    """

    kind = KIND
    reads_outputs = True
    nonfinite = ()

    def __init__(self, buffer: StepBuffer) -> None:
        self.buffer = buffer

    def on_output(self, layer: str, module: nn.Module, tensor: torch.Tensor) -> None:
        if tensor.is_floating_point() and tensor.numel() > 0 and not is_partial(tensor):
            values = local(tensor)  # a DTensor's shard: max / min over ranks are the full tensor's
            if values.numel() > 0:
                self.buffer.accumulate(PREFIX + layer, [layer], amax_amin(values).reshape(1, 2), _merge)

    def block(self, step: int, flushed: Flushed) -> Block | None:
        groups = flushed.groups
        rows = [(name[len(PREFIX) :], values[0]) for name, (_, values) in groups.items() if name.startswith(PREFIX)]
        if not rows:
            return None
        amax, amin = np.array([r for _, r in rows], dtype=np.float64).T
        amin = np.where(np.isinf(amin), np.nan, amin)  # an all-zero output has no non-zero magnitude
        with np.errstate(divide="ignore", invalid="ignore"):
            log2_range = np.log2(amax / amin)
        values = np.stack([amax, amin, log2_range], axis=1)
        return Block(tuple(layer for layer, _ in rows), STATS, values, optional=("amin_nonzero", "log2_range"))
