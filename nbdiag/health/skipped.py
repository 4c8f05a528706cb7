"""What nbdiag chose not to record, said once (``record.meta.skipped``): monitor.calls_skipped (info)."""

from __future__ import annotations

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import Window
from nbdiag.meta import TRANSFORM_CALLS


def calls_skipped(window: Window) -> list[Finding]:
    """monitor.calls_skipped (info): forward calls inside ``torch.func`` transforms were left unrecorded."""
    skipped = window.record.meta.skipped
    if TRANSFORM_CALLS not in skipped:
        return []
    step = skipped[TRANSFORM_CALLS]
    message = (
        f"from step {step} on, some forward calls ran inside torch.func transforms (vmap / grad / jvp: per-sample "
        "gradients, DP-SGD, model ensembles) and were not recorded: their tensors are per-sample and traced by the "
        "transform. The model's normal forward and backward passes are recorded as usual"
    )
    return [make_finding("monitor.calls_skipped", "info", message, step=step, evidence={"first_step": step})]
