"""Which modules compute differently in train and eval mode (dropout, batch norm), and which mode they are in."""

from __future__ import annotations

import weakref

import numpy as np
from torch import nn

MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)

# module -> weak references to the modules that hold it (its ancestors), for the modules mode_modules returned.
# Containers (ModuleDict, ModuleList: nbdiag wraps a GAN's G and D in a ModuleDict) compute nothing: not ancestors.
_ANCESTORS: weakref.WeakKeyDictionary[nn.Module, list[weakref.ref]] = weakref.WeakKeyDictionary()
CONTAINERS = (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList)


def mode_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The dropout and (not frozen) batch-norm modules of ``model``, whose mode must follow the phase."""
    found = []
    parents = {id(child): parent for parent in model.modules() for child in parent.children()}
    for name, module in model.named_modules():
        if not isinstance(module, MODE_DEPENDENT):
            continue
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            continue
        _ANCESTORS[module] = [weakref.ref(ancestor) for ancestor in _ancestors(module, parents)]
        found.append((name or type(module).__name__, module))
    return found


def _ancestors(module: nn.Module, parents: dict[int, nn.Module]) -> list[nn.Module]:
    found, current = [], parents.get(id(module))
    while current is not None:
        if not isinstance(current, CONTAINERS):
            found.append(current)
        current = parents.get(id(current))
    return found


def follows_training(module: nn.Module) -> bool:
    """Whether ``module`` computes as in training: it is in train mode, or it was put in eval mode on its own inside
    a module that trains. The latter is deliberate: QAT's ``freeze_bn_stats`` sets a fused module's batch norm to
    eval and leaves the fused module training; fine-tuning often freezes batch-norm statistics with
    ``model.train(); model.backbone.bn.eval()``. A model put in eval mode as a whole (``model.eval()``, or
    ``model.train()`` forgotten after validation) has every ancestor in eval mode too."""
    if module.training:
        return True
    ancestors = (ref() for ref in _ANCESTORS.get(module, ()))
    return any(ancestor is not None and ancestor.training for ancestor in ancestors)


def training_flags(modules: list[tuple[str, nn.Module]]) -> np.ndarray:
    """(len(modules), 1) float64: 1.0 where a module follows the training phase (see :func:`follows_training`)."""
    return np.array([[float(follows_training(module))] for _, module in modules], dtype=np.float64).reshape(-1, 1)
