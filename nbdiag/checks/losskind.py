"""What a loss function expects: class indices, binary targets or regression targets, and in which output form."""

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
