"""Learning-rate range test: train a copy while the learning rate grows exponentially; read the loss curve."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nbdiag.checks import budget
from nbdiag.checks.batches import collect_batches, to_device
from nbdiag.checks.calls import loss_of, run_model
from nbdiag.checks.progress import finish, progress_bar
from nbdiag.checks.sandbox import CHECK_SEED, clone_optimizer, model_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

# CS231n "learning rate schedules": very high lr -> loss explodes, low lr -> loss barely moves; the useful range
# lies between. The test stops once the smoothed loss exceeds DIVERGE_FACTOR x its minimum.
START_LR, END_LR, RANGE_STEPS = 1e-7, 10.0, 100
SMOOTHING = 0.9  # exponential moving average of the loss (bias-corrected)
DIVERGE_FACTOR = 4.0
TOO_LOW_FACTOR = 100.0  # an optimizer lr below suggestion / 100 barely moves the loss


@dataclass
class LRRangeResult:
    """The loss against the learning rate, and what to read from it.

    Attributes:
        lrs: the learning rate of each step.
        losses: the raw loss of each step.
        smoothed: the bias-corrected moving average of ``losses``.
        suggestion: the learning rate where the smoothed loss falls fastest (per decade of lr), or None when the
            loss never fell.
        diverged_at: the learning rate where the smoothed loss passed ``DIVERGE_FACTOR`` x its minimum, or None.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float | None
    diverged_at: float | None

    def frame(self) -> Any:
        """The curve as a pandas DataFrame with columns lr, loss, smoothed."""
        import pandas as pd

        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed": self.smoothed})

    def plot(self, ax: Any = None) -> Any:
        """Plot the smoothed loss against the learning rate (log axis) with matplotlib; returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(self.lrs, self.losses, alpha=0.3, label="loss")
        ax.plot(self.lrs, self.smoothed, label="smoothed")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:green", linestyle="--", label=f"suggestion {self.suggestion:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="LR range test")
        ax.legend()
        return ax

    def __str__(self) -> str:
        suggestion = f"{self.suggestion:.3g}" if self.suggestion is not None else "none (the loss never fell)"
        diverged = f", loss diverges from lr {self.diverged_at:.3g}" if self.diverged_at is not None else ""
        return f"LR range test over {len(self.lrs)} steps: suggested lr {suggestion}{diverged}"


def lr_range_test(
    model: nn.Module,
    data: object,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = RANGE_STEPS,
    deadline: float | None = None,
    progress: bool = True,
) -> LRRangeResult:
    """Train a copy of ``model`` with a copy of ``optimizer`` while the lr grows from ``start_lr`` to ``end_lr``.

    The learning rate grows exponentially over ``steps`` steps (every parameter group gets it); the run ends early
    once the smoothed loss exceeds ``DIVERGE_FACTOR`` (4) times its minimum. The suggestion is the lr of the
    steepest fall of the smoothed loss per decade of lr. The caller's model, optimizer and RNG states are not
    changed. Source: seeds/002 (CS231n) learning rate schedules; seeds/004 (CS231n lecture 5) babysitting.

    Args:
        model: the model; a copy of it trains.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches (cycled).
        loss_fn: the loss.
        optimizer: the optimizer of ``model``; a copy of it (same class, hyperparameters and state) is used.
        start_lr: the first learning rate.
        end_lr: the last learning rate.
        steps: the most steps.
        deadline: a :func:`nbdiag.checks.budget.now` value after which the test ends early.
        progress: show a progress bar.

    Returns:
        The :class:`LRRangeResult`.

    Raises:
        ValueError: the lr bounds are not 0 < start_lr < end_lr, or ``steps`` < 2.
    """
    if not (0 < start_lr < end_lr) or steps < 2:
        raise ValueError(
            f"got start_lr={start_lr}, end_lr={end_lr}, steps={steps}, expected 0 < start_lr < end_lr and steps >= 2"
        )
    batches = collect_batches(data)
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(model, train=True)
        twin = clone_optimizer(optimizer, model, clone)
        losses = _run(clone, twin, batches, loss_fn, lrs, deadline, progress)
    return _read_curve(lrs[: len(losses)], np.asarray(losses, dtype=np.float64))


def _run(clone, optimizer, batches, loss_fn, lrs, deadline, progress) -> list[float]:
    device, losses, best = model_device(clone), [], math.inf
    average, bar = 0.0, progress_bar(len(lrs), "LR range test", progress)
    try:
        for step, lr in enumerate(lrs):
            if budget.past(deadline):
                break
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
            x, y = to_device(batches[step % len(batches)], device)
            loss = loss_of(loss_fn, run_model(clone, x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.update()
            average = SMOOTHING * average + (1 - SMOOTHING) * losses[-1]
            smoothed = average / (1 - SMOOTHING ** (step + 1))
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > DIVERGE_FACTOR * best:
                break
    finally:
        finish(bar)
    return losses


def _smooth(losses: np.ndarray) -> np.ndarray:
    out, average = np.empty_like(losses), 0.0
    for i, loss in enumerate(losses):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        out[i] = average / (1 - SMOOTHING ** (i + 1))
    return out


def _read_curve(lrs: np.ndarray, losses: np.ndarray) -> LRRangeResult:
    smoothed = _smooth(losses)
    finite = np.isfinite(smoothed)
    best_so_far = np.minimum.accumulate(np.where(finite, smoothed, np.inf))  # the curve's low point up to each lr
    over = np.flatnonzero(~finite | (smoothed > DIVERGE_FACTOR * best_so_far))
    diverged_at = float(lrs[over[0]]) if len(over) else None
    end = over[0] if len(over) else len(lrs)
    suggestion = None
    if end >= 3:
        slope = np.gradient(smoothed[:end], np.log10(lrs[:end]))  # loss change per decade of lr
        steepest = int(np.argmin(slope))
        suggestion = float(lrs[steepest]) if slope[steepest] < 0 else None
    return LRRangeResult(lrs, losses, smoothed, suggestion, diverged_at)


def check_learning_rate(
    model: nn.Module,
    data: object,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    *,
    deadline: float | None = None,
    progress: bool = False,
) -> tuple[list[Finding], LRRangeResult]:
    """The optimizer's learning rate against an LR range test (``train.lr_range``).

    'warn' when the optimizer's lr (its first group's) is at or beyond the lr where the range test diverged, or
    below the suggestion / ``TOO_LOW_FACTOR`` (100); 'info' with the suggestion otherwise; ``check.inconclusive``
    (info, no verdict) when the budget stopped the test before its last step or a divergence.
    Source: seeds/002 (CS231n) learning rate schedules; seeds/004 (CS231n lecture 5) babysitting.

    Args:
        model: the model; a copy of it trains.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.
        optimizer: the optimizer of ``model``.
        deadline: a :func:`nbdiag.checks.budget.now` value after which the test ends early.
        progress: show a progress bar.

    Returns:
        The findings and the :class:`LRRangeResult`.
    """
    result = lr_range_test(model, data, loss_fn, optimizer, deadline=deadline, progress=progress)
    lr = float(optimizer.param_groups[0]["lr"])
    if result.diverged_at is None and len(result.losses) < RANGE_STEPS:  # the budget stopped it: no verdict
        what = f"up to lr {result.lrs[-1]:.3g}" if len(result.lrs) else "no step"
        return [budget.inconclusive("lr_range", len(result.losses), RANGE_STEPS, what, {"lr": lr})], result
    evidence = {"lr": lr, "suggestion": result.suggestion, "diverged_at": result.diverged_at}
    if result.diverged_at is not None and lr >= result.diverged_at:
        hint = f"; try about {result.suggestion:.3g}" if result.suggestion is not None else ""
        message = f"lr {lr:.3g} is past where the loss diverges ({result.diverged_at:.3g}){hint}"
        return [make_finding("train.lr_range", "warn", message, evidence=evidence)], result
    if result.suggestion is not None and lr < result.suggestion / TOO_LOW_FACTOR:
        message = f"lr {lr:.3g} is over {TOO_LOW_FACTOR:.0f}x below the suggested {result.suggestion:.3g}"
        return [make_finding("train.lr_range", "warn", message, evidence=evidence)], result
    return [make_finding("train.lr_range", "info", f"{result}; the optimizer uses {lr:.3g}", evidence=evidence)], result
