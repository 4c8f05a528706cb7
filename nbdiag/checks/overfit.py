"""Overfit one batch: a copy of the model must drive the loss on a few samples close to what the loss can reach."""

from __future__ import annotations

import math

from torch import nn

from nbdiag.checks import budget
from nbdiag.checks.batches import collect_batches, select
from nbdiag.checks.losskind import loss_floor
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.checks.training import disable_dropout, train_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.rng import forked_rng

# Karpathy 2 "overfit one batch ... as few as two examples"; 37 reasons 4.1; CS231n lecture 5 babysitting.
OVERFIT_SAMPLES = 16  # samples in the batch to memorize
OVERFIT_STEPS = 300  # the most Adam steps
OVERFIT_LR = 3e-3  # Adam's learning rate (Karpathy 3 suggests 3e-4 for real runs; a tiny batch tolerates more)
OVERFIT_TARGET = 0.1  # "near zero": the loss must fall to 10% of its initial value (losses whose floor is 0)
PLATEAU_STEPS = 50  # a loss of unknown floor has reached it when its best improved by < PLATEAU_GAIN of its drop
PLATEAU_GAIN = 0.01  # so far over the last PLATEAU_STEPS steps
MIN_DROP = 0.01  # ... and it must have fallen by at least 1% of its first value: a loss that never moved failed


def check_overfit(
    model: nn.Module,
    data: object,
    loss_fn: object,
    *,
    samples: int = OVERFIT_SAMPLES,
    steps: int = OVERFIT_STEPS,
    lr: float = OVERFIT_LR,
    deadline: float | None = None,
    progress: bool = False,
) -> list[Finding]:
    """The model cannot overfit one small batch (``train.cannot_overfit``).

    A copy trains with Adam (``lr``, fresh state; the caller's optimizer is not used) on the first ``samples`` samples
    of the first batch, dropout off, batch norm in train mode, for up to ``steps`` steps. Overfit means reaching
    what the loss can reach (:func:`~nbdiag.checks.losskind.loss_floor`), not a fixed fraction of the start:

    - a loss whose floor f is known (class indices without label smoothing, hard 0/1 binary targets, regression: 0;
      soft targets: their entropy) must close ``1 - OVERFIT_TARGET``
      (90%) of the gap from its first value to f; else 'fail';
    - any other loss (a VAE's reconstruction + KL; BCE with ``pos_weight``; label smoothing), whose floor may sit
      far above 10% of the start: reaching its own plateau (the best loss improved by less than ``PLATEAU_GAIN``
      of its drop over the last ``PLATEAU_STEPS`` steps) after falling at least ``MIN_DROP`` (1%) counts as
      overfit; a loss that never fell 1% is 'warn' (the floor is unknown, so never 'fail').

    Source: seeds/001 (Karpathy) 2 "overfit one batch" ("achieve the lowest achievable loss (e.g. zero)"); seeds/003
    (37 reasons) 4.1; seeds/004 (CS231n lecture 5) babysitting, "overfit a small subset".

    Args:
        model: the model; a copy of it trains.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.
        samples: the batch size to memorize.
        steps: the most updates.
        lr: Adam's learning rate.
        deadline: a :func:`nbdiag.checks.budget.now` value; past it the check stops with no verdict
            (``check.inconclusive``, info).
        progress: show a progress bar.

    Returns:
        At most one finding.
    """
    x, y = collect_batches(data)[0]
    batch = (select(x, slice(0, samples)), y[:samples])
    floor = loss_floor(loss_fn, batch[1])
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(model, train=True)
        disable_dropout(clone)
        trace = train_copy(
            clone,
            [batch],
            loss_fn,
            steps=steps,
            lr=lr,
            deadline=deadline,
            stop=lambda losses: _reached(losses, floor) or _plateau(losses, floor),
            progress=progress,
            desc="overfit one batch",
        )
    return _overfit_findings(trace.losses, trace.finished, len(batch[1]), floor)


def _reached(losses: list[float], floor: float | None) -> bool:
    """NaN/Inf (stop: no point going on) or the loss within ``OVERFIT_TARGET`` of the gap above its floor."""
    last = losses[-1]
    if not math.isfinite(last):
        return True
    return last - (floor or 0.0) <= OVERFIT_TARGET * (losses[0] - (floor or 0.0))


def _plateau(losses: list[float], floor: float | None) -> bool:
    """A loss of unknown floor that has stopped improving (see ``PLATEAU_STEPS``, ``PLATEAU_GAIN``)."""
    if floor is not None or len(losses) <= PLATEAU_STEPS:
        return False
    earlier_best, recent_best = min(losses[:-PLATEAU_STEPS]), min(losses[-PLATEAU_STEPS:])
    return earlier_best - recent_best <= PLATEAU_GAIN * (losses[0] - earlier_best)


def _overfit_findings(losses: list[float], finished: bool, samples: int, floor: float | None) -> list[Finding]:
    if not losses:
        return [budget.inconclusive("overfit one batch", 0, OVERFIT_STEPS, "no time left in the budget for a step")]
    finite = [loss for loss in losses if math.isfinite(loss)]
    first, best = losses[0], min(finite, default=math.nan)
    evidence = {"initial_loss": first, "best_loss": best, "floor": floor, "steps": len(losses), "samples": samples}
    if len(finite) < len(losses):
        message = f"the loss on one batch of {samples} became NaN/Inf while overfitting it"
        return [make_finding("train.cannot_overfit", "fail", message, evidence=evidence)]
    if _reached([first, best], floor):
        return []
    if not finished:
        what = f"loss {first:.4g} -> {best:.4g}"
        return [budget.inconclusive("overfit one batch", len(losses), OVERFIT_STEPS, what, evidence)]
    if floor is not None:
        reach = f" (its floor on these targets is {floor:.4g})" if floor else ""
        message = f"the loss on one batch of {samples} only went from {first:.4g} to {best:.4g} in {len(losses)} steps"
        return [make_finding("train.cannot_overfit", "fail", message + reach, evidence=evidence)]
    if first - best >= MIN_DROP * abs(first):
        return []  # fell and reached its own plateau (or is still falling): a floor nbdiag does not know
    message = (
        f"the loss on one batch of {samples} did not fall by {MIN_DROP:.0%} in {len(losses)} steps ({first:.4g} -> "
        f"{best:.4g}); nbdiag does not know this loss's floor, so it cannot tell whether it is already there"
    )
    return [make_finding("train.cannot_overfit", "warn", message, evidence=evidence)]
