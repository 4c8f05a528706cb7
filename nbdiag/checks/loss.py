"""Loss checks: the loss at initialization against its closed form, and what form of output the loss receives."""

from __future__ import annotations

import math

import torch
from torch import nn

from nbdiag.checks.batches import collect_batches, concat, to_device
from nbdiag.checks.calls import loss_of, prediction, run_model
from nbdiag.checks.losskind import LossKind, loss_kind, uses_class_indices
from nbdiag.checks.sandbox import CHECK_SEED, forward_copy, model_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

# Initial loss (Karpathy 2 "verify loss @ init"; 37 reasons 3.2 "look for correct loss at chance"):
# class and binary losses are flagged beyond +-30% of -ln(1/C) (C = 10: outside [1.61, 2.99]);
# MSE beyond a factor 10 of Var y + Var f (a fresh model f: the loss without a mean offset, see expected_initial_loss).
# Calibrated on the corpus (issue 25): pytorch/examples super_resolution (pixel targets of mean ~0.4, a fresh model
# at ~0) starts at 3.5x and trains fine; the zoo's targets-around-50 bug starts at ~1000x.
CLASS_LOSS_TOLERANCE = 0.3
MSE_LOSS_FACTOR = 10.0
INITIAL_LOSS_BATCHES = 4
# Output form: rows summing to 1 within this tolerance (probabilities) or with logsumexp within it of 0
# (log-probabilities) (37 reasons 3.4 "check the loss input").
SIMPLEX_TOLERANCE = 1e-3
MIN_VALUES_FOR_SIGMOID = 16  # a sigmoid is only inferred from at least this many outputs, all in (0, 1)


def expected_initial_loss(kind: LossKind, output: torch.Tensor, y: torch.Tensor, num_classes: int | None):
    """The loss a well-initialized model gives before training, or None when nbdiag has no closed form.

    Class indices: -ln(1/C) = ln C (uniform prediction), C = ``num_classes`` or the output width. Binary: ln 2.
    MSE: the variance of the targets plus the variance of the fresh model's outputs (per output dimension,
    averaged): E[(f - y)^2] = Var f + Var y + (E f - E y)^2 when a fresh model's outputs do not yet covary with the
    targets, so what is judged is the mean offset (seeds/001 "init well": a final bias far from the targets' mean),
    not the spread a fresh model is born with. ``output`` holds the outputs for the samples of ``y``.
    """
    if kind.task == "classes" and uses_class_indices(kind, output, y) and output.ndim >= 2:
        return math.log(num_classes if num_classes is not None else output.shape[1])
    if kind.task == "binary":
        return math.log(2.0)
    if kind.name in ("MSELoss", "mse_loss"):
        spread = y.reshape(len(y), -1).double().var(dim=0, unbiased=False).mean()
        if output.shape[0] == y.shape[0]:
            spread = spread + output.reshape(len(output), -1).double().var(dim=0, unbiased=False).mean()
        return float(spread)
    return None


def check_initial_loss(
    model: nn.Module, data: object, loss_fn: object, num_classes: int | None = None
) -> list[Finding]:
    """The loss at initialization far from its expected value (``loss.initial_mismatch``, warn).

    Measured on a fresh copy in train mode, without updates, averaged over up to ``INITIAL_LOSS_BATCHES`` batches.
    Expected: ln C for class losses (:func:`expected_initial_loss`), flagged when off by more than
    ``CLASS_LOSS_TOLERANCE`` (30%) of it; Var y + Var f for MSE, flagged beyond a factor ``MSE_LOSS_FACTOR``
    (10); 'fail' when the loss is already NaN/Inf; ``loss.constant`` ('fail') when the loss is the same on every
    batch and gives no parameter a gradient (CrossEntropyLoss over one output unit); 'info' when the model has
    frozen parameters (a pretrained base:
    the expectation is for a freshly initialised model). Source: seeds/001 (Karpathy) 2 "verify loss @ init";
    seeds/003 (37 reasons) 3.2; seeds/004 (CS231n lecture 5) babysitting, sanity check of the loss.

    Args:
        model: the model; a copy of it is evaluated.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.
        num_classes: the number of classes; inferred from the output width when None.

    Returns:
        At most one finding; none for a loss without a closed form.
    """
    kind = loss_kind(loss_fn)
    batches = collect_batches(data)[:INITIAL_LOSS_BATCHES]
    with forked_rng(seed=CHECK_SEED), torch.no_grad():
        clone = model_copy(model, train=True)
        device = model_device(clone)
        results = [(run_model(clone, x), y) for x, y in (to_device(batch, device) for batch in batches)]
        losses = [float(loss_of(loss_fn, output, y)) for output, y in results]
    measured = sum(losses) / len(losses)
    if len(set(losses)) == 1 and math.isfinite(losses[0]) and _no_gradient(model, batches[0], loss_fn):
        return [_constant_loss(losses, prediction(results[0][0]), kind)]
    outputs = [prediction(output).detach().cpu() for output, _ in results]
    if kind.task == "regression" and len({tuple(o.shape[1:]) for o in outputs}) == 1:
        outputs = [torch.cat(outputs)]  # every sample's output, to go with every sample's target
    expected = expected_initial_loss(kind, outputs[0], concat(batches)[1], num_classes)
    if expected is None:
        return []
    evidence = {"loss": measured, "expected": expected, "loss_fn": kind.name}
    if not math.isfinite(measured):
        return [make_finding("loss.initial_mismatch", "fail", f"the initial loss is {measured}", evidence=evidence)]
    if not _initial_loss_mismatch(kind, measured, expected):
        return []
    reduction = getattr(loss_fn, "reduction", "mean")
    hint = " (reduction='sum' scales it by the batch size)" if reduction == "sum" else ""
    reference = "ln C" if kind.task == "classes" else "ln 2" if kind.task == "binary" else "Var y + Var of the outputs"
    message = f"initial loss {measured:.4g}, expected about {expected:.4g} ({reference}){hint}"
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    evidence["frozen_parameters"] = frozen
    if frozen:  # issue 25: LoRA / fine-tuning start from what the base learnt, not from a fresh model's chance
        message += (
            f"; but {frozen:,} parameters are frozen: a pretrained model starts from what it learnt, and this "
            "expectation holds for a freshly initialised model only"
        )
        return [make_finding("loss.initial_mismatch", "info", message, evidence=evidence)]
    return [make_finding("loss.initial_mismatch", "warn", message, evidence=evidence)]


def _no_gradient(model: nn.Module, batch: tuple, loss_fn: object) -> bool:
    """Whether the loss on ``batch`` gives every parameter of a train-mode copy an exactly zero (or no) gradient."""
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(model, train=True)
        x, y = to_device(batch, model_device(clone))
        loss = loss_of(loss_fn, run_model(clone, x), y)
        if not loss.requires_grad:
            return True
        loss.backward()
    return not any(p.grad is not None and bool(p.grad.any()) for p in clone.parameters())


def _constant_loss(losses: list[float], output: torch.Tensor, kind: LossKind) -> Finding:
    """``loss.constant`` (fail): the same loss on every batch and no gradient: nothing can train."""
    message = f"the loss is {losses[0]:.4g} on each of {len(losses)} batches and gives no parameter a gradient"
    advice = None
    if kind.task == "classes" and output.ndim >= 2 and output.shape[1] == 1:
        message += f": {kind.name} over a single output unit is always 0 (softmax over one class is 1)"
        advice = (
            "Give the model one output per class (C >= 2) for CrossEntropyLoss, or keep one logit and use "
            "BCEWithLogitsLoss with float 0/1 targets."
        )
    evidence = {"loss": losses[0], "batches": len(losses), "output_shape": list(output.shape)}
    return make_finding("loss.constant", "fail", message, evidence=evidence, advice=advice)


def _initial_loss_mismatch(kind: LossKind, measured: float, expected: float) -> bool:
    if kind.task == "regression":
        if expected <= 0:
            return measured > 0
        return not (1 / MSE_LOSS_FACTOR <= measured / expected <= MSE_LOSS_FACTOR)
    return abs(measured - expected) > CLASS_LOSS_TOLERANCE * expected


def _row_sums_to_one(output: torch.Tensor) -> bool:
    return bool((output >= 0).all()) and bool(((output.sum(dim=1) - 1).abs() <= SIMPLEX_TOLERANCE).all())


def _log_probabilities(output: torch.Tensor) -> bool:
    lse = torch.logsumexp(output, dim=1)
    return bool((output <= SIMPLEX_TOLERANCE).all()) and bool((lse.abs() <= SIMPLEX_TOLERANCE).all())


def check_loss_input(model: nn.Module, data: object, loss_fn: object) -> list[Finding]:
    """Probabilities where the loss expects logits, or the reverse (``loss.probabilities_to_ce``).

    Judged on the output of an eval-mode copy for the first batch, class dimension 1:
    CrossEntropyLoss given rows that are >= 0 and sum to 1 (a softmax): 'fail'; given log-probabilities
    (<= 0, logsumexp 0): 'info' (harmless, log_softmax is idempotent). NLLLoss given anything but log-probabilities:
    'fail'. BCEWithLogitsLoss given at least ``MIN_VALUES_FOR_SIGMOID`` outputs all in (0, 1) (a sigmoid): 'warn'.
    BCELoss given values outside [0, 1]: 'fail'. Tolerance ``SIMPLEX_TOLERANCE`` (1e-3).
    Source: seeds/003 (37 reasons) 3.4 "check the loss input".

    Args:
        model: the model; a copy of it runs one forward pass.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.

    Returns:
        At most one finding.
    """
    kind = loss_kind(loss_fn)
    with forked_rng(seed=CHECK_SEED):
        output = prediction(forward_copy(model, collect_batches(data)[0][0], train=False)).float().cpu()
    if kind.task == "classes" and output.ndim >= 2 and output.shape[1] >= 2:
        return _class_input_findings(kind, output)
    if kind.task == "binary":
        return _binary_input_findings(kind, output)
    return []


def _form_finding(severity: str, message: str, output: torch.Tensor) -> Finding:
    evidence = {"min": float(output.min()), "max": float(output.max()), "row_sum_mean": float(output.sum(1).mean())}
    return make_finding("loss.probabilities_to_ce", severity, message, evidence=evidence)


def _class_input_findings(kind: LossKind, output: torch.Tensor) -> list[Finding]:
    probabilities, log_probabilities = _row_sums_to_one(output), _log_probabilities(output)
    if kind.expects == "logits" and probabilities:
        message = f"{kind.name} got probabilities (rows >= 0 summing to 1); remove the softmax, it expects logits"
        return [_form_finding("fail", message, output)]
    if kind.expects == "logits" and log_probabilities:
        message = f"{kind.name} got log-probabilities; harmless (log_softmax is idempotent) but NLLLoss is meant"
        return [_form_finding("info", message, output)]
    if kind.expects == "log_probabilities" and not log_probabilities:
        what = "probabilities; apply log_softmax" if probabilities else "raw logits; add log_softmax"
        message = f"{kind.name} expects log-probabilities but got {what} (or use CrossEntropyLoss)"
        return [_form_finding("fail", message, output)]
    return []


def _binary_input_findings(kind: LossKind, output: torch.Tensor) -> list[Finding]:
    inside = bool(((output > 0) & (output < 1)).all())
    if kind.expects == "logits" and inside and output.numel() >= MIN_VALUES_FOR_SIGMOID:
        message = f"{kind.name} got outputs all in (0, 1), probably after a sigmoid; it applies one itself"
        return [make_finding("loss.probabilities_to_ce", "warn", message, evidence=_range(output))]
    if kind.expects == "probabilities" and not bool(((output >= 0) & (output <= 1)).all()):
        message = f"{kind.name} got values outside [0, 1] (logits?); add a sigmoid or use BCEWithLogitsLoss"
        return [make_finding("loss.probabilities_to_ce", "fail", message, evidence=_range(output))]
    return []


def _range(output: torch.Tensor) -> dict[str, float]:
    return {"min": float(output.min()), "max": float(output.max())}
