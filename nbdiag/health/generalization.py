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
# The CS231n signature (choosing hyperparameters step 6, "a big gap means overfitting"): a validation loss GAP_RATIO
# times the training loss that has turned up (its last points GAP_RISE above its minimum, a rising fitted line)
# overfits even when the climb is slower than OVERFIT_RISE (issue 19: 0.726 -> 0.78 against a training loss of 6e-4).
GAP_RATIO = 10.0
GAP_RISE = 0.03
SMOOTH_MIN_POINTS = 12  # from this many validation points on, the minimum is that of a 3-point rolling median
OVERFIT_RISE = 0.10  # validation loss (median of its last points) >= 10% above its minimum (noise is a few %)
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
    """train.overfitting (warn): two signals agreeing, judged robustly (issue 19: a slow climb never qualified when
    every point after the minimum had to be 10% above it):

    - the validation loss turned up: the median of its last points after the minimum (the last third of them, at
      least ``MIN_POINTS_AFTER_BEST``) is ``OVERFIT_RISE`` (10%) above the minimum, or ``GAP_RISE`` (3%) above it
      while it is ``GAP_RATIO`` (10) times the training loss; and a least-squares line through the points from the
      minimum on rises;
    - while the training loss kept falling (at the last validation point below where it was at the minimum).

    The evidence carries the gap (validation minus training, and their ratio), the accuracy gap when ``val_acc``
    and a training accuracy are logged, and the advice names the best step (early stopping).
    """
    val_steps, val = validation_curve(window)
    if len(val) < MIN_VAL_POINTS or len(window.loss) == 0:
        return []
    smooth = _rolling_median(val) if len(val) >= SMOOTH_MIN_POINTS else val  # a noisy point is not the minimum
    best = int(np.argmin(smooth))
    after = val[best + 1 :]
    if len(after) < MIN_POINTS_AFTER_BEST:
        return []
    recent = float(np.median(after[-max(MIN_POINTS_AFTER_BEST, len(after) // 3) :]))
    slope = float(np.polyfit(val_steps[best:].astype(np.float64), val[best:], 1)[0])
    train = training_at(window, val_steps)
    if not slope > 0 or not np.isfinite(train[[best, -1]]).all() or not train[-1] < train[best]:
        return []  # validation not turning up; or training rose too: that is divergence, not overfitting
    big_gap = val[-1] >= GAP_RATIO * train[-1] and recent >= (1 + GAP_RISE) * smooth[best]
    if recent < (1 + OVERFIT_RISE) * smooth[best] and not big_gap:
        return []
    gap_then, gap_now = val[best] - train[best], val[-1] - train[-1]
    accuracy = _accuracy_gap(window)
    message = (
        f"validation loss rose from {val[best]:.4g} at step {val_steps[best]} (its minimum) to {recent:.4g} (median "
        f"of its last points; {val[-1]:.4g} at step {val_steps[-1]}) while the training loss fell from "
        f"{train[best]:.4g} to {train[-1]:.4g}: the gap grew from {gap_then:.3g} to {gap_now:.3g}"
        f"{accuracy[0]}; the best model was at step {val_steps[best]}"
    )
    evidence = {
        "best_val_step": int(val_steps[best]),
        "best_val_loss": float(val[best]),
        "val_loss": float(val[-1]),
        "recent_val_loss": recent,
        "val_slope_per_step": slope,
        "train_loss_at_best": float(train[best]),
        "train_loss": float(train[-1]),
        "gap_at_best": float(gap_then),
        "gap": float(gap_now),
        **accuracy[1],
    }
    advice = (
        f"Stop early: keep the checkpoint of step {val_steps[best]}, the validation minimum. Then regularize: more "
        "data, data augmentation, dropout, weight decay, a smaller model."
    )
    return [
        make_finding("train.overfitting", "warn", message, step=int(val_steps[-1]), evidence=evidence, advice=advice)
    ]


def _rolling_median(values: np.ndarray) -> np.ndarray:
    """The median of each point and its two neighbours (the ends: of the two points there)."""
    padded = np.concatenate([values[:1], values, values[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def _accuracy_gap(window: Window) -> tuple[str, dict[str, float]]:
    """(" and accuracy 100% (training) vs 71% (validation)", evidence) from the last logged accuracies, or empty."""
    _, val_acc = window.record.scalar_series("val_acc")
    names = [name for name in ("acc", "accuracy", "train_acc") if name in window.record.scalar_names()]
    if not names or len(val_acc) == 0:
        return "", {}
    _, acc = window.record.scalar_series(names[0])
    train_acc, last_val = float(np.median(acc[-LOSS_TAIL:])), float(val_acc[-1])
    text = f", and accuracy {train_acc:.0%} (training) vs {last_val:.0%} (validation)"
    return text, {"train_accuracy": train_acc, "val_accuracy": last_val}


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
