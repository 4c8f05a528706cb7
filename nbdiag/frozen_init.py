"""Frozen layers still at their random initialization: ``requires_grad=False`` on weights nobody trained.

A frozen *trained* backbone (fine-tuning) is deliberate; a frozen layer that still holds PyTorch's default random
init is a bug, since training cannot improve a random projection. PyTorch initializes ``Linear`` and ``ConvNd``
weights and biases from U(-b, b) with b = 1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)); such weights lie
inside the bound with a std of b/sqrt(3). Training moves weights out of that shape, so a frozen layer whose
weights still fit it is taken to be untrained. Source: 37 reasons, 3.8 "layers frozen by accident".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nbdiag.stored import stored_tensor

INIT_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
STD_TOLERANCE = 0.15  # std within 15% of b/sqrt(3) (sampling error is ~1% for 1,000 weights)
BOUND_SLACK = 1e-6
MIN_WEIGHTS = 64  # fewer weights cannot tell an init apart from a trained layer


@dataclass(frozen=True)
class FrozenAtInit:
    """A frozen layer whose weights match PyTorch's default init."""

    layer: str
    kind: str
    bound: float
    std: float
    expected_std: float


@torch.no_grad()
def frozen_at_init(model: nn.Module) -> list[FrozenAtInit]:
    """The ``Linear``/``ConvNd`` layers of ``model`` whose parameters are all frozen and still look like PyTorch's
    default init (every |w| <= 1/sqrt(fan_in), std within ``STD_TOLERANCE`` of 1/sqrt(3 fan_in))."""
    found = []
    for name, module in model.named_modules():
        weight = stored_tensor(module) if isinstance(module, INIT_TYPES) else None  # never runs a parametrization
        if weight is None or weight.numel() < MIN_WEIGHTS:
            continue
        if weight.requires_grad or any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in)
        values = weight.detach().float()
        std, peak = float(values.std()), float(values.abs().max())
        expected = bound / math.sqrt(3)
        if peak <= bound * (1 + BOUND_SLACK) and abs(std - expected) <= STD_TOLERANCE * expected:
            found.append(FrozenAtInit(name or type(module).__name__, type(module).__name__, bound, std, expected))
    return found
