"""Train/validation gap rules: overfitting (validation turns up while training falls) and underfitting.

The validation curve is whatever the user logs as ``val_loss`` (``mon.step(val_loss=...)`` or ``mon.validate``),
at any cadence; the training curve is the logged ``loss``. Training losses are noisy per batch, so the training
loss "at" a validation point is the median of the training losses logged since the previous validation point.
Source: seeds/001 (Karpathy, recipe) 3 "overfit" and 4 "regularize" (early stopping at the validation minimum);
seeds/002 (CS231n training recipes) "Choosing hyperparameters" step 6 (a big train/val gap means overfitting, a
too-small one underfitting); seeds/004 (CS231n lecture 5) babysitting (the train/val gap).
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import LOSS_HEAD, LOSS_TAIL, Window

VAL_LOSS = "val_loss"
MIN_VAL_POINTS = 4  # a turn in the validation curve needs a few points on each side of its minimum
MIN_POINTS_AFTER_BEST = 2  # the validation loss stayed up for at least this many points after its minimum
OVERFIT_RISE = 0.10  # validation loss >= 10% above its minimum on every point since (noise is a few %)
PLATEAU_CHANGE = 0.03  # a curve moving less than 3% over its last quarter (training) or last points has plateaued
PLATEAU_VAL_POINTS = 3
UNDERFIT_FRACTION = 0.5  # "high": the training loss kept at least half of its starting value
NO_GAP_FRACTION = 0.02  # validation within 2% of training: no gap at all
LARGE_MODEL_PARAMETERS = 100_000  # a model this big is expected to show a gap; none hints at too much regularization


def validation_curve(window: Window) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, val_loss)`` logged so far, finite values only."""
    steps, values = window.record.scalar_series(VAL_LOSS)
    finite = np.isfinite(values)
    return steps[finite], values[finite]


def training_at(window: Window, val_steps: np.ndarray) -> np.ndarray:
    """The training loss at each validation step: the median of the losses logged since the previous one."""
    steps, loss = window.loss_steps, window.loss
    out = np.full(len(val_steps), np.nan)
    previous = -1
    for i, step in enumerate(val_steps):
        since = loss[(steps > previous) & (steps <= step) & np.isfinite(loss)]
        if len(since) == 0:  # validation twice without training in between: the loss at the latest step before
            since = loss[(steps <= step) & np.isfinite(loss)][-1:]
        out[i] = np.median(since) if len(since) else np.nan
        previous = step
    return out


def overfitting(window: Window) -> list[Finding]:
    """train.overfitting: the validation loss rose >= ``OVERFIT_RISE`` above its minimum and stayed there for
    ``MIN_POINTS_AFTER_BEST`` points while the training loss kept falling (warn)."""
    val_steps, val = validation_curve(window)
    if len(val) < MIN_VAL_POINTS or len(window.loss) == 0:
        return []
    best = int(np.argmin(val))
    after = val[best + 1 :]
    if len(after) < MIN_POINTS_AFTER_BEST or not (after >= (1 + OVERFIT_RISE) * val[best]).all():
        return []
    train = training_at(window, val_steps)
    if not np.isfinite(train[[best, -1]]).all() or not train[-1] < train[best]:
        return []  # training rose too: that is divergence, not overfitting
    gap_then, gap_now = val[best] - train[best], val[-1] - train[-1]
    message = (
        f"validation loss rose from {val[best]:.4g} at step {val_steps[best]} (its minimum) to {val[-1]:.4g} at "
        f"step {val_steps[-1]} while the training loss fell from {train[best]:.4g} to {train[-1]:.4g}: the gap "
        f"grew from {gap_then:.3g} to {gap_now:.3g}; the best model was at step {val_steps[best]}"
    )
    evidence = {
        "best_val_step": int(val_steps[best]),
        "best_val_loss": float(val[best]),
        "val_loss": float(val[-1]),
        "train_loss_at_best": float(train[best]),
        "train_loss": float(train[-1]),
        "gap_at_best": float(gap_then),
        "gap": float(gap_now),
    }
    return [make_finding("train.overfitting", "warn", message, step=int(val_steps[-1]), evidence=evidence)]


def underfitting(window: Window) -> list[Finding]:
    """train.underfitting: training and validation loss both plateaued at >= ``UNDERFIT_FRACTION`` of the starting
    loss (warn); or, on a model of >= ``LARGE_MODEL_PARAMETERS`` parameters, no gap at all (info)."""
    val_steps, val = validation_curve(window)
    loss = window.loss[np.isfinite(window.loss)]
    if len(val) < MIN_VAL_POINTS or len(loss) < 4 * LOSS_HEAD:
        return []
    start = float(np.median(loss[:LOSS_HEAD]))
    now = float(np.median(loss[-LOSS_TAIL:]))
    if not start > 0 or not now < start:
        return []  # not falling at all is train.stalled; rising is train.diverging
    if now >= UNDERFIT_FRACTION * start and val[-1] >= UNDERFIT_FRACTION * start:
        if _plateaued(loss) and _val_plateaued(val):
            return [_plateau_finding(start, now, val, val_steps)]
        return []
    return _no_gap(window, now, val, val_steps)


def _plateaued(loss: np.ndarray) -> bool:
    """The median of the last quarter is within ``PLATEAU_CHANGE`` of the quarter before it."""
    quarter = max(len(loss) // 4, 1)
    last, before = np.median(loss[-quarter:]), np.median(loss[-2 * quarter : -quarter])
    return bool(abs(before - last) <= PLATEAU_CHANGE * abs(before))


def _val_plateaued(val: np.ndarray) -> bool:
    recent = val[-PLATEAU_VAL_POINTS:]
    return bool(recent.max() - recent.min() <= PLATEAU_CHANGE * abs(recent.mean()))


def _plateau_finding(start: float, now: float, val: np.ndarray, val_steps: np.ndarray) -> Finding:
    message = (
        f"training loss plateaued at {now:.4g} ({now / start:.0%} of its start {start:.4g}) and validation loss at "
        f"{val[-1]:.4g} by step {val_steps[-1]}: the model does not fit even the training data"
    )
    evidence = {"start_loss": start, "train_loss": now, "val_loss": float(val[-1]), "fraction_of_start": now / start}
    return make_finding("train.underfitting", "warn", message, step=int(val_steps[-1]), evidence=evidence)


def _no_gap(window: Window, now: float, val: np.ndarray, val_steps: np.ndarray) -> list[Finding]:
    parameters = window.record.meta.parameters
    if parameters < LARGE_MODEL_PARAMETERS or abs(val[-1] - now) > NO_GAP_FRACTION * now:
        return []
    message = (
        f"no gap between validation ({val[-1]:.4g}) and training loss ({now:.4g}) at step {val_steps[-1]} on a "
        f"model of {parameters:,} parameters: regularization may be too strong, or train longer"
    )
    evidence = {"train_loss": now, "val_loss": float(val[-1]), "parameters": int(parameters)}
    return [make_finding("train.underfitting", "info", message, step=int(val_steps[-1]), evidence=evidence)]
