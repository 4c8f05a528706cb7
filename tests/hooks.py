"""Count the hooks left on a model and its optimizer (nbdiag must leave none after close or a failed attach).

nbdiag's module and optimizer hooks are torch's global ones (filtered to the watched model by identity, so a deep
copy never inherits them): they are counted too.
"""

from __future__ import annotations

import gc
from typing import Any

from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks


def hook_count(model: nn.Module, optimizer: Any = None) -> int:
    """Forward (pre-)hooks on every module, tensor and post-accumulate hooks on every parameter, step hooks."""
    count = 0
    for module in model.modules():
        count += len(module._forward_hooks) + len(module._forward_pre_hooks)
        count += len(module._backward_hooks) + len(module._backward_pre_hooks)
    for p in model.parameters():
        count += len(getattr(p, "_post_accumulate_grad_hooks", None) or {}) + len(p._backward_hooks or {})
    count += global_hook_count()
    if optimizer is not None:
        count += len(getattr(optimizer, "_optimizer_step_pre_hooks", {}))
        count += len(getattr(optimizer, "_optimizer_step_post_hooks", {}))
    return count


def global_hook_count() -> int:
    """Process-wide module forward (pre-)hooks and optimizer step pre/post hooks (after a garbage collection, so a
    monitor an earlier test dropped unclosed has detached its hooks)."""
    gc.collect()
    return (
        len(module_hooks._global_forward_hooks)
        + len(module_hooks._global_forward_pre_hooks)
        + len(optimizer_hooks._global_optimizer_pre_hooks)
        + len(optimizer_hooks._global_optimizer_post_hooks)
    )
