"""Target checks: do the targets fit the loss and the model's output, and how are the labels spread."""

from __future__ import annotations

import torch
from torch import nn

from nbdiag.checks.batches import SAMPLE_BATCHES, collect_batches, concat
from nbdiag.checks.calls import prediction
from nbdiag.checks.losskind import LossKind, loss_kind, uses_class_indices, valid_class_targets
from nbdiag.checks.sandbox import CHECK_SEED, forward_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.rng import forked_rng

TARGET_SCALE_RATIO = 100.0  # target spread / fresh output spread: two orders of magnitude

_INDEX_DTYPES = (torch.int64, torch.uint8)  # what cross_entropy / nll_loss accept as class indices
# Unused output units: labels that reach at most this fraction of the output width suggest an oversized head.
MAX_UNUSED_WIDTH_FRACTION = 0.25
# Imbalance: most / least frequent observed class at or above this ratio (37 reasons 1.8 imbalanced classes).
IMBALANCE_RATIO = 10.0
# Ordered data: batches holding fewer than half the distinct labels a shuffled batch would (37 reasons 1.7, 1.10).
MIN_BATCH_DIVERSITY = 0.5


def check_targets(model: nn.Module, data: object, loss_fn: object, num_classes: int | None = None) -> list[Finding]:
    """Targets that do not fit the loss: range, dtype, shape (``data.label_range``), caught before the loss crashes.

    Class losses (CrossEntropyLoss, NLLLoss): int64 indices in [0, C) with shape (N, ...) where the output is
    (N, C, ...); C is the output width. 'fail' for labels out of range (e.g. 1..C), float or int32 indices, wrong
    shape; 'warn' when ``num_classes`` differs from the output width, or (``num_classes`` not given) when the labels
    reach at most ``MAX_UNUSED_WIDTH_FRACTION`` (1/4) of the output units. Binary losses: float targets in [0, 1]
    of the output's shape. Regression losses: floating targets of the output's shape ((N,) against (N, 1)
    broadcasts silently to (N, N)). Source: seeds/003 (37 reasons) 3.4 "check the loss input".

    Args:
        model: the model; a copy of it runs one forward pass for the output shape.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss; unknown losses are not judged.
        num_classes: the number of classes, when known.

    Returns:
        Findings; empty when the targets fit.
    """
    kind = loss_kind(loss_fn)
    if kind.task == "other":
        return []
    batches = collect_batches(data)
    with forked_rng(seed=CHECK_SEED):
        output = prediction(forward_copy(model, batches[0][0])).cpu()
    y = concat(batches)[1]
    if kind.task == "classes":
        return _class_target_findings(kind, output, y, num_classes)
    if kind.task == "binary":
        return _binary_target_findings(kind, output, y)
    return _regression_target_findings(kind, output, y)


def _label_finding(severity: str, message: str, **evidence: object) -> Finding:
    return make_finding("data.label_range", severity, message, evidence=evidence)


def _class_target_findings(kind: LossKind, output: torch.Tensor, y: torch.Tensor, num_classes: int | None):
    if output.ndim < 2:
        return [_label_finding("fail", f"{kind.name} got output {tuple(output.shape)}, expected (N, C)")]
    width = output.shape[1]
    if not uses_class_indices(kind, output, y):
        return []  # per-class probabilities of the output's shape (cross_entropy soft targets)
    if y.dtype not in _INDEX_DTYPES:
        hint = "; try y.long()" if not y.is_floating_point() or bool((y == y.round()).all()) else ""
        return [_label_finding("fail", f"{kind.name} got {y.dtype} targets, expected int64 class indices{hint}")]
    expected_shape = (output.shape[0],) + tuple(output.shape[2:])
    if tuple(y.shape[1:]) != expected_shape[1:]:
        return [
            _label_finding(
                "fail",
                f"{kind.name} got targets {tuple(y.shape)} for output {tuple(output.shape)}, expected "
                f"(N{', ' if expected_shape[1:] else ''}{', '.join(map(str, expected_shape[1:]))})",
                target_shape=tuple(y.shape),
                output_shape=tuple(output.shape),
            )
        ]
    return _class_range_findings(valid_class_targets(kind, y).long(), width, num_classes)


def _class_range_findings(labels: torch.Tensor, width: int, num_classes: int | None) -> list[Finding]:
    if labels.numel() == 0:
        return []
    low, high = int(labels.min()), int(labels.max())
    classes = num_classes if num_classes is not None else width
    if low < 0 or high >= min(classes, width):
        return [
            _label_finding(
                "fail",
                f"labels span [{low}, {high}], expected [0, {min(classes, width)}) for {width} outputs"
                + (f" and num_classes={num_classes}" if num_classes is not None else "")
                + ("; labels 1..C need y - 1" if low == 1 and high == width else ""),
                min=low,
                max=high,
                outputs=width,
                num_classes=num_classes,
            )
        ]
    if num_classes is not None and num_classes != width:
        message = f"the model has {width} outputs, but num_classes={num_classes}; the final layer's width is wrong"
        return [_label_finding("warn", message, outputs=width, num_classes=num_classes)]
    distinct = int(labels.unique().numel())
    if num_classes is None and distinct >= 2 and high + 1 <= MAX_UNUSED_WIDTH_FRACTION * width:
        message = f"labels span [0, {high}] but the model has {width} outputs; is the final layer too wide?"
        return [_label_finding("warn", message, max=high, outputs=width, distinct_labels=distinct)]
    return []


def _binary_target_findings(kind: LossKind, output: torch.Tensor, y: torch.Tensor) -> list[Finding]:
    if not y.is_floating_point():
        return [_label_finding("fail", f"{kind.name} got {y.dtype} targets, expected floats; try y.float()")]
    if tuple(y.shape[1:]) != tuple(output.shape[1:]):
        shapes = f"targets {tuple(y.shape)} for output {tuple(output.shape)}"
        return [_label_finding("fail", f"{kind.name} got {shapes}, expected the output's shape")]
    low, high = float(y.min()), float(y.max())
    if low < 0 or high > 1:
        return [_label_finding("fail", f"binary targets span [{low:.4g}, {high:.4g}], expected [0, 1]")]
    return []


def _regression_target_findings(kind: LossKind, output: torch.Tensor, y: torch.Tensor) -> list[Finding]:
    if tuple(y.shape[1:]) != tuple(output.shape[1:]):
        broadcast = y.ndim != output.ndim and y[0].numel() == output[0].numel()
        hint = "; the loss broadcasts them to (N, N) silently: reshape y to the output's shape" if broadcast else ""
        shapes = f"targets {tuple(y.shape)} for output {tuple(output.shape)}"
        return [_label_finding("fail", f"{kind.name} got {shapes}, expected the output's shape{hint}")]
    if not y.is_floating_point():
        return [_label_finding("fail", f"{kind.name} got {y.dtype} targets, expected floats; try y.float()")]
    return _target_scale_findings(kind, output, y)


def _target_scale_findings(kind: LossKind, output: torch.Tensor, y: torch.Tensor) -> list[Finding]:
    """``data.target_scale`` (warn): the targets' spread is ``TARGET_SCALE_RATIO`` (100) times the fresh model's
    output spread or more (raw regression targets of ~1e4 against outputs of ~0.5): the last layer would have to
    grow 100x before the loss can say anything about the inputs. Spreads, not means: a mean offset is
    ``loss.initial_mismatch``'s. Source: seeds/001 (Karpathy) 2 "init well"; seeds/003 (37 reasons) 2.1."""
    target_std = float(y.reshape(len(y), -1).double().std(dim=0, unbiased=False).mean()) if len(y) > 1 else 0.0
    output_std = float(output.reshape(len(output), -1).double().std(dim=0, unbiased=False).mean())
    if len(output) < 2 or not output_std > 0 or target_std < TARGET_SCALE_RATIO * output_std:
        return []
    message = (
        f"the targets spread {target_std:.3g} (std) while the fresh model's outputs spread {output_std:.3g}: "
        f"{target_std / output_std:.0f}x. Normalize the targets (subtract their mean, divide by their std; undo it "
        "on the predictions)"
    )
    evidence = {"target_std": target_std, "output_std": output_std, "ratio": target_std / output_std}
    return [make_finding("data.target_scale", "warn", message, evidence=evidence)]


def class_labels(kind: LossKind, y: torch.Tensor) -> torch.Tensor | None:
    """Targets as 1-D integer class labels, or None when the task is not single-label classification."""
    if kind.task == "classes" and not y.is_floating_point():
        return valid_class_targets(kind, y).long()
    if kind.task == "binary" and y[0].numel() == 1 and bool(((y == 0) | (y == 1)).all()):
        return y.reshape(-1).long()
    if kind.task == "other" and y.ndim == 1 and not y.is_floating_point():
        return y.long()
    return None


def check_class_balance(data: object, loss_fn: object, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """Strong class imbalance over the sampled labels (``data.class_imbalance``, warn).

    Fires when the most frequent observed class has at least ``IMBALANCE_RATIO`` (10) times the samples of the
    least frequent one: 'warn' for one label per sample, 'info' when the loss already weights the classes
    (``weight=`` / ``pos_weight=``) or for dense targets (one label per token or pixel:
    next-token targets follow the words' Zipf distribution, a segmentation mask is mostly background; that is the
    task, not a sampling bug). Source: seeds/003 (37 reasons) 1.8 "imbalanced data".

    Args:
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss, to tell classification from regression.
        max_batches: batches read from ``data``.

    Returns:
        At most one finding; none for regression targets.
    """
    y = concat(collect_batches(data, max_batches))[1]
    labels = class_labels(loss_kind(loss_fn), y)
    if labels is None or labels.numel() == 0:
        return []
    classes, counts = labels.unique(return_counts=True)
    if len(classes) < 2:
        return []
    ratio = float(counts.max() / counts.min())
    if ratio < IMBALANCE_RATIO:
        return []
    most, least = int(classes[counts.argmax()]), int(classes[counts.argmin()])
    per_sample = y[0].numel() if y.ndim > 1 and not y.is_floating_point() else 1  # labels per sample
    unit = "samples" if per_sample == 1 else f"labels (one per position, {per_sample} per sample)"
    message = f"class {most} has {ratio:.3g}x the {unit} of class {least} ({int(counts.max())} vs {int(counts.min())})"
    if per_sample > 1:
        message += ": dense targets (tokens, pixels) are skewed by nature; weight the loss if rare classes matter"
    evidence = {
        "ratio": ratio,
        "labels_per_sample": per_sample,
        "counts": {c: n for c, n in zip(classes.tolist(), counts.tolist(), strict=True)},
    }
    severity = "warn" if per_sample == 1 else "info"
    weighted = _loss_weights(loss_fn)
    advice = None
    if weighted:  # issue 25: "reweight the loss" is wrong advice when the loss already has weight=
        severity = "info"
        message += f"; the loss already weights the classes ({weighted}=), so this looks handled"
        advice = "The loss is already weighted; check that the weights match the counts, and report per-class metrics."
    evidence["loss_weighted"] = bool(weighted)
    return [make_finding("data.class_imbalance", severity, message, evidence=evidence, advice=advice)]


def _loss_weights(loss_fn: object) -> str:
    """The name of the class-weighting argument a torch loss was given (``weight`` / ``pos_weight``), or ""."""
    for name in ("weight", "pos_weight"):
        if isinstance(getattr(loss_fn, name, None), torch.Tensor):
            return name
    return ""


def check_batch_labels(data: object, loss_fn: object, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """Batches holding one or few labels, as from sorted, unshuffled data (``data.single_class_batches``, warn).

    Compares the mean number of distinct labels per batch with the number a shuffled batch of the same size
    would hold given the pooled label frequencies p_c (expected distinct = sum_c 1 - (1 - p_c)^B); fires below
    ``MIN_BATCH_DIVERSITY`` (half), or when every sampled batch holds the same single label.
    Source: seeds/003 (37 reasons) 1.7 "shuffle the dataset", 1.10 "check several labels per batch".

    Args:
        data: a DataLoader or an iterable of batches (a single batch is not judged).
        loss_fn: the loss, to tell classification from regression.
        max_batches: batches read from ``data``.

    Returns:
        At most one finding.
    """
    kind = loss_kind(loss_fn)
    per_batch = [class_labels(kind, y) for _, y in collect_batches(data, max_batches)]
    if len(per_batch) < 2 or any(labels is None or labels.numel() == 0 for labels in per_batch):
        return []
    return _diversity_findings(per_batch)


def _diversity_findings(per_batch: list[torch.Tensor]) -> list[Finding]:
    pooled_classes, pooled_counts = torch.cat(per_batch).unique(return_counts=True)
    if len(pooled_classes) == 1:
        message = f"all {len(per_batch)} sampled batches hold only label {int(pooled_classes[0])}"
        evidence = {"batches": len(per_batch), "label": int(pooled_classes[0])}
        return [make_finding("data.single_class_batches", "warn", message, evidence=evidence)]
    p = pooled_counts.double() / pooled_counts.sum()
    observed = sum(labels.unique().numel() for labels in per_batch) / len(per_batch)
    size = sum(labels.numel() for labels in per_batch) / len(per_batch)
    expected = float((1 - (1 - p) ** size).sum())
    if observed >= MIN_BATCH_DIVERSITY * expected:
        return []
    message = (
        f"batches hold {observed:.2g} distinct labels on average; shuffled batches of {size:.0f} would hold "
        f"{expected:.2g}: the data looks ordered by label"
    )
    evidence = {"distinct_per_batch": observed, "expected_if_shuffled": expected, "batches": len(per_batch)}
    return [make_finding("data.single_class_batches", "warn", message, evidence=evidence)]
