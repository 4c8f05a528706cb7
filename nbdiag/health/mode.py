"""Train/eval mode, live: dropout or batch norm in eval mode while the optimizer steps, or in train mode while the
model is validated.

The monitor writes, at every sampled step, a ``mode`` block (stat ``training``: 1 in train mode, 0 in eval mode)
over the modules whose mode changes what they compute and that are meant to train: every dropout, and batch norms
that have a trainable parameter (a frozen batch norm kept in eval mode is a deliberate fine-tuning choice). Each
``mon.validate()`` call counts the same modules in train mode (``record.meta.validation_mode``).
Source: seeds/003 (37 reasons) 4.6 "train/test mode switching".
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import MIN_WINDOW_ENTRIES, Window, steps_text


def trained_in_eval_mode(window: Window) -> list[Finding]:
    """model.train_eval_mode (warn): modules in eval mode at every one of the last sampled training steps."""
    entries = [entry for entry in window.recent if "mode" in entry.blocks]
    if len(entries) < MIN_WINDOW_ENTRIES:
        return []
    layers = entries[-1].blocks["mode"].layers
    in_eval = np.ones(len(layers), dtype=bool)
    for entry in entries:
        block = entry.blocks["mode"]
        if block.layers != layers:
            return []
        in_eval &= block.values[:, 0] == 0
    if not in_eval.any():
        return []
    names = [layer for layer, bad in zip(layers, in_eval, strict=True) if bad]
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    message = (
        f"{len(names)} dropout/batch-norm layer(s) stayed in eval mode while training ({steps_text(entries)}): "
        f"{shown}; dropout is off and batch norm uses running statistics. Call model.train() before training"
    )
    evidence = {"layers": names, "sampled_steps": len(entries)}
    return [
        make_finding("model.train_eval_mode", "warn", message, layer=names[0], step=entries[-1].step, evidence=evidence)
    ]


def validated_in_train_mode(window: Window) -> list[Finding]:
    """model.train_eval_mode (warn): every ``mon.validate()`` call found dropout/batch norm in train mode."""
    seen = window.record.meta.validation_mode
    calls, in_train = seen.calls, seen.train_mode_calls
    if calls == 0 or in_train < calls:
        return []
    names = list(seen.layers)
    message = (
        f"at all {calls} mon.validate() call(s) the model's dropout/batch-norm layers were in train mode "
        f"({', '.join(names[:5])}): validation ran with dropout on and batch norm updating its statistics. "
        "Call model.eval() before evaluating (and validate() before switching back with model.train())"
    )
    evidence = {"validate_calls": calls, "train_mode_calls": in_train, "layers": names}
    layer = names[0] if names else None
    return [make_finding("model.train_eval_mode", "warn", message, layer=layer, evidence=evidence)]
