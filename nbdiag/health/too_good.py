"""Too good to be true, live: accuracy near 100% within the first steps of training (train.too_good).

A real task is rarely solved within a few dozen optimizer steps from a random init; when it is, the label often
leaks into the inputs, or accuracy is measured on training samples. An easy task (a wide MLP on the 8x8 digits
at lr 1e-2 reaches 98% batch accuracy by step ~60) looks the same from the curves alone, so this is a note
('info'); the preflight check ``data.target_leak`` looks at the data and warns. Judged on the logged accuracy scalars
(``acc``/``accuracy``/``train_acc``, per step, and ``val_acc``, at any cadence).
Source: seeds/001 (Karpathy, recipe) 1 "become one with the data" and 2 (verify the skeleton; be suspicious of
results); the same advice as the preflight check ``data.target_leak``.
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import Window

ACCURACY_NAMES = ("acc", "accuracy", "train_acc", "val_acc")
EARLY_STEPS = 100  # "the first steps": the zoo's clean digits MLP/CNN/LSTM setups are at 80-92% here
NEAR_PERFECT = 0.98
RUN_LENGTH = 5  # consecutive per-step accuracies (median) at or above NEAR_PERFECT; one lucky batch is not enough


def too_good(window: Window) -> list[Finding]:
    """train.too_good (info): an accuracy scalar at >= ``NEAR_PERFECT`` before step ``EARLY_STEPS``."""
    for name in ACCURACY_NAMES:
        steps, values = window.record.scalar_series(name)
        early = steps < EARLY_STEPS
        hit = _first_near_perfect(values[early], sparse=name == "val_acc")
        if hit is not None:
            step = int(steps[early][hit])
            message = (
                f"{name} reached {values[early][hit]:.1%} by step {step}, within the first {EARLY_STEPS} steps: "
                "too good to be true? Check for the label leaking into the inputs"
            )
            evidence = {"scalar": name, "step": step, "value": float(values[early][hit])}
            return [make_finding("train.too_good", "info", message, step=step, evidence=evidence)]
    return []


def _first_near_perfect(values: np.ndarray, sparse: bool) -> int | None:
    """Index of the first value ending a run of ``RUN_LENGTH`` (median) at or above ``NEAR_PERFECT`` (sparse
    series: any single value)."""
    if sparse:
        at = np.flatnonzero(values >= NEAR_PERFECT)
        return int(at[0]) if len(at) else None
    for end in range(RUN_LENGTH, len(values) + 1):
        if np.median(values[end - RUN_LENGTH : end]) >= NEAR_PERFECT:
            return end - 1
    return None
