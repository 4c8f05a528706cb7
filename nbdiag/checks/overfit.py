"""Overfit one batch: a copy of the model must drive the loss on a few samples close to zero."""

from __future__ import annotations

import math

from torch import nn

from nbdiag.checks.batches import collect_batches
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.checks.training import disable_dropout, train_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.rng import forked_rng

# Karpathy 2 "overfit one batch ... as few as two examples"; 37 reasons 4.1; CS231n lecture 5 babysitting.
OVERFIT_SAMPLES = 16  # samples in the batch to memorize
OVERFIT_STEPS = 300  # the most Adam steps
OVERFIT_LR = 3e-3  # Adam's learning rate (Karpathy 3 suggests 3e-4 for real runs; a tiny batch tolerates more)
OVERFIT_TARGET = 0.1  # "near zero": the loss must fall to 10% of its initial value


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
    """The model cannot overfit one small batch (``train.cannot_overfit``, fail).

    A copy trains with Adam (``lr``, fresh state; the caller's optimizer is not used) on the first ``samples`` samples
    of the first batch, dropout off, batch norm in train mode, for up to ``steps`` steps; the loss must fall below
    ``OVERFIT_TARGET`` (10%) of its first value. Source: seeds/001 (Karpathy) 2 "overfit one batch";
    seeds/003 (37 reasons) 4.1; seeds/004 (CS231n lecture 5) babysitting, "overfit a small subset".

    Args:
        model: the model; a copy of it trains.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.
        samples: the batch size to memorize.
        steps: the most updates.
        lr: Adam's learning rate.
        deadline: a ``time.perf_counter()`` value; past it the check stops with an 'info' finding and no verdict.
        progress: show a progress bar.

    Returns:
        At most one finding.
    """
    x, y = collect_batches(data)[0]
    batch = (x[:samples], y[:samples])
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
            stop=lambda losses: not math.isfinite(losses[-1]) or losses[-1] <= OVERFIT_TARGET * losses[0],
            progress=progress,
            desc="overfit one batch",
        )
    return _overfit_findings(trace.losses, trace.finished, len(batch[0]))


def _overfit_findings(losses: list[float], finished: bool, samples: int) -> list[Finding]:
    if not losses:
        return [make_finding("check.skipped", "info", "overfit one batch: no time left in the budget for a step")]
    finite = [loss for loss in losses if math.isfinite(loss)]
    first, best = losses[0], min(finite, default=math.nan)
    evidence = {"initial_loss": first, "best_loss": best, "steps": len(losses), "samples": samples}
    if len(finite) == len(losses) and best <= OVERFIT_TARGET * first:
        return []
    if len(finite) < len(losses):
        message = f"the loss on one batch of {samples} became NaN/Inf while overfitting it"
    elif not finished:
        message = f"stopped by the time budget after {len(losses)} steps (loss {first:.4g} -> {best:.4g})"
        return [make_finding("check.skipped", "info", f"overfit one batch: {message}", evidence=evidence)]
    else:
        message = f"the loss on one batch of {samples} only went from {first:.4g} to {best:.4g} in {len(losses)} steps"
    return [make_finding("train.cannot_overfit", "fail", message, evidence=evidence)]
