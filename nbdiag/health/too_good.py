"""Too good to be true, live: training AND held-out accuracy near 100% within the first steps (train.too_good).

A real task is rarely solved within a few dozen optimizer steps from a random init; when it is, the label often
leaks into the inputs, or "validation" accuracy is measured on training samples. Training accuracy alone cannot
tell: an easy task (the quickstart's CNN, a wide MLP on the 8x8 digits at lr 1e-2) reaches 98% batch accuracy by
step ~60, and a note that fires on every easy task teaches students to ignore the banner. So the rule speaks only
when two signals agree: the training accuracy near perfect (median of ``RUN_LENGTH`` steps at or above
``NEAR_PERFECT``) AND the held-out accuracy (``val_acc``, logged with ``mon.validate``) at or above
``HELD_OUT_NEAR_PERFECT``, both before step ``EARLY_STEPS``. A healthy digits run validates at 90-97% there. Even
then it is a note ('info'); the preflight check ``data.target_leak`` looks at the data and warns.
Source: seeds/001 (Karpathy, recipe) 1 "become one with the data" and 2 (verify the skeleton; be suspicious of
results); the same advice as the preflight check ``data.target_leak``.
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import Window

TRAIN_ACCURACY_NAMES = ("acc", "accuracy", "train_acc")
HELD_OUT_ACCURACY = "val_acc"
EARLY_STEPS = 100  # "the first steps": the zoo's clean digits MLP/CNN/LSTM setups are at 80-92% here
NEAR_PERFECT = 0.98
HELD_OUT_NEAR_PERFECT = 0.995  # held-out digits: 90-97% by step 100 in the eight notebooks' healthy runs
RUN_LENGTH = 5  # consecutive per-step accuracies (median) at or above NEAR_PERFECT; one lucky batch is not enough


def too_good(window: Window) -> list[Finding]:
    """train.too_good (info): a training accuracy scalar at >= ``NEAR_PERFECT`` and ``val_acc`` at >=
    ``HELD_OUT_NEAR_PERFECT``, both before step ``EARLY_STEPS``; silent without a held-out accuracy."""
    val_steps, val_values = window.record.scalar_series(HELD_OUT_ACCURACY)
    early_val = np.flatnonzero((val_steps < EARLY_STEPS) & (val_values >= HELD_OUT_NEAR_PERFECT))
    if not len(early_val):
        return []
    for name in TRAIN_ACCURACY_NAMES:
        steps, values = window.record.scalar_series(name)
        early = steps < EARLY_STEPS
        hit = _first_near_perfect(values[early])
        if hit is not None:
            step = max(int(steps[early][hit]), int(val_steps[early_val[0]]))
            val_acc = float(val_values[early_val[0]])
            message = (
                f"{name} reached {values[early][hit]:.1%} and val_acc {val_acc:.1%} by step {step}, within the "
                f"first {EARLY_STEPS} steps: too good to be true? Check for the label leaking into the inputs, or a "
                "validation set that holds training samples (nbdiag.preflight(..., val_data=...) checks both)"
            )
            evidence = {"scalar": name, "step": step, "value": float(values[early][hit]), "val_acc": val_acc}
            return [make_finding("train.too_good", "info", message, step=step, evidence=evidence)]
    return []


def _first_near_perfect(values: np.ndarray) -> int | None:
    """Index of the first value ending a run of ``RUN_LENGTH`` (median) at or above ``NEAR_PERFECT``."""
    for end in range(RUN_LENGTH, len(values) + 1):
        if np.median(values[end - RUN_LENGTH : end]) >= NEAR_PERFECT:
            return end - 1
    return None
