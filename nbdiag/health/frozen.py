"""A frozen layer still at its random init, seen when the monitor attaches (``record.meta.frozen_at_init``,
measured once by ``watch()`` from the model's weights, see :mod:`nbdiag.frozen_init`): model.frozen (warn).
Source: 37 reasons, 3.8 "layers frozen by accident".
"""

from __future__ import annotations

from nbdiag.findings import Finding, make_finding
from nbdiag.frozen_init import FrozenAtInit
from nbdiag.health.window import Window


def frozen_init_finding(layers: list[FrozenAtInit]) -> Finding:
    """``model.frozen`` (warn) naming the frozen layers still at their random init."""
    first = layers[0]
    shown = ", ".join(f"{f.layer} ({f.kind})" for f in layers[:5]) + (", ..." if len(layers) > 5 else "")
    message = (
        f"{len(layers)} frozen layer(s) (requires_grad=False) still hold their random init: {shown}; e.g. "
        f"{first.layer}: every |w| <= 1/sqrt(fan_in) = {first.bound:.3g}, std {first.std:.3g} vs "
        f"{first.expected_std:.3g} "
        "for PyTorch's default init. Training cannot improve a random projection: load the pretrained weights "
        "before freezing, or let the layer train"
    )
    evidence = {"layers": [f.layer for f in layers], "bound": first.bound, "std": first.std}
    return make_finding("model.frozen", "warn", message, layer=first.layer, evidence=evidence)


def frozen_at_init_rule(window: Window) -> list[Finding]:
    """model.frozen (warn): layers that ``watch()`` found frozen at PyTorch's default init."""
    layers = list(window.record.meta.frozen_at_init)
    return [frozen_init_finding(layers)] if layers else []
