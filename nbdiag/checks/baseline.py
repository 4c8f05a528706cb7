"""Input-independent baseline: a copy trained on real inputs must beat the same copy trained on uninformative inputs.

Uninformative inputs must still be valid inputs: floating inputs become zeros; integer inputs (token ids) keep
their rows but in a random order within each batch, so every baseline sample is a real, well-formed sequence
(padding and lengths intact) whose targets belong to another sample. All-zero ids would be all padding for most
tokenizers: a pooled loss over no token is NaN (or packing fails on zero lengths), and NaN is never evidence here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nbdiag.checks import budget
from nbdiag.checks.batches import Batch, collect_batches, concat, select
from nbdiag.checks.calls import Inputs, map_inputs, tensors
from nbdiag.checks.losskind import loss_floor
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.checks.training import evaluate, train_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.rng import forked_rng

# Karpathy 2 "input-independent baseline"; 37 reasons 1.4-1.5 (inputs and labels misaligned / unrelated).
BASELINE_STEPS = 100  # Adam steps for each of the two copies
BASELINE_LR = 1e-3  # Adam's learning rate
BASELINE_BATCH = 64  # training batch size (at most)
HELD_OUT_FRACTION = 0.25  # share of the sampled samples held out when no val_data is given
BASELINE_MARGIN = 0.1  # real inputs must close at least 10% of the gap from the baseline's loss to the loss's floor
UNKNOWN_FLOOR_MARGIN = 0.01  # a loss of unknown floor: 1% below the baseline (its explainable part may be small)
BASELINE_ROUNDS = 3  # a copy that is better, but not yet by the margin, trains for up to this many rounds of steps


def check_baseline(
    model: nn.Module,
    data: object,
    loss_fn: object,
    *,
    val_data: object | None = None,
    steps: int = BASELINE_STEPS,
    lr: float = BASELINE_LR,
    deadline: float | None = None,
    progress: bool = False,
) -> list[Finding]:
    """The model does no better on real inputs than on uninformative ones (``data.no_signal``, warn).

    Two copies from the same initialization train with Adam for ``steps`` steps on the same batches, one on the real
    inputs, one on uninformative inputs (zeros for floats, rows shuffled for integer ids: :func:`baseline_input`);
    both are then evaluated (eval mode) on held-out samples (``val_data``, or a random ``HELD_OUT_FRACTION`` (25%)
    of the sampled samples), the baseline copy on uninformative held-out inputs. Fires when the real copy's held-out
    loss is not ``BASELINE_MARGIN`` (10%) of the way from the baseline's down to the loss's floor
    (:func:`~nbdiag.checks.losskind.loss_floor`: 0 for class indices and regression), or, for a loss whose floor
    nbdiag does not know (a VAE's BCE + KL on grey pixels, where the part the inputs explain is small next to the
    floor), ``UNKNOWN_FLOOR_MARGIN`` (1%) below the baseline's. A real copy that is better but not yet by
    the margin (a model that learns slowly, such as a token classifier from fresh embeddings) trains on, both copies
    another ``steps`` steps, for up to ``BASELINE_ROUNDS`` (3) rounds; a non-finite loss gives no verdict
    (``check.skipped``). Source: seeds/001 (Karpathy) 2 "input-independent
    baseline"; seeds/003 (37 reasons) 1.4 "inputs and labels shuffled apart", 1.5 "no relation between them".

    Args:
        model: the model; copies of it train.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.
        val_data: held-out data in the same forms, or None to hold out part of ``data``.
        steps: updates per copy.
        lr: Adam's learning rate.
        deadline: a :func:`nbdiag.checks.budget.now` value; past it the check stops with no verdict
            (``check.inconclusive``, info).
        progress: show a progress bar.

    Returns:
        At most one finding.
    """
    with forked_rng(seed=CHECK_SEED):
        train, held_out = _split(collect_batches(data), val_data)
        uninformative = [(baseline_input(x), y) for x, y in train]
        held_out_baseline = (baseline_input(held_out[0]), held_out[1])
        floor = loss_floor(loss_fn, held_out[1])
        real_copy, zero_copy = model_copy(model), model_copy(model)
        common = {"steps": steps, "lr": lr, "deadline": deadline, "progress": progress}
        trained = 0
        for _ in range(BASELINE_ROUNDS):
            real_trace = train_copy(real_copy, train, loss_fn, desc="baseline: real inputs", **common)
            zero_trace = train_copy(zero_copy, uninformative, loss_fn, desc="baseline: uninformative inputs", **common)
            trained += len(real_trace.losses)
            if not (real_trace.finished and zero_trace.finished):
                what = "both copies train, then the held-out losses decide"
                return [budget.inconclusive("input-independent baseline", trained, steps * BASELINE_ROUNDS, what)]
            real_loss = evaluate(real_copy, held_out, loss_fn)
            zero_loss = evaluate(zero_copy, held_out_baseline, loss_fn)
            if not zero_loss > real_loss > _bar(zero_loss, floor):
                break  # decided: clearly better, no better at all, or non-finite
    return _baseline_findings(real_loss, zero_loss, floor, trained, len(held_out[1]))


def _bar(zero_loss: float, floor: float | None) -> float:
    """The held-out loss the real copy must beat: ``BASELINE_MARGIN`` of the way from the baseline to the floor."""
    if floor is None:
        return zero_loss - UNKNOWN_FLOOR_MARGIN * abs(zero_loss)
    return zero_loss - BASELINE_MARGIN * (zero_loss - floor)


def baseline_input(x: Inputs) -> Inputs:
    """An uninformative but valid stand-in for the batch inputs ``x``: zeros for floating inputs; when ``x`` holds
    integer inputs (token ids), its own rows in a random order (under the check's seeded RNG), the same order for
    every tensor of a dict (ids and attention mask stay together): real, well-formed sequences with their padding
    and lengths intact, paired with another sample's targets."""
    parts = tensors(x)
    if any(not part.is_floating_point() for part in parts):
        return select(x, torch.randperm(len(parts[0])))
    return map_inputs(x, torch.zeros_like)


def _split(batches: list[Batch], val_data: object | None) -> tuple[list[Batch], Batch]:
    x, y = concat(batches)
    if val_data is not None:
        held_out = concat(collect_batches(val_data))
    else:
        order = torch.randperm(len(y))
        cut = max(1, int(len(y) * HELD_OUT_FRACTION))
        held_out = (select(x, order[:cut]), y[order[:cut]])
        x, y = select(x, order[cut:]), y[order[cut:]]
    if len(y) == 0:
        raise ValueError(f"got {len(held_out[1])} sample(s), expected at least 2 to hold some out; pass more data")
    size = min(BASELINE_BATCH, len(y))
    return [(select(x, slice(i, i + size)), y[i : i + size]) for i in range(0, len(y) - size + 1, size)], held_out


def _baseline_findings(
    real_loss: float, zero_loss: float, floor: float | None, steps: int, held_out: int
) -> list[Finding]:
    evidence = {
        "real_inputs_loss": real_loss,
        "zeroed_inputs_loss": zero_loss,
        "floor": floor,
        "steps": steps,
        "held_out": held_out,
    }
    if not (math.isfinite(real_loss) and math.isfinite(zero_loss)):
        message = (
            f"input-independent baseline gave no verdict: the held-out loss is {real_loss:.4g} with real inputs and "
            f"{zero_loss:.4g} with uninformative ones (a non-finite loss is no evidence either way)"
        )
        return [make_finding("check.skipped", "info", message, evidence=evidence)]
    if real_loss < _bar(zero_loss, floor):
        return []
    message = (
        f"after {steps} steps the held-out loss is {real_loss:.4g} with real inputs and {zero_loss:.4g} with "
        "uninformative inputs (zeros; for ids, other samples' rows): the inputs carry no usable signal for the targets"
    )
    return [make_finding("data.no_signal", "warn", message, evidence=evidence)]
