"""Repetition checks: the same batch again and again, duplicate samples, train/validation overlap."""

from __future__ import annotations

import hashlib

import torch

from nbdiag.checks.batches import SAMPLE_BATCHES, Batch, collect_batches
from nbdiag.checks.calls import features
from nbdiag.findings import Finding, make_finding

# Duplicate samples within the sampled training data: a note below this fraction, a warning from it on.
DUPLICATE_WARN_FRACTION = 0.01
# Validation samples also seen in training: a warning from this fraction on (a note below it).
OVERLAP_WARN_FRACTION = 0.01


def _digest(tensor: torch.Tensor) -> bytes:
    raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # bytes of any dtype (bf16 included)
    return hashlib.blake2b(raw.numpy().tobytes(), digest_size=16).digest()


def _batch_digest(batch: Batch) -> bytes:
    x, y = features(batch[0]), batch[1]
    return _digest(x) + _digest(y) + repr((tuple(x.shape), tuple(y.shape))).encode()


def _sample_digests(batches: list[Batch]) -> list[bytes]:
    return [_digest(row) for x, _ in batches for row in features(x)]  # one digest per input sample


def check_repeated_batches(data: object, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """The loader yields the same batch again (``data.repeated_batch``).

    Severity: 'fail' when every sampled batch is identical (the model sees one batch only), 'warn' when some
    batch repeats within one pass. Source: seeds/003 (37 reasons) 1.3 "check the data loader".

    Args:
        data: a DataLoader or an iterable of batches (a single batch is not judged).
        max_batches: batches read from ``data``.

    Returns:
        At most one finding.
    """
    batches = collect_batches(data, max_batches)
    digests = [_batch_digest(batch) for batch in batches]
    distinct = len(set(digests))
    if len(batches) < 2 or distinct == len(batches):
        return []
    severity = "fail" if distinct == 1 else "warn"
    what = "the same batch every time" if distinct == 1 else f"only {distinct} distinct batches"
    message = f"the loader yielded {what} in {len(batches)} batches"
    evidence = {"batches": len(batches), "distinct": distinct}
    return [make_finding("data.repeated_batch", severity, message, evidence=evidence)]


def check_duplicates(data: object, val_data: object | None = None, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """Duplicate input samples, and validation samples that also occur in training (``data.duplicates``).

    Samples are compared exactly (a hash of each input's bytes) over the sampled batches, after dropping batches
    that repeat whole (see :func:`check_repeated_batches`). Severity: 'warn' from ``DUPLICATE_WARN_FRACTION`` (1%)
    duplicates or ``OVERLAP_WARN_FRACTION`` (1%) of validation samples seen in training, 'info' below.
    Source: seeds/001 (Karpathy) 1 "become one with the data: duplicates".

    Args:
        data: the training data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        val_data: the validation data in the same forms, or None.
        max_batches: batches read from each.

    Returns:
        Up to two findings (duplicates within training, train/validation overlap).
    """
    train = _distinct_batches(collect_batches(data, max_batches))
    train_digests = _sample_digests(train)
    findings = _duplicate_findings(train_digests)
    if val_data is not None:
        val_digests = _sample_digests(collect_batches(val_data, max_batches))
        findings += _overlap_findings(set(train_digests), val_digests)
    return findings


def _distinct_batches(batches: list[Batch]) -> list[Batch]:
    seen: dict[bytes, Batch] = {}
    for batch in batches:
        seen.setdefault(_batch_digest(batch), batch)
    return list(seen.values())


def _duplicate_findings(digests: list[bytes]) -> list[Finding]:
    duplicates = len(digests) - len(set(digests))
    if duplicates == 0:
        return []
    fraction = duplicates / len(digests)
    severity = "warn" if fraction >= DUPLICATE_WARN_FRACTION else "info"
    message = f"{duplicates} of {len(digests)} sampled training inputs duplicate another one ({fraction:.1%})"
    evidence = {"duplicates": duplicates, "samples": len(digests), "fraction": fraction}
    return [make_finding("data.duplicates", severity, message, evidence=evidence)]


def _overlap_findings(train: set[bytes], val_digests: list[bytes]) -> list[Finding]:
    shared = sum(digest in train for digest in val_digests)
    if shared == 0:
        return []
    fraction = shared / len(val_digests)
    severity = "warn" if fraction >= OVERLAP_WARN_FRACTION else "info"
    message = f"{shared} of {len(val_digests)} sampled validation inputs also occur in the training data"
    evidence = {"shared": shared, "val_samples": len(val_digests), "fraction": fraction}
    return [make_finding("data.duplicates", severity, message, evidence=evidence)]
