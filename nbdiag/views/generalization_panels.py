"""The train/validation gap panel: training loss at the validation steps, validation loss, and the gap between."""

from __future__ import annotations

import numpy as np

from nbdiag.health.generalization import VAL_LOSS, training_at
from nbdiag.health.window import Window
from nbdiag.views.data import Snapshot
from nbdiag.views.panels import PALETTE, Panel, Series, ViewState

NO_VALIDATION = "log validation with mon.validate(val_loss=...) or mon.step(val_loss=...) to see the gap"
GAP_COLOR = "#7f7f7f"


def gap_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Training vs validation loss at the validation steps, the gap (validation - training), the best step."""
    if snap.record is None or VAL_LOSS not in snap.scalars.columns:
        return Panel("gap", "train / validation gap", note=NO_VALIDATION)
    column = snap.scalars[VAL_LOSS].dropna()
    column = column[np.isfinite(column.to_numpy(np.float64))]
    if column.empty:
        return Panel("gap", "train / validation gap", note=NO_VALIDATION)
    steps, val = column.index.to_numpy(np.int64), column.to_numpy(np.float64)
    train = training_at(Window.of(snap.record), steps)
    best = int(np.argmin(val))
    series = (
        Series("training (median since last validation)", "line", x=steps, y=train, color=PALETTE[0], legend=True),
        Series("validation", "line", x=steps, y=val, color=PALETTE[1], legend=True),
        Series("gap = validation - training", "line", x=steps, y=val - train, color=GAP_COLOR, legend=True),
        Series("best validation", "points", x=steps[best : best + 1], y=val[best : best + 1], color=PALETTE[3]),
    )
    title = f"gap (val - train): {val[-1] - train[-1]:.3g}; best val @ step {steps[best]}"
    return Panel("gap", title, series, xlabel="step", ylabel="loss", hlines=((0.0, "no gap"),))
