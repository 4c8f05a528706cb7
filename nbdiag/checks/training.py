"""A short Adam training loop on a model copy, shared by the overfit and baseline checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from nbdiag.checks import budget
from nbdiag.checks.batches import Batch, to_device
from nbdiag.checks.calls import loss_of, run_model
from nbdiag.checks.progress import finish, progress_bar
from nbdiag.probe import model_device


@dataclass
class TrainTrace:
    """Losses of a short training run.

    Attributes:
        losses: the loss before each update, one per step.
        finished: False when the deadline stopped the run before its steps or its stop condition.
    """

    losses: list[float] = field(default_factory=list)
    finished: bool = True


def disable_dropout(model: nn.Module) -> None:
    """Put the dropout layers of ``model`` in eval mode (regularization off: seeds/003 "turn off regularization")."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()


def train_copy(
    model: nn.Module,
    batches: list[Batch],
    loss_fn: Callable,
    *,
    steps: int,
    lr: float,
    deadline: float | None = None,
    stop: Callable[[list[float]], bool] | None = None,
    progress: bool = False,
    desc: str = "training",
) -> TrainTrace:
    """Train ``model`` (already a copy) with Adam for up to ``steps`` steps, cycling through ``batches``.

    Args:
        model: the copy to train, in the mode it should train in.
        batches: CPU batches, used in turn.
        loss_fn: the loss.
        steps: the most updates.
        lr: Adam's learning rate.
        deadline: a :func:`nbdiag.checks.budget.now` value after which the run stops unfinished.
        stop: called with the losses so far after each step; True ends the run (finished).
        progress: show a progress bar.
        desc: the bar's label.

    Returns:
        The :class:`TrainTrace`.
    """
    device = model_device(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr) if trainable else None
    trace, bar = TrainTrace(), progress_bar(steps, desc, progress)
    try:
        for step in range(steps):
            if budget.past(deadline):
                trace.finished = False
                break
            x, y = to_device(batches[step % len(batches)], device)
            loss = loss_of(loss_fn, run_model(model, x), y)
            trace.losses.append(float(loss.detach()))
            bar.update()
            if stop is not None and stop(trace.losses):
                break
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        finish(bar)
    return trace


@torch.no_grad()
def evaluate(model: nn.Module, batch: Batch, loss_fn: Callable) -> float:
    """The loss of ``model`` in eval mode on ``batch``."""
    model.eval()
    x, y = to_device(batch, model_device(model))
    return float(loss_of(loss_fn, run_model(model, x), y))
