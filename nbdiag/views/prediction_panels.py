"""Prediction panels: the fixed batch's p(true class) (or error) as sample x step, and the selected step up close."""

from __future__ import annotations

import numpy as np

from nbdiag.views.data import Snapshot
from nbdiag.views.panels import PALETTE, Panel, Series, ViewState, selected_step

RIGHT, WRONG = "#2ca02c", "#d62728"
NO_TRACKER = "pass watch(..., fixed_batch=(x, y)) to follow predictions"


def tracker_index(steps: list[int], step: int | None) -> int | None:
    """The last tracked step at or before ``step`` (None: the latest)."""
    if not steps:
        return None
    if step is None:
        return len(steps) - 1
    return max(int(np.searchsorted(steps, step, side="right")) - 1, 0)


def heatmap_panel(snap: Snapshot, state: ViewState) -> Panel:
    """p(true class) per sample and step (classification), or prediction - target (regression)."""
    tracker = snap.predictions
    if tracker is None or not tracker.steps:
        return Panel("pred_heatmap", "predictions on the fixed batch", note=NO_TRACKER if tracker is None else "")
    steps = tracker.steps
    values = tracker.heatmap_values()  # (N, S)
    classification = tracker.task == "classification"
    series = Series(
        "p(true)" if classification else "prediction - target",
        "heatmap",
        x=np.array(steps),
        y=np.arange(values.shape[0], dtype=np.float64),
        z=values,
        zrange=(0.0, 1.0) if classification else _symmetric(values),
        colorscale="Viridis" if classification else "RdBu",
    )
    title = "p(true class): sample x step" if classification else "prediction - target: sample x step"
    return Panel(
        "pred_heatmap",
        title,
        (series,),
        xlabel="step",
        ylabel="sample",
        reversed_y=True,
        vline=selected_step(snap, state),
    )


def step_panel(snap: Snapshot, state: ViewState) -> Panel:
    """At the selected step: p(true) per sample coloured right/wrong with "pred/true" labels, or pred vs target."""
    tracker = snap.predictions
    index = None if tracker is None else tracker_index(tracker.steps, selected_step(snap, state))
    if index is None:
        return Panel("pred_step", "predictions at the selected step", note=NO_TRACKER if tracker is None else "")
    step = tracker.steps[index]
    n = len(tracker.targets)
    if tracker.task == "regression":
        targets = tracker.targets.reshape(n, -1)[:, 0]
        predictions = tracker.outputs()[index, :, 0]
        low, high = float(np.nanmin(targets)), float(np.nanmax(targets))
        return Panel(
            "pred_step",
            f"prediction vs target @ step {step}",
            (
                Series("y = x", "line", x=np.array([low, high]), y=np.array([low, high]), color="#7f7f7f", width=1.0),
                Series("samples", "markers", x=targets, y=predictions, color=PALETTE[0]),
            ),
            xlabel="target",
            ylabel="prediction",
        )
    p_true = tracker.p_true()[index]
    predicted = tracker.predicted()[index]
    correct = predicted == tracker.targets
    return Panel(
        "pred_step",
        f"p(true) @ step {step}: {correct.mean():.0%} right",
        (
            Series(
                "p(true)",
                "bar",
                x=np.arange(n),
                y=p_true,
                color=[RIGHT if ok else WRONG for ok in correct],
                text=[f"pred {p} / true {t}" for p, t in zip(predicted, tracker.targets, strict=True)],
            ),
        ),
        xlabel="sample (green: predicted right)",
        yrange=(0.0, 1.0),
    )


def _symmetric(values: np.ndarray) -> tuple[float, float]:
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    return (-bound, bound)
