"""Non-finite rule (train.nonfinite): where NaN/Inf first appeared, as the monitor noted it.

Source: seeds/003 (37 reasons) 4.11 "if NaN appears ... check layer by layer where it first occurs".
"""

from __future__ import annotations

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import Window


def nonfinite(window: Window) -> list[Finding]:
    """train.nonfinite (fail): the first tensor in forward order at the first step that held NaN/Inf."""
    found = window.record.first_nonfinite
    if found is None:
        return []
    return [
        make_finding(
            "train.nonfinite",
            "fail",
            f"{found.count:.0f} non-finite values in the {found.kind} of {window.label(found.layer)} at step "
            f"{found.step} (first tensor in forward order)",
            layer=found.layer,
            step=found.step,
            evidence={"count": found.count, "kind": found.kind},
        )
    ]
