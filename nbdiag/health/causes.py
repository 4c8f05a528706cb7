"""A finding whose cause is another finding defers to it: the consequence becomes a note that names its cause.

seeds/004 (CS231n lecture 5), weight initialization: with std 1 every tanh saturates and "the gradient becomes 0",
so the weights barely move; that tiny update/weight ratio is a consequence of saturation, not of a learning rate
that is too low. Likewise a loss that stalls because the units are dead or saturated (seeds/002, activation
functions). Raising the learning rate would not fix either; the cause's advice would.
"""

from __future__ import annotations

import dataclasses

from nbdiag.findings import SEVERITY_RANK, Finding

CAUSES = ("act.saturation", "act.dead_units", "act.collapse", "train.vanishing_gradients")
# cause id -> why it explains a consequence
WHY = {
    "act.saturation": "saturated units pass almost no gradient",
    "act.dead_units": "dead units pass no gradient",
    "act.collapse": "collapsed activations carry almost no signal",
    "train.vanishing_gradients": "the gradient vanishes before it reaches the first layers",
}


def _is_consequence(finding: Finding) -> bool:
    if finding.id == "train.update_ratio":
        return finding.evidence.get("median_ratio", 1.0) < 1e-3  # too small updates, not too large ones
    return finding.id == "train.stalled"


def defer(findings: list[Finding]) -> list[Finding]:
    """``findings`` with each consequence (tiny updates, a stalled loss) turned into an ``info`` note that names its
    cause, when a cause (saturation, dead units, collapse, vanishing gradients) is reported at warn or fail."""
    causes = [f for f in findings if f.id in CAUSES and SEVERITY_RANK[f.severity] <= SEVERITY_RANK["warn"]]
    if not causes:
        return findings
    cause = min(causes, key=lambda f: (SEVERITY_RANK[f.severity], CAUSES.index(f.id)))
    where = f" at layer {cause.layer}" if cause.layer else ""
    note = f"; most likely a consequence of {cause.id}{where} ({WHY[cause.id]}): fix that first"
    return [
        dataclasses.replace(f, severity="info", message=f.message + note, evidence={**f.evidence, "cause": cause.id})
        if _is_consequence(f)
        else f
        for f in findings
    ]
