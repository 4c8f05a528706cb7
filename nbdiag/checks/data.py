"""Input checks that need no model: non-finite values, constant inputs, input scale."""

from __future__ import annotations

import torch

from nbdiag.checks.batches import SAMPLE_BATCHES, collect_batches, concat
from nbdiag.checks.calls import features
from nbdiag.findings import Finding, make_finding

# Scale: standardized inputs have a root mean square of ~1 (37 reasons 2.1; CS231n data preprocessing).
# An RMS beyond 10 (an order of magnitude) or below 1e-3 is flagged; raw 0-255 pixels give ~100.
MAX_INPUT_RMS = 10.0
MIN_INPUT_RMS = 1e-3
# Features (input positions) that never vary: a note below this fraction, a warning from it on.
CONSTANT_FEATURE_WARN_FRACTION = 0.5


def check_nonfinite(data: object, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """NaN or Inf in inputs or targets (``data.nonfinite``, fail: the loss turns NaN on the first such sample).

    Source: seeds/003 (37 reasons) 1.1, "check the input data".

    Args:
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches (see :func:`collect_batches`).
        max_batches: batches read from ``data``.

    Returns:
        One 'fail' finding per tensor role ('inputs', 'targets') holding non-finite values.
    """
    x, y = concat(collect_batches(data, max_batches))
    x = features(x)
    findings = []
    for role, tensor in (("inputs", x), ("targets", y)):
        if not tensor.is_floating_point():
            continue
        bad = ~torch.isfinite(tensor)
        count = int(bad.sum())
        if count:
            rows = int(bad.reshape(len(tensor), -1).any(dim=1).sum())
            findings.append(
                make_finding(
                    "data.nonfinite",
                    "fail",
                    f"{count} NaN/Inf value(s) in the {role}, in {rows} of {len(tensor)} samples",
                    evidence={"role": role, "nonfinite": count, "samples": rows, "of": len(tensor)},
                )
            )
    return findings


def check_constant_inputs(data: object, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """Inputs that are constant (or all zero), and input features that never vary (``data.constant_input``).

    Severity: 'fail' when every input value is the same; 'warn' when at least
    ``CONSTANT_FEATURE_WARN_FRACTION`` (50%) of the features never vary across the sampled inputs, 'info' for fewer
    (image borders and unused pixels are common). Source: seeds/003 (37 reasons) 1.1-1.3.

    Args:
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        max_batches: batches read from ``data``.

    Returns:
        At most one finding.
    """
    x = features(concat(collect_batches(data, max_batches))[0])
    values = x.reshape(len(x), -1).double()  # (N, D) features as columns
    low, high = values.min(), values.max()
    if low == high:
        what = "all zero" if low == 0 else f"all equal to {float(low):.4g}"
        return [
            make_finding(
                "data.constant_input",
                "fail",
                f"every input value is {what}",
                evidence={"value": float(low), "samples": len(x)},
            )
        ]
    if len(x) < 2:
        return []
    constant = (values.max(dim=0).values == values.min(dim=0).values).sum().item()
    fraction = constant / values.shape[1]
    if constant == 0:
        return []
    severity = "warn" if fraction >= CONSTANT_FEATURE_WARN_FRACTION else "info"
    return [
        make_finding(
            "data.constant_input",
            severity,
            f"{constant} of {values.shape[1]} input features never vary over {len(x)} samples",
            evidence={"constant_features": int(constant), "features": values.shape[1], "fraction": fraction},
        )
    ]


def check_input_scale(data: object, max_batches: int = SAMPLE_BATCHES) -> list[Finding]:
    """Floating inputs far from unit scale (``data.unnormalized``, warn), e.g. raw 0-255 pixels.

    Fires when the root mean square of the (finite) inputs is above ``MAX_INPUT_RMS`` (10) or below
    ``MIN_INPUT_RMS`` (1e-3); standardized inputs have RMS 1, inputs scaled to [0, 1] about 0.3-0.6.
    Source: seeds/003 (37 reasons) 2.1 "standardize the inputs"; seeds/002 (CS231n) data preprocessing.

    Args:
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        max_batches: batches read from ``data``.

    Returns:
        At most one 'warn' finding; integer inputs (token ids) and constant inputs are not judged here.
    """
    x = features(concat(collect_batches(data, max_batches))[0])
    if not x.is_floating_point():
        return []
    values = x[torch.isfinite(x)].double()
    if values.numel() == 0 or values.min() == values.max():
        return []
    rms = float(values.square().mean().sqrt())
    if MIN_INPUT_RMS <= rms <= MAX_INPUT_RMS:
        return []
    evidence = {
        "rms": rms,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
    looks_like_pixels = evidence["min"] >= 0 and 100 < evidence["max"] <= 255
    hint = " (looks like raw 0-255 pixels)" if looks_like_pixels else ""
    direction = "large" if rms > MAX_INPUT_RMS else "small"
    message = f"inputs are far from unit scale: root mean square {rms:.3g}, too {direction}{hint}"
    return [make_finding("data.unnormalized", "warn", message, evidence=evidence)]
