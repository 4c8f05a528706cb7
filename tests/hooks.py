"""Count the hooks left on a model and its optimizer (nbdiag must leave none after close or a failed attach)."""

from __future__ import annotations

from typing import Any

from torch import nn


def hook_count(model: nn.Module, optimizer: Any = None) -> int:
    """Forward (pre-)hooks on every module, tensor and post-accumulate hooks on every parameter, step hooks."""
    count = 0
    for module in model.modules():
        count += len(module._forward_hooks) + len(module._forward_pre_hooks)
        count += len(module._backward_hooks) + len(module._backward_pre_hooks)
    for p in model.parameters():
        count += len(getattr(p, "_post_accumulate_grad_hooks", None) or {}) + len(p._backward_hooks or {})
    if optimizer is not None:
        count += len(getattr(optimizer, "_optimizer_step_pre_hooks", {}))
        count += len(getattr(optimizer, "_optimizer_step_post_hooks", {}))
    return count
