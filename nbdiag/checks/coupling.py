"""Backprop dependency check on the loss: sample i's loss gradient must not depend on other samples' outputs.

A per-sample loss reduced over the batch (a mean or a sum of one term per sample) gives d loss / d output_i that
depends on output_i and target_i only. A custom loss that normalises over the batch dimension (``log_softmax(dim=0)``,
a softmax over the samples) couples them: the model still trains, to a worse optimum (issue 19, class 3: 88% instead
of 98% on digits). Source: seeds/001 (Karpathy) 2 "use backprop to chart dependencies", applied to the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nbdiag.checks.batches import collect_batches, to_device
from nbdiag.checks.calls import run_model
from nbdiag.checks.losskind import loss_kind
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

COUPLING_SAMPLES = 8  # the probe's batch: the first samples of the first batch
# Relative change of sample i's loss gradient when only the other samples' outputs change. A per-sample loss gives
# exactly 0 (its term for sample i does not read them); float32 round-off in a batch-mean stays below 1e-6.
COUPLING_TOLERANCE = 1e-4


def check_loss_coupling(
    model: torch.nn.Module, data: object, loss_fn: Callable, num_classes: int | None = None
) -> list[Finding]:
    """The loss couples the samples of a batch (``loss.batch_coupling``).

    Only for a loss nbdiag does not know (torch's losses are per-sample). On an eval-mode copy's output for the first
    ``COUPLING_SAMPLES`` samples, the gradient of the loss with respect to sample i's output is taken twice: as is, and
    after the other samples' outputs are replaced by perturbed ones (for the first and the last sample). A relative
    change above ``COUPLING_TOLERANCE`` means the loss reads across the batch. Contrastive and batch-statistic losses do
    that by design, so alone it is 'info'; it is 'warn' when the setup is a per-sample classifier by its own account:
    ``num_classes`` given, class-index targets, and an ``(N, num_classes)`` output. Source: seeds/001 (Karpathy) 2
    "use backprop to chart dependencies".

    Returns:
        At most one finding; none for known losses, outputs that are not one tensor per sample, or a loss that cannot
        run on the probe (it is called on a sub-batch).
    """
    if loss_kind(loss_fn).task != "other":
        return []
    x, y = collect_batches(data)[0]
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(model, train=False)
        x, y = to_device((x, y), model_device(clone))
        with torch.no_grad():
            output = run_model(clone, x)
        if not _per_sample(output, y):
            return []
        full_loss, batch = _value(loss_fn, output, y), len(y)
        n = min(batch, COUPLING_SAMPLES)
        output, y = output[:n].detach(), y[:n]
        try:
            changes = [_gradient_change(loss_fn, output, y, i) for i in (0, n - 1)]
        except Exception:  # noqa: BLE001 -- a loss that needs the whole batch (fixed shapes): not checkable
            return []
    coupling = max((change for change in changes if change is not None), default=0.0)
    if coupling <= COUPLING_TOLERANCE:
        return []
    return [_finding(coupling, output, y, num_classes, full_loss, batch)]


def _per_sample(output: object, y: object) -> bool:
    """A floating output tensor and a target tensor with the same first (batch) dimension of at least 2."""
    return (
        isinstance(output, torch.Tensor)
        and output.is_floating_point()
        and isinstance(y, torch.Tensor)
        and output.ndim >= 1
        and y.ndim >= 1
        and len(output) == len(y) >= 2
    )


def _value(loss_fn: Callable, output: torch.Tensor, y: torch.Tensor) -> float | None:
    try:
        with torch.no_grad():
            loss = loss_fn(output, y)
        return float(loss) if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None
    except Exception:  # noqa: BLE001 -- only a hint in the message
        return None


def _gradient(loss_fn: Callable, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    leaf = output.clone().requires_grad_(True)
    loss = loss_fn(leaf, y)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        return None
    (grad,) = torch.autograd.grad(loss.reshape(()), leaf, allow_unused=True)
    return grad


def _gradient_change(loss_fn: Callable, output: torch.Tensor, y: torch.Tensor, i: int) -> float | None:
    """Relative change of d loss / d output_i when every other sample's output is perturbed (None: no gradient)."""
    before = _gradient(loss_fn, output, y)
    if before is None or not torch.isfinite(before).all():
        return None
    others = torch.ones(len(output), dtype=torch.bool, device=output.device)
    others[i] = False
    scale = output.float().std().clamp_min(1e-3).to(output.dtype)
    perturbed = output.clone()
    perturbed[others] += torch.randn_like(output[others]) * scale
    after = _gradient(loss_fn, perturbed, y)
    own = float(before[i].float().norm())
    if after is None or own == 0.0:
        return None
    return float((after[i] - before[i]).float().norm()) / own


def _finding(
    coupling: float, output: torch.Tensor, y: torch.Tensor, num_classes: int | None, loss: float | None, batch: int
) -> Finding:
    classifier = (
        num_classes is not None
        and not y.is_floating_point()
        and y.ndim == 1
        and output.ndim == 2
        and output.shape[1] == num_classes
    )
    evidence: dict = {"relative_gradient_change": coupling}
    message = (
        f"sample i's loss gradient changes by {coupling:.3g} (relative) when only the other samples' outputs change: "
        "the loss couples the samples of a batch"
    )
    if classifier:
        evidence.update(num_classes=num_classes, ln_num_classes=math.log(num_classes), ln_batch=math.log(batch))
        if loss is not None:
            evidence["initial_loss"] = loss
            message += (
                f"; the initial loss is {loss:.3g}, against ln C = {math.log(num_classes):.3g} for {num_classes} "
                f"classes (ln of the batch size {batch}: {math.log(batch):.3g})"
            )
        message += (
            ". For a per-sample classification loss this is a bug: a softmax/log_softmax/normalisation over dim=0 "
            "(the batch) instead of dim=1 (the classes)"
        )
    else:
        message += (
            " (by design in contrastive or batch-statistic losses; a bug in a per-sample loss: check the dim= of its "
            "softmax or normalisation)"
        )
    return make_finding("loss.batch_coupling", "warn" if classifier else "info", message, evidence=evidence)
