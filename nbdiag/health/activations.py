"""Activation rules: dead ReLUs (act.dead_units), pinned tanh/sigmoid (act.saturation), and activation std that
collapses or explodes with depth (act.collapse / act.explode).

Only outputs of activation-function modules are judged (by module type), so the logits layer, normalization layers
and linear layers, whose scale is theirs to choose, never raise these ids. Per-unit statistics are not recorded:
"dead units" is read from the layer's zero fraction (at least ``DEAD_WARN_FRAC`` of all outputs zero at every
sampled step of the window means most units are off for the whole batch, every time).
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import MIN_WINDOW_ENTRIES, Window, layers_of, stat_matrix, steps_text
from nbdiag.record import StepEntry

# Module types whose outputs are "activations" for the depth trend (torch.nn class names).
ACTIVATION_TYPES = frozenset(
    {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus"}
    | {"Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softsign"}
)
DEAD_TYPES = frozenset({"ReLU", "ReLU6"})  # exactly zero for every negative input, so a unit can die

# seeds/002 (CS231n training recipes) activation functions, ReLU: "x < 0: no more updates". A healthy ReLU layer
# outputs zero for about half its inputs (0.45-0.51 in the zoo's clean runs).
DEAD_WARN_FRAC = 0.9  # >= 90% zeros at every sampled step of the window: most units are dead
DEAD_FAIL_FRAC = 0.999  # all outputs zero: no gradient reaches the layers below

# seeds/002 activation functions, sigmoid/tanh: "saturated neurons kill the gradient"; seeds/004 weight init with
# std 1: "the histogram piles up at -1 and 1, the gradient becomes 0". Saturated = within 1% of the range of a
# bound (nbdiag.stats.SATURATION_MARGIN), i.e. |tanh| > 0.98, |x| > 2.3. At Xavier scale (pre-activation std 1) that
# is 2% of outputs; 25% needs a pre-activation std of 2, the top of the 0.5-2 rule of thumb below.
SATURATION_WARN_FRAC = 0.25
SATURATION_FAIL_FRAC = 0.9  # nearly every unit pinned: the layer passes almost no gradient

# seeds/004 (CS231n lecture 5) weight initialization: with std 0.01 the per-layer activation std of a 10-layer tanh
# net "quickly converges to 0"; with Xavier it stays spread out. Rule of thumb: activation std between about 0.5
# and 2. Because a single layer's std depends on its activation function and input scale (a 1-hidden-layer ReLU MLP
# at PyTorch's default init sits at 0.34), a finding needs both: a deeper activation layer outside the band AND a
# change of 10x relative to the first activation layer, i.e. a trend over depth.
ACT_STD_LOW = 0.5
ACT_STD_HIGH = 2.0
DEPTH_CHANGE = 10.0


def dead_units(window: Window) -> list[Finding]:
    """act.dead_units: ReLU layers whose zero fraction stays >= ``DEAD_WARN_FRAC`` over the recent window."""
    if len(window.recent) < MIN_WINDOW_ENTRIES:
        return []
    layers = _of_types(window, layers_of(window.recent[-1], "activation"), DEAD_TYPES)
    zero = stat_matrix(window.recent, "activation", "zero_frac", layers)  # (entries, layers)
    findings = []
    for j, layer in enumerate(layers):
        column = zero[:, j][np.isfinite(zero[:, j])]
        if len(column) < MIN_WINDOW_ENTRIES or column.min() < DEAD_WARN_FRAC:
            continue
        severity = "fail" if column.min() >= DEAD_FAIL_FRAC else "warn"
        mean, least = _percent(column.mean()), _percent(column.min())
        floor = "" if least == mean else f" (never below {least} at a sampled step)"
        findings.append(
            make_finding(
                "act.dead_units",
                severity,
                f"{window.label(layer)}: {mean} of outputs are zero over {steps_text(window.recent)}{floor}",
                layer=layer,
                step=window.recent[-1].step,
                evidence={"min_zero_frac": float(column.min()), "mean_zero_frac": float(column.mean())},
            )
        )
    return findings


def saturation(window: Window) -> list[Finding]:
    """act.saturation: bounded activations (not the model's output) with a median saturated fraction >= warn."""
    if len(window.recent) < MIN_WINDOW_ENTRIES:
        return []
    layers = layers_of(window.recent[-1], "activation")[:-1]  # the last layer is the output: confidence is wanted
    saturated = np.median(stat_matrix(window.recent, "activation", "saturated_frac", layers), axis=0)
    findings = []
    for layer, frac in zip(layers, saturated, strict=True):
        if not frac >= SATURATION_WARN_FRAC:  # NaN: not a bounded activation
            continue
        findings.append(
            make_finding(
                "act.saturation",
                "fail" if frac >= SATURATION_FAIL_FRAC else "warn",
                f"{window.label(layer)}: {_percent(frac)} of outputs are pinned near their limits "
                f"(median over {steps_text(window.recent)})",
                layer=layer,
                step=window.recent[-1].step,
                evidence={"saturated_frac": float(frac)},
            )
        )
    return findings


def depth_trend(window: Window) -> list[Finding]:
    """act.collapse / act.explode: activation std leaves the 0.5-2 band with depth, now (warn) or at init (info)."""
    if not window.recent:
        return []
    now = _depth_change(window, window.recent)
    init = _depth_change(window, window.baseline[:1])
    findings = []
    for finding_id in ("act.collapse", "act.explode"):
        if finding_id in now:
            findings.append(_trend_finding(window, finding_id, now[finding_id], window.recent, "warn"))
        elif finding_id in init:
            findings.append(_trend_finding(window, finding_id, init[finding_id], window.baseline[:1], "info"))
    return findings


def _depth_change(window: Window, entries: tuple[StepEntry, ...]) -> dict[str, tuple[str, str, float, float]]:
    """id -> (first activation layer, worst deeper layer, their median stds) where the depth trend fires."""
    if not entries:
        return {}
    layers = _of_types(window, layers_of(entries[-1], "activation"), ACTIVATION_TYPES)
    if len(layers) < 2:
        return {}
    std = np.median(stat_matrix(entries, "activation", "std", layers), axis=0)
    first, deeper = std[0], std[1:]
    if not np.isfinite(std).all() or first <= 0:
        return {}
    found = {}
    low, high = int(np.argmin(deeper)) + 1, int(np.argmax(deeper)) + 1
    if std[low] < ACT_STD_LOW and std[low] * DEPTH_CHANGE < first:
        found["act.collapse"] = (layers[0], layers[low], float(first), float(std[low]))
    if std[high] > ACT_STD_HIGH and std[high] > DEPTH_CHANGE * first:
        found["act.explode"] = (layers[0], layers[high], float(first), float(std[high]))
    return found


def _trend_finding(
    window: Window, finding_id: str, change: tuple[str, str, float, float], entries: tuple, severity: str
) -> Finding:
    first, layer, first_std, std = change
    when = f"median over {steps_text(entries)}"
    if severity == "info":
        when = f"at {steps_text(entries)} (init); back within bounds by step {window.recent[-1].step}"
    return make_finding(
        finding_id,
        severity,
        f"{window.label(layer)}: activation std {std:.2g}, vs {first_std:.2g} at the first activation "
        f"{window.label(first)} ({when}; rule of thumb {ACT_STD_LOW:g}-{ACT_STD_HIGH:g})",
        layer=layer,
        step=entries[-1].step,
        evidence={"std": std, "first_activation_std": first_std, "first_activation": first},
    )


def _of_types(window: Window, layers: tuple[str, ...], types: frozenset[str]) -> tuple[str, ...]:
    return tuple(layer for layer in layers if window.record.layer_type(layer) in types)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%" if fraction < 0.995 else f"{100 * fraction:.1f}%"
