"""What a monitor watches, decided once when it attaches: the optimizer it can hook, the parameters that optimizer
holds, whether activations are recorded (not by default on a compiled model), the layers left out."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from nbdiag.errors import NbdiagWarning
from nbdiag.probe import RESHAPE_ONLY, can_hook_steps, is_compiled

_COMPILED_PARAMS_ONLY = (
    "the model is torch.compile'd, so nbdiag records parameters only (weights, gradients, update ratios): hooks "
    "inside the compiled region would break its graph at every layer, and torch.compile keeps running that broken "
    "graph on unsampled steps too (it does not guard on module hooks). Pass activations=True to also record "
    "activations and output gradients at that cost (benchmarks/compile_overhead.py), or watch an uncompiled copy."
)
_COMPILED_ACTIVATIONS = (
    "the model is torch.compile'd and activations=True: nbdiag's forward hooks run eagerly, so the compiled model "
    "breaks into one graph per layer, on unsampled steps too (torch.compile does not guard on module hooks). Call "
    "watch before the compiled model first runs: hooks added after its first compile are never called."
)


def records_activations(model: nn.Module, activations: bool | None) -> bool:
    """Whether forward hooks are used: by default not on a compiled model (a warning says why and what it costs)."""
    compiled = is_compiled(model)
    if compiled and activations is None:
        warnings.warn(_COMPILED_PARAMS_ONLY, NbdiagWarning, stacklevel=4)
    elif compiled and activations:
        warnings.warn(_COMPILED_ACTIVATIONS, NbdiagWarning, stacklevel=4)
    return not compiled if activations is None else activations


def check_inputs(model: Any, optimizer: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"nbdiag.watch expects a torch.nn.Module, got {type(model).__name__}; pass the model itself, "
            "e.g. watch(model, optimizer)"
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}; "
            "e.g. watch(model, torch.optim.SGD(model.parameters(), lr=0.1))"
        )


def usable_optimizer(optimizer: Any) -> Any:
    """The optimizer, or None (with a warning) for an ``Optimizer`` whose step hooks cannot be registered."""
    if isinstance(optimizer, torch.optim.Optimizer) and not can_hook_steps(optimizer):
        warnings.warn(
            f"{type(optimizer).__name__} never ran torch.optim.Optimizer.__init__, so its steps cannot be hooked: "
            "update/weight ratios are not recorded and gradients are read as they accumulate. Pass the optimizer "
            "it wraps, e.g. watch(model, wrapped.optimizer)",
            NbdiagWarning,
            stacklevel=4,
        )
        return None
    return optimizer


def reshape_only(model: nn.Module) -> dict[str, str]:
    """Layer name -> type of the reshape-only leaves that are not recorded (their rows would repeat the input's)."""
    return {name: type(m).__name__ for name, m in model.named_modules() if name and isinstance(m, RESHAPE_ONLY)}


def tracked_params(params: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer | None):
    if optimizer is None:
        return []
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    tracked = [(n, p) for n, p in params if id(p) in in_optimizer]
    if not tracked:
        warnings.warn(
            "the optimizer holds none of the model's parameters, so update/weight ratios are not recorded; "
            "expected an optimizer built from model.parameters()",
            NbdiagWarning,
            stacklevel=5,
        )
    return tracked
