"""Preflight: frozen layers still at their random initialization (see :mod:`nbdiag.frozen_init`)."""

from __future__ import annotations

from torch import nn

from nbdiag.findings import Finding
from nbdiag.frozen_init import frozen_at_init
from nbdiag.health.frozen import frozen_init_finding


def check_frozen_init(model: nn.Module) -> list[Finding]:
    """Frozen layers that were never trained (``model.frozen``, warn); a frozen trained backbone passes.

    Args:
        model: the model (only read).

    Returns:
        At most one finding.
    """
    layers = frozen_at_init(model)
    return [frozen_init_finding(layers)] if layers else []
