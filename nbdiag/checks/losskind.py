"""What a loss function expects: class indices, binary targets or regression targets, in which output form, and the
lowest value it can reach."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossKind:
    """The contract of a known loss.

    Attributes:
        task: 'classes' (targets are class indices in [0, C)), 'binary' (targets in [0, 1], output shape),
            'regression' (targets of the output's shape), or 'other' (a loss nbdiag does not know).
        expects: what the model output should be: 'logits', 'log_probabilities', 'probabilities' or 'values'.
        name: the loss's name, for messages.
        ignore_index: the target value a class loss skips (None when it has none).
    """

    task: str
    expects: str
    name: str
    ignore_index: int | None = None


_MODULES: tuple[tuple[type, str, str], ...] = (
    (nn.CrossEntropyLoss, "classes", "logits"),
    (nn.NLLLoss, "classes", "log_probabilities"),
    (nn.BCEWithLogitsLoss, "binary", "logits"),
    (nn.BCELoss, "binary", "probabilities"),
    (nn.MSELoss, "regression", "values"),
    (nn.L1Loss, "regression", "values"),
    (nn.SmoothL1Loss, "regression", "values"),
    (nn.HuberLoss, "regression", "values"),
)
_FUNCTIONS = {
    F.cross_entropy: ("classes", "logits"),
    F.nll_loss: ("classes", "log_probabilities"),
    F.binary_cross_entropy_with_logits: ("binary", "logits"),
    F.binary_cross_entropy: ("binary", "probabilities"),
    F.mse_loss: ("regression", "values"),
    F.l1_loss: ("regression", "values"),
    F.smooth_l1_loss: ("regression", "values"),
    F.huber_loss: ("regression", "values"),
}
_DEFAULT_IGNORE_INDEX = -100  # torch's default for cross_entropy / nll_loss


def loss_kind(loss_fn: object) -> LossKind:
    """Classify ``loss_fn`` (a torch loss module or functional loss); unknown callables give task 'other'."""
    for cls, task, expects in _MODULES:
        if isinstance(loss_fn, cls):
            return LossKind(task, expects, cls.__name__, getattr(loss_fn, "ignore_index", None))
    for function, (task, expects) in _FUNCTIONS.items():
        if loss_fn is function:
            ignore = _DEFAULT_IGNORE_INDEX if task == "classes" else None
            return LossKind(task, expects, function.__name__, ignore)
    return LossKind("other", "values", type(loss_fn).__name__)


def uses_class_indices(kind: LossKind, output: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether a class loss gets class-index targets (not per-class probabilities of the output's shape)."""
    soft = target.is_floating_point() and target.shape[1:] == output.shape[1:]  # (N, C, ...) probabilities
    return kind.task == "classes" and not soft


def valid_class_targets(kind: LossKind, target: torch.Tensor) -> torch.Tensor:
    """Class-index targets without the entries the loss ignores (``ignore_index``), flattened."""
    flat = target.reshape(-1)
    if kind.ignore_index is not None:
        flat = flat[flat != kind.ignore_index]
    return flat


def loss_floor(loss_fn: object, y: torch.Tensor) -> float | None:
    """The lowest value ``loss_fn`` can reach on targets ``y``, or None when nbdiag does not know it.

    Cross-entropy on class indices: 0 (with label smoothing: unknown here, the smoothed target's entropy needs the
    model's C); on per-class probabilities: their entropy (the floor of a cross-entropy). Binary
    cross-entropy on 0/1 targets: 0; on soft targets: their binary entropy. Regression losses: 0. ``reduction``
    'mean' or 'sum' is followed; anything else (weights, ``pos_weight``, unknown losses) gives None.
    """
    kind = loss_kind(loss_fn)
    reduction = getattr(loss_fn, "reduction", "mean")
    weighted = getattr(loss_fn, "weight", None) is not None or getattr(loss_fn, "pos_weight", None) is not None
    if kind.task == "regression":
        return 0.0
    if kind.task not in ("classes", "binary") or weighted or reduction not in ("mean", "sum"):
        return None
    if kind.task == "binary":
        if not y.is_floating_point():
            return None
        p = y.double().clamp(0, 1)
        entropy = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))
        return float(entropy.mean() if reduction == "mean" else entropy.sum())
    if y.is_floating_point():  # per-class probabilities (N, C, ...)
        entropy = -torch.xlogy(y.double(), y.double()).sum(dim=1)
        return float(entropy.mean() if reduction == "mean" else entropy.sum())
    return 0.0 if float(getattr(loss_fn, "label_smoothing", 0.0)) == 0 else None  # smoothed: C is the model's
