"""Find and name a model's layers, flatten their outputs, and own the hook handles (removal is idempotent)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose layers the user wrote: strips DDP/DataParallel ``.module`` and ``torch.compile``'s wrapper."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def unwrap_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside wrappers that hold it as ``.optimizer``: Accelerate's ``AcceleratedOptimizer``
    (an ``Optimizer`` subclass that never ran ``Optimizer.__init__``), Lightning's ``LightningOptimizer``, ...

    Optimizers that did run ``Optimizer.__init__`` and step their own shard (``ZeroRedundancyOptimizer``) are kept:
    their step hooks see every parameter.
    """
    seen = {id(optimizer)}
    while True:
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or id(inner) in seen:
            return optimizer
        seen.add(id(inner))
        optimizer = inner


def can_hook_steps(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``register_step_pre_hook`` works: ``Optimizer.__init__`` ran (it creates the hook dicts)."""
    return hasattr(optimizer, "_optimizer_step_pre_hooks") and hasattr(optimizer, "_optimizer_step_post_hooks")


def is_compiled(model: nn.Module) -> bool:
    """True for a ``torch.compile``d module (or one wrapping a compiled module)."""
    while True:
        if hasattr(model, "_orig_mod"):
            return True
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return False


# Modules whose output holds exactly their input's values: recording them would repeat the previous row.
RESHAPE_ONLY = (nn.Flatten, nn.Unflatten, nn.Identity)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) per leaf module in ``named_modules`` order; a module registered twice keeps its first name.

    Reshape-only modules (:data:`RESHAPE_ONLY`) are left out: their rows would repeat the previous layer's.
    """
    leaves, seen = [], set()
    for name, module in model.named_modules():
        if id(module) in seen or next(module.children(), None) is not None or isinstance(module, RESHAPE_ONLY):
            continue
        seen.add(id(module))
        leaves.append((name or type(model).__name__, module))
    return leaves


def named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Floating-point parameters, tied ones once (under their first name)."""
    return [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]


def iter_tensors(output: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (path, tensor) for each floating tensor in a module output: tensors, tuples, lists, dicts, dataclasses.

    A bare tensor has path ""; nested items get "/0", "/h", ... so names stay readable (``lstm/1/0``).
    """
    if isinstance(output, torch.Tensor):
        if output.is_floating_point():
            yield path, output
    elif isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            yield from iter_tensors(item, f"{path}/{i}")
    elif isinstance(output, dict):
        for key, item in output.items():
            yield from iter_tensors(item, f"{path}/{key}")
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        for f in dataclasses.fields(output):
            yield from iter_tensors(getattr(output, f.name), f"{path}/{f.name}")


class Hooks:
    """A set of removable hook handles. ``remove()`` is idempotent; also a context manager."""

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def add(self, handle: Any) -> None:
        self._handles.append(handle)

    def register_forward(self, modules: list[tuple[str, nn.Module]], hook: Callable) -> None:
        """``hook(name, module, inputs, output)`` after each module's forward."""
        for name, module in modules:
            self.add(module.register_forward_hook(named_hook(hook, name)))

    def __len__(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def named_hook(hook: Callable, name: str) -> Callable:
    """A forward hook that calls ``hook(name, module, inputs, output)``; torch.compile runs it eagerly."""

    @torch.compiler.disable
    def forward_hook(module: nn.Module, inputs: Any, output: Any) -> None:
        hook(name, module, inputs, output)

    return forward_hook
