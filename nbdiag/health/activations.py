"""Activation rules: dead ReLU units (act.dead_units), pinned tanh/sigmoid units (act.saturation), and activation std
that collapses or explodes with depth (act.collapse / act.explode).

Units are judged per unit (feature / channel, :mod:`nbdiag.units`) over the last sampled steps: a unit is dead when
it never fired over the window, saturated when most of its outputs there were pinned. The zero fraction of a layer
is not a dead-unit count (a healthy ReLU outputs zero for half its inputs) and is never judged here. The depth trend
reads only outputs of activation-function modules (by type), so logits and normalization layers never raise it.
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import MIN_WINDOW_ENTRIES, Window, layers_of, steps_text
from nbdiag.record import StepEntry, stat_matrix
from nbdiag.units import UNIT_SATURATED_FRAC

# Module types whose outputs are "activations" for the depth trend (torch.nn class names).
ACTIVATION_TYPES = frozenset(
    {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus"}
    | {"Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softsign"}
)

# seeds/002 (CS231n training recipes) activation functions, ReLU: "x < 0: no more updates"; a unit that never fires
# on any input gets no gradient again. A few dead units are harmless; a tenth of a layer is worth a look (the source
# warns that a too-high learning rate can kill a large share of the network), all of them cut the gradient.
DEAD_UNITS_WARN_FRAC = 0.1
DEAD_UNITS_FAIL_FRAC = 1.0

# seeds/002 activation functions, sigmoid/tanh: "saturated neurons kill the gradient"; seeds/004 weight init with
# std 1: "the histogram piles up at -1 and 1, the gradient becomes 0". A unit is saturated when at least half of its
# outputs over the window lie within 1% of the range of a bound (|tanh| > 0.98; nbdiag.units.UNIT_SATURATED_FRAC);
# at Xavier scale almost no unit is. A quarter of a layer's units warns, nearly all of them fails.
SATURATION_WARN_FRAC = 0.25
SATURATION_FAIL_FRAC = 0.9

# seeds/004 (CS231n lecture 5) weight initialization: with std 0.01 the per-layer activation std of a 10-layer tanh
# net "quickly converges to 0"; with Xavier it stays spread out. Rule of thumb: activation std between about 0.5
# and 2. Because a single layer's std depends on its activation function and input scale (a 1-hidden-layer ReLU MLP
# at PyTorch's default init sits at 0.34), a finding needs both: a deeper activation layer outside the band AND a
# change of 10x relative to the first activation layer, i.e. a trend over depth.
ACT_STD_LOW = 0.5
ACT_STD_HIGH = 2.0
DEPTH_CHANGE = 10.0


def dead_units(window: Window) -> list[Finding]:
    """act.dead_units: ReLU layers where at least ``DEAD_UNITS_WARN_FRAC`` of the units never fired over the window."""
    findings = []
    for layer, row, entry in _unit_rows(window, "dead_units"):
        frac = row["dead_unit_frac"]
        if not frac >= DEAD_UNITS_WARN_FRAC:
            continue
        findings.append(
            make_finding(
                "act.dead_units",
                "fail" if frac >= DEAD_UNITS_FAIL_FRAC else "warn",
                f"{window.label(layer)}: {row['dead_units']:.0f} of {row['units']:.0f} units ({_percent(frac)}) "
                f"never fired over {_window_text(row, entry)}",
                layer=layer,
                step=entry.step,
                evidence=_unit_evidence(row, "dead_units"),
            )
        )
    return findings


def saturation(window: Window) -> list[Finding]:
    """act.saturation: bounded activations (not the model's output) with ``SATURATION_WARN_FRAC`` of units pinned."""
    layers = layers_of(window.recent[-1], "activation") if window.recent else ()
    output = set(layers) - set(window.hidden_layers(layers))  # the outputs (a GAN's D and G each have one)
    findings = []
    for layer, row, entry in _unit_rows(window, "saturated_units"):
        frac = row["saturated_unit_frac"]
        if layer in output or not frac >= SATURATION_WARN_FRAC:  # a confident output layer is the goal
            continue
        findings.append(
            make_finding(
                "act.saturation",
                "fail" if frac >= SATURATION_FAIL_FRAC else "warn",
                f"{window.label(layer)}: {row['saturated_units']:.0f} of {row['units']:.0f} units "
                f"({_percent(frac)}) pinned near their limits for at least {UNIT_SATURATED_FRAC:.0%} of their "
                f"outputs over {_window_text(row, entry)}",
                layer=layer,
                step=entry.step,
                evidence=_unit_evidence(row, "saturated_units"),
            )
        )
    return findings


def _unit_rows(window: Window, stat: str):
    """(layer, {stat: value}, entry) for each layer of the latest ``units`` block whose window is long enough."""
    entry = window.recent[-1] if window.recent else None
    block = None if entry is None else entry.blocks.get("units")
    if block is None:
        return
    for layer, values in zip(block.layers, block.values, strict=True):
        row = dict(zip(block.stats, values, strict=True))
        if "@rank" not in layer and np.isfinite(row[stat]) and row["window_steps"] >= MIN_WINDOW_ENTRIES:
            yield layer, row, entry


def _window_text(row: dict[str, float], entry: StepEntry) -> str:
    first, last, count = int(row["window_start"]), entry.step, int(row["window_steps"])
    return f"steps {first}-{last} ({count} sampled steps)"


def _unit_evidence(row: dict[str, float], stat: str) -> dict[str, float]:
    fraction = f"{stat[:-1]}_frac"  # dead_unit_frac, saturated_unit_frac
    counts = {key: int(row[key]) for key in (stat, "units", "window_steps", "window_start")}
    return {**counts, fraction: float(row[fraction])}


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
    hidden = window.hidden_layers(layers_of(entries[-1], "activation"))  # a GAN's D(x) -> 0.5 is not a collapse
    layers = _of_types(window, hidden, ACTIVATION_TYPES)
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
    """Layers of these torch types, or of any activation kind the monitor recognised (nbdiag.register_activation)."""
    kinds = window.record.meta.get("activation_kinds", {})
    return tuple(layer for layer in layers if window.record.layer_type(layer) in types or layer.split("/")[0] in kinds)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%" if fraction < 0.995 else f"{100 * fraction:.1f}%"
