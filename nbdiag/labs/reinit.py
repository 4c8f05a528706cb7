"""Re-initialize a model's Linear/Conv layers by a scheme, optionally zeroing each residual block's last layer.

seeds/002 "Residual Network initialization": He-init the first conv of a block and zero the last one, so
Var(x + F(x)) = Var(x) at the start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from nbdiag.labs.schemes import canonical_scheme, init_weight_

KEEP = "current"  # the scheme name that keeps the model's own weights (a baseline to compare against)
WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_BLOCK_NAME = re.compile(r"block|bottleneck|residual", re.IGNORECASE)
SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "proj", "projection")


@torch.no_grad()
def reinit_(
    model: nn.Module, scheme: str | float, seed: int = 0, zero_init_residual: bool | Iterable[str] = False
) -> nn.Module:
    """Re-initialize ``model`` in place: Linear/Conv weights by ``scheme``, their biases to zero.

    Args:
        model: the module to change (pass a copy to keep the original).
        scheme: a scheme of :func:`nbdiag.labs.schemes.canonical_scheme`, or "current" to keep the weights.
        seed: seed of the generator the weights are drawn from (the global RNG is not used).
        zero_init_residual: True zeroes the last layer of each residual block (see :func:`residual_last_layers`);
            an iterable of module names zeroes those modules' weights instead.

    Returns:
        ``model``.
    """
    if scheme != KEEP:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        canonical_scheme(scheme)  # fail before changing anything
        for module in model.modules():
            if isinstance(module, WEIGHTED) and module.weight is not None:
                weight = torch.empty(module.weight.shape)  # drawn on the CPU: same numbers on every device
                module.weight.copy_(init_weight_(weight, scheme, generator))
                if module.bias is not None:
                    module.bias.zero_()
    for module in _zero_targets(model, zero_init_residual):
        module.weight.zero_()
    return model


def _zero_targets(model: nn.Module, zero_init_residual: bool | Iterable[str]) -> list[nn.Module]:
    if zero_init_residual is True:
        return residual_last_layers(model)
    if zero_init_residual is False:
        return []
    modules = dict(model.named_modules())
    names = list(zero_init_residual)
    missing = [name for name in names if name not in modules or getattr(modules[name], "weight", None) is None]
    if missing:
        raise ValueError(
            f"got zero_init_residual names {missing} without a weight; expected names from model.named_modules()"
        )
    return [modules[name] for name in names]


def residual_last_layers(model: nn.Module) -> list[nn.Module]:
    """The last weighted layer (Linear, Conv or an affine norm) of each innermost residual block.

    A residual block is a module whose class name contains Block, Bottleneck or Residual (torchvision's
    BasicBlock/Bottleneck, most timm and hand-written blocks). Layers under a child named downsample, shortcut,
    skip, proj or projection are the identity path and never chosen. Zeroing a trailing norm's scale (as
    torchvision does) or the last conv (as the lecture does) both make the block start as the identity.
    """
    blocks = [m for m in model.modules() if _BLOCK_NAME.search(type(m).__name__)]
    innermost = [b for b in blocks if not any(o is not b and _BLOCK_NAME.search(type(o).__name__) for o in b.modules())]
    targets = []
    for block in innermost:
        candidates = [
            module
            for name, module in block.named_modules()
            if isinstance(module, (*WEIGHTED, *_NORMS))
            and getattr(module, "weight", None) is not None
            and not any(part in SHORTCUT_NAMES for part in name.split("."))
        ]
        if candidates:
            targets.append(candidates[-1])
    return targets
