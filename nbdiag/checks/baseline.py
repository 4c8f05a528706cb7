"""Input-independent baseline: a copy trained on real inputs must beat the same copy trained on uninformative inputs.

Uninformative inputs must still be valid inputs: floating inputs become zeros; integer inputs (token ids) are
shuffled across every position of the sampled batches, so a baseline batch holds real tokens (and as much padding
as the data) in an order unrelated to the targets. All-zero ids would be all padding for most tokenizers: a pooled
loss over no token is NaN, and NaN is never evidence here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nbdiag.checks.batches import Batch, collect_batches, concat
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.checks.training import evaluate, train_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.rng import forked_rng

# Karpathy 2 "input-independent baseline"; 37 reasons 1.4-1.5 (inputs and labels misaligned / unrelated).
BASELINE_STEPS = 100  # Adam steps for each of the two copies
BASELINE_LR = 1e-3  # Adam's learning rate
BASELINE_BATCH = 64  # training batch size (at most)
HELD_OUT_FRACTION = 0.25  # share of the sampled samples held out when no val_data is given
BASELINE_MARGIN = 0.1  # real inputs must give a held-out loss at least 10% below the zeroed-input copy's
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
    inputs, one on uninformative inputs (zeros for floats, shuffled tokens for integer ids: :func:`baseline_inputs`);
    both are then evaluated (eval mode) on held-out samples (``val_data``, or a random ``HELD_OUT_FRACTION`` (25%)
    of the sampled samples), the baseline copy on uninformative held-out inputs. Fires when the real copy's held-out
    loss is not at least ``BASELINE_MARGIN`` (10%) below the baseline's. A real copy that is better but not yet by
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
        deadline: a ``time.perf_counter()`` value; past it the check stops with an 'info' finding and no verdict.
        progress: show a progress bar.

    Returns:
        At most one finding.
    """
    with forked_rng(seed=CHECK_SEED):
        train, held_out = _split(collect_batches(data), val_data)
        uninformative = list(zip(baseline_inputs([x for x, _ in train]), [y for _, y in train], strict=True))
        held_out_baseline = (baseline_inputs([held_out[0]])[0], held_out[1])
        real_copy, zero_copy = model_copy(model), model_copy(model)
        common = {"steps": steps, "lr": lr, "deadline": deadline, "progress": progress}
        trained = 0
        for _ in range(BASELINE_ROUNDS):
            real_trace = train_copy(real_copy, train, loss_fn, desc="baseline: real inputs", **common)
            zero_trace = train_copy(zero_copy, uninformative, loss_fn, desc="baseline: uninformative inputs", **common)
            trained += len(real_trace.losses)
            if not (real_trace.finished and zero_trace.finished):
                message = f"input-independent baseline stopped by the time budget after {trained} steps"
                return [make_finding("check.skipped", "info", message)]
            real_loss = evaluate(real_copy, held_out, loss_fn)
            zero_loss = evaluate(zero_copy, held_out_baseline, loss_fn)
            if not zero_loss > real_loss > (1 - BASELINE_MARGIN) * zero_loss:
                break  # decided: clearly better, no better at all, or non-finite
    return _baseline_findings(real_loss, zero_loss, trained, len(held_out[0]))


def baseline_inputs(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Uninformative but valid stand-ins for ``inputs``: zeros for floating inputs; for integer inputs (token ids)
    the same ids shuffled across every position of all the batches (under the check's seeded RNG)."""
    if not inputs or inputs[0].is_floating_point():
        return [torch.zeros_like(x) for x in inputs]
    flat = torch.cat([x.reshape(-1) for x in inputs])
    shuffled = flat[torch.randperm(len(flat))].split([x.numel() for x in inputs])
    return [ids.reshape(x.shape) for ids, x in zip(shuffled, inputs, strict=True)]


def _split(batches: list[Batch], val_data: object | None) -> tuple[list[Batch], Batch]:
    x, y = concat(batches)
    if val_data is not None:
        held_out = concat(collect_batches(val_data))
    else:
        order = torch.randperm(len(x))
        cut = max(1, int(len(x) * HELD_OUT_FRACTION))
        held_out = (x[order[:cut]], y[order[:cut]])
        x, y = x[order[cut:]], y[order[cut:]]
    if len(x) == 0:
        raise ValueError(f"got {len(held_out[0])} sample(s), expected at least 2 to hold some out; pass more data")
    size = min(BASELINE_BATCH, len(x))
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x) - size + 1, size)], held_out


def _baseline_findings(real_loss: float, zero_loss: float, steps: int, held_out: int) -> list[Finding]:
    evidence = {"real_inputs_loss": real_loss, "zeroed_inputs_loss": zero_loss, "steps": steps, "held_out": held_out}
    if not (math.isfinite(real_loss) and math.isfinite(zero_loss)):
        message = (
            f"input-independent baseline gave no verdict: the held-out loss is {real_loss:.4g} with real inputs and "
            f"{zero_loss:.4g} with uninformative ones (a non-finite loss is no evidence either way)"
        )
        return [make_finding("check.skipped", "info", message, evidence=evidence)]
    if real_loss < (1 - BASELINE_MARGIN) * zero_loss:
        return []
    message = (
        f"after {steps} steps the held-out loss is {real_loss:.4g} with real inputs and {zero_loss:.4g} with "
        "uninformative inputs (zeros; shuffled tokens for ids): the inputs carry no usable signal for the targets"
    )
    return [make_finding("data.no_signal", "warn", message, evidence=evidence)]
