"""Frozen layers still at their random init (:mod:`nbdiag.frozen_init`), found once when the monitor attaches:
a quantity with no block, only ``record.meta.frozen_at_init``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nbdiag.frozen_init import FrozenAtInit, frozen_at_init
from nbdiag.quantities.base import Quiet


class FrozenAtInitLayers(Quiet):
    """Layers frozen at their random init that the optimizer does not hold either: a fine-tune that froze an
    untrained layer. A layer the optimizer holds may be unfrozen later (a freezing schedule); without an
    optimizer nbdiag cannot tell, and says nothing."""

    kind = "frozen_at_init"

    def __init__(self, model: nn.Module, optimizer: Any) -> None:
        self.layers = tuple(_frozen_outside_optimizer(model, optimizer))

    def meta(self) -> dict[str, Any]:
        return {"frozen_at_init": self.layers}


def _frozen_outside_optimizer(model: nn.Module, optimizer: Any) -> list[FrozenAtInit]:
    if not isinstance(optimizer, torch.optim.Optimizer):
        return []
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    modules = dict(model.named_modules())
    return [
        layer
        for layer in frozen_at_init(model)
        if not any(id(p) in held for p in modules.get(layer.layer, nn.Module()).parameters(recurse=False))
    ]
