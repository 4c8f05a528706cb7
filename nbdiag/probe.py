"""Find and name a model's layers, flatten their outputs, and own the hook handles (removal is idempotent)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from nbdiag.sharding import wrapper_free_type


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

# Modules recorded as one unit although they have children: their children are never called as modules
# (MultiheadAttention computes with out_proj's weights inside F.multi_head_attention_forward).
RECORDED_UNITS = (nn.MultiheadAttention,)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) per recorded module in ``named_modules`` order; a module registered twice keeps its first name.

    Recorded: leaf modules, :data:`RECORDED_UNITS` (whose children are then skipped), and modules whose only children
    are helpers that compute no activation: ``torch.nn.utils.parametrize`` parametrizations (weight/spectral norm:
    the Linear or Conv is recorded, the parametrization, which computes a weight, is not) and ``torch.ao``
    quantization fake-quantizers and observers (a QAT ``Linear`` is recorded, its ``weight_fake_quant`` is not). A
    QAT module that computes with weights of its own beside a child layer (fused ``ConvBnReLU2d`` with its ``bn``)
    is recorded too. Reshape-only modules (:data:`RESHAPE_ONLY`) are left out: their rows would repeat the previous
    layer's.
    """
    leaves, seen, inside = [], set(), set()
    for name, module in model.named_modules():
        if id(module) in seen or id(module) in inside:
            continue
        seen.add(id(module))
        helpers = _skipped_children(module)
        children = _own_children(module, helpers)
        computes = not children or (helpers and any(True for _ in module.parameters(recurse=False)))
        if isinstance(module, RECORDED_UNITS) or (computes and not isinstance(module, RESHAPE_ONLY)):
            leaves.append((name or type(model).__name__, module))
        inside.update(id(m) for child in helpers for m in child.modules())
    return leaves


def layer_type(module: nn.Module) -> str:
    """The class name users wrote: ``Linear`` for a parametrized Linear (torch renames it ``ParametrizedLinear``) and
    for FSDP2's ``FSDPLinear``."""
    cls = wrapper_free_type(type(module))
    if parametrize.is_parametrized(module) and cls.__name__.startswith("Parametrized") and cls.__bases__:
        cls = cls.__bases__[0]
    return cls.__name__


def _own_children(module: nn.Module, helpers: list[nn.Module]) -> list[nn.Module]:
    """Children that are layers: without the ``helpers`` (see :func:`_skipped_children`)."""
    skipped = {id(m) for m in helpers}
    return [child for child in module.children() if id(child) not in skipped]


def _skipped_children(module: nn.Module) -> list[nn.Module]:
    """Children never recorded: all of a :data:`RECORDED_UNITS`' children, a parametrized module's
    ``parametrizations``, quantization fake-quantizers and observers."""
    if isinstance(module, RECORDED_UNITS):
        return list(module.children())
    helpers = [module.parametrizations] if parametrize.is_parametrized(module) else []
    return helpers + [child for child in module.children() if is_quantization_helper(child)]


def is_quantization_helper(module: nn.Module) -> bool:
    """A ``torch.ao.quantization`` fake-quantizer or observer (QAT): it shadows a layer's weight or output, it is
    not a layer (checked by class name, so ``torch.ao`` is never imported for it)."""
    return any(
        cls.__name__ in ("FakeQuantizeBase", "ObserverBase") and cls.__module__.startswith("torch.ao.quantization")
        for cls in type(module).__mro__
    )


def module_outputs(module: nn.Module, output: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) per floating tensor of a module's output, named as users read them: MultiheadAttention's
    ``(attn_output, attn_weights)`` is the layer itself (path "") and ``/weights``."""
    if isinstance(module, nn.MultiheadAttention) and isinstance(output, tuple):
        yield from iter_tensors(output[0])
        if len(output) > 1:
            yield from iter_tensors(output[1], "/weights")
        return
    yield from iter_tensors(output)


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


def first_tensor(output: Any) -> torch.Tensor:
    """The model's prediction: the output itself, or the first floating tensor inside a tuple/list/dict/dataclass.

    Raises:
        TypeError: the output holds no floating tensor.
    """
    if isinstance(output, torch.Tensor):
        return output
    for _, tensor in iter_tensors(output):
        return tensor
    raise TypeError(f"got model output of type {type(output).__name__}, expected a tensor or a tuple/dict of them")


def under_transform(output: Any) -> bool:
    """Whether a hook runs inside a ``torch.func`` transform (vmap, grad, jvp, ...): a transform level is active, or
    the output holds functorch-wrapped tensors. Reducing such a tensor would be traced by the transform (vmap
    refuses the histogram's ``scatter_add_``), and per-sample values are not the layer's batch statistics."""
    if torch._C._functorch.maybe_current_level() is not None:
        return True
    return any(torch._C._functorch.is_functorch_wrapped_tensor(t) for _, t in iter_tensors(output))


def in_backward() -> bool:
    """Whether the autograd engine is running a backward pass on this thread: a forward hook that fires then sees
    activation checkpointing recompute the forward (``torch.utils.checkpoint``, reentrant or not)."""
    return torch._C._current_graph_task_id() != -1


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


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
