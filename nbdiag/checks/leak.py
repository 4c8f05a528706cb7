"""Too good to be true: one input feature alone predicts the label, or the validation set is the training set.

Source: seeds/001 (Karpathy, recipe) 1 "become one with the data" (look for leaks, duplicates) and 2 (dumb
baselines: a result that beats them by too much is suspicious).
"""

from __future__ import annotations

import numpy as np
import torch

from nbdiag.checks.batches import SAMPLE_BATCHES, Batch, collect_batches, concat
from nbdiag.checks.calls import features as input_features
from nbdiag.checks.duplicates import _sample_digests
from nbdiag.checks.losskind import loss_kind
from nbdiag.findings import Finding, make_finding

LEAK_ACCURACY = 0.99  # one feature predicts held-out labels this well ...
MAX_MAJORITY = 0.9  # ... on labels not already this dominated by one class
MIN_SAMPLES = 64  # fewer sampled samples cannot tell a leak from chance
MAX_CODES = 32  # a feature with more distinct values is cut into this many quantile bins
MAX_FEATURES = 4096  # wider inputs are judged on an evenly strided subset of features
SAME_SPLIT_FRACTION = 0.9  # validation samples found in training: from this fraction on, validation is training
SAME_SPLIT_ADVICE = (  # the catalog's advice is for a leaking feature; here no feature leaks, the split does
    "Split the data once, before any preprocessing or augmentation, and draw the validation set only from the "
    "held-out part: no validation sample may also be a training sample."
)


def check_target_leak(data: object, loss_fn: object, val_data: object | None = None) -> list[Finding]:
    """An input feature (a column, a fixed pixel) that alone predicts the class label (``data.target_leak``, warn),
    and a validation set whose samples are (almost) all training samples (warn).

    Each feature is turned into at most ``MAX_CODES`` codes (its distinct values, or quantile bins) and the
    majority label of each code is learned on every other sample and scored on the rest (2-fold): a feature
    reaching ``LEAK_ACCURACY`` (99%) held-out accuracy on labels whose majority class is below ``MAX_MAJORITY``
    leaks the label. Only class-index targets with one label per sample are judged (multi-label ``(N, K)`` float
    targets are not: issue 25, they crashed the check). Validation samples are compared exactly (hashes, as in
    ``data.duplicates``); from ``SAME_SPLIT_FRACTION`` (90%) found in training on, validation measures training.

    Args:
        data: the training data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss (says whether targets are classes).
        val_data: the validation data in the same forms, or None.

    Returns:
        Up to two findings.
    """
    batches = collect_batches(data, SAMPLE_BATCHES)
    findings = _feature_leak(batches, loss_fn)
    if val_data is not None:
        findings += _same_split(batches, collect_batches(val_data, SAMPLE_BATCHES))
    return findings


def _feature_leak(batches: list[Batch], loss_fn: object) -> list[Finding]:
    x, y = concat(batches)
    x = input_features(x)
    if loss_kind(loss_fn).task not in ("classes", "binary") or not _class_labels(y) or len(y) < MIN_SAMPLES:
        return []
    if y.numel() != len(y):  # one label per sample only: multi-label (N, K) targets, per-token labels are not judged
        return []
    labels = y.reshape(-1).long().numpy()
    labels = np.unique(labels, return_inverse=True)[1]
    majority = np.bincount(labels).max() / len(labels)
    if majority >= MAX_MAJORITY:
        return []
    features = x.reshape(len(x), -1).double().numpy()
    columns = np.unique(np.linspace(0, features.shape[1] - 1, min(features.shape[1], MAX_FEATURES)).astype(int))
    scores = np.array([_held_out_accuracy(features[:, j], labels) for j in columns])
    best = int(np.argmax(scores))
    if scores[best] < LEAK_ACCURACY:
        return []
    feature = int(columns[best])
    where = _position(feature, tuple(x.shape[1:]))
    message = (
        f"input {where} alone predicts the label with {scores[best]:.1%} held-out accuracy (majority class "
        f"{majority:.0%}): too good to be true; is the label (or an id) leaking into the inputs?"
    )
    evidence = {"feature": feature, "accuracy": float(scores[best]), "majority": float(majority), "samples": len(y)}
    return [make_finding("data.target_leak", "warn", message, evidence=evidence)]


def _class_labels(y: torch.Tensor) -> bool:
    return not y.is_floating_point() and y.ndim == 1 or (y.is_floating_point() and bool((y == y.round()).all()))


def _codes(values: np.ndarray) -> np.ndarray:
    distinct, codes = np.unique(values, return_inverse=True)
    if len(distinct) <= MAX_CODES:
        return codes
    edges = np.quantile(values, np.linspace(0, 1, MAX_CODES + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def _held_out_accuracy(values: np.ndarray, labels: np.ndarray) -> float:
    """2-fold accuracy of "majority label of this feature value": fit on a random half, score the other, and back."""
    codes = _codes(values)
    n_codes, n_labels = codes.max() + 1, labels.max() + 1
    order = np.random.default_rng(0).permutation(len(labels))  # a fixed split: sorted or periodic data stays fair
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    correct = 0
    for fit, score in (halves, halves[::-1]):
        table = np.bincount(codes[fit] * n_labels + labels[fit], minlength=n_codes * n_labels)
        table = table.reshape(n_codes, n_labels)
        fallback = np.bincount(labels[fit], minlength=n_labels).argmax()
        predicted = np.where(table.sum(1) > 0, table.argmax(1), fallback)[codes[score]]
        correct += int((predicted == labels[score]).sum())
    return correct / len(labels)


def _position(feature: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return f"feature {feature}"
    index = np.unravel_index(feature, shape)
    return f"element {tuple(int(i) for i in index)} (a fixed pixel; feature {feature} of the flattened input)"


def _same_split(train: list[Batch], val: list[Batch]) -> list[Finding]:
    seen = set(_sample_digests(train))
    val_digests = _sample_digests(val)
    shared = sum(digest in seen for digest in val_digests)
    fraction = shared / len(val_digests)
    if fraction < SAME_SPLIT_FRACTION:
        return []
    message = (
        f"{shared} of {len(val_digests)} sampled validation inputs ({fraction:.0%}) are training inputs: the "
        "validation set is the training set, so validation scores measure memorization"
    )
    evidence = {"shared": shared, "val_samples": len(val_digests), "fraction": fraction}
    return [make_finding("data.target_leak", "warn", message, evidence=evidence, advice=SAME_SPLIT_ADVICE)]
