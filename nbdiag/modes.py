"""Which modules compute differently in train and eval mode (dropout, batch norm), and which mode they are in."""

from __future__ import annotations

import numpy as np
from torch import nn

MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def mode_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The dropout and (not frozen) batch-norm modules of ``model``, whose mode must follow the phase."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, MODE_DEPENDENT):
            continue
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            continue
        found.append((name or type(module).__name__, module))
    return found


def training_flags(modules: list[tuple[str, nn.Module]]) -> np.ndarray:
    """(len(modules), 1) float64: 1.0 where a module is in train mode."""
    return np.array([[float(module.training)] for _, module in modules], dtype=np.float64).reshape(-1, 1)
