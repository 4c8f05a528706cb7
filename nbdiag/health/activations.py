"""Activation rules: dead ReLU units (act.dead_units), pinned tanh/sigmoid units (act.saturation), and activation std
that collapses or explodes with depth (act.collapse / act.explode).

Units are judged per unit (feature / channel, :mod:`nbdiag.units`) over the last sampled steps: a unit is dead when
it never fired over the window, saturated when most of its outputs there were pinned. The zero fraction of a layer
is not a dead-unit count (a healthy ReLU outputs zero for half its inputs) and is never judged here. The depth trend
reads only outputs of activation-function modules (by type), so logits and normalization layers never raise it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import LOSS_HEAD, LOSS_TAIL, MIN_WINDOW_ENTRIES, Window, layers_of, steps_text
from nbdiag.names import is_rank_row, module_of
from nbdiag.record import StepEntry, stat_matrix
from nbdiag.units import UNIT_SATURATED_FRAC, UNIT_WINDOW

# Module types whose outputs are "activations" for the depth trend (torch.nn class names).
ACTIVATION_TYPES = frozenset(
    {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus"}
    | {"Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid", "Hardswish", "Softsign"}
)

# seeds/002 (CS231n training recipes) activation functions, ReLU: "x < 0: no more updates"; a unit that never fires
# on any input gets no gradient again, and a too-high learning rate can kill "as much as 40%" of a network. Calibrated
# on the public corpus (tests/corpus, issue 25): correct U-Nets, MoE experts, WGAN critics, SimCLR heads and
# distillation students keep 10-36% of a ReLU layer's units quiet over 10 sampled batches and train fine, so a warning
# needs more than the source's 40%: half of the layer, quiet over a full window (UNIT_WINDOW sampled steps), at every
# sampled step of the recent window (each judges its own window of UNIT_WINDOW, so together they span about twice
# it). A layer with every unit dead passes no gradient at all: fail.
DEAD_UNITS_WARN_FRAC = 0.5
DEAD_UNITS_FAIL_FRAC = 1.0

# seeds/002 activation functions, sigmoid/tanh: "saturated neurons kill the gradient"; seeds/004 weight init with
# std 1: "the histogram piles up at -1 and 1, the gradient becomes 0". A unit is saturated when at least half of its
# outputs over the window lie within 1% of the range of a bound (|tanh| > 0.98; nbdiag.units.UNIT_SATURATED_FRAC);
# at Xavier scale almost no unit is. A quarter of a layer's units warns. Never fail (severity policy,
# docs/findings.md): saturation slows learning but is not breakage, and a converged classifier's tanh layer may
# saturate on purpose (issue 25: a digits CNN at loss ~0). Once the loss has reached its floor (LOSS_FLOOR_FRACTION
# of its start, supervised losses) the symptom no longer matters: info.
SATURATION_WARN_FRAC = 0.25
LOSS_FLOOR_FRACTION = 0.1  # the loss closed 90% of the way to 0 (the overfit-one-batch check's OVERFIT_TARGET)

# act.collapse needs a second signal (severity policy: two signals agreeing). Collapsed activations matter because
# the signal and its gradient die with depth: the collapse warns only when the loss is not falling either (it kept
# more than COLLAPSE_LOSS_KEPT of its start: seeds/004's std-0.01 tanh net does not learn), or the first layer's
# gradient is GRADIENT_SHRINK x below the last one's. A GAN critic at the DCGAN paper's N(0, 0.02) init has small
# activations and trains (issue 25): info.
COLLAPSE_LOSS_KEPT = 0.9
GRADIENT_SHRINK = 1e-2

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
    for layer, row, entry in _unit_rows(window, "dead_units", full=True):
        frac = row["dead_unit_frac"]
        if not frac >= DEAD_UNITS_WARN_FRAC or not _persistent(window, layer, "dead_unit_frac", DEAD_UNITS_WARN_FRAC):
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
    """act.saturation: bounded activations (not the model's output) with ``SATURATION_WARN_FRAC`` of units pinned
    (warn; info once a supervised loss has reached its floor)."""
    layers = layers_of(window.recent[-1], "activation") if window.recent else ()
    output = set(layers) - set(window.hidden_layers(layers))  # the outputs (a GAN's D and G each have one)
    at_floor = loss_at_floor(window)
    findings = []
    for layer, row, entry in _unit_rows(window, "saturated_units"):
        frac = row["saturated_unit_frac"]
        if layer in output or not frac >= SATURATION_WARN_FRAC:  # a confident output layer is the goal
            continue
        floor_note = f"; the loss has reached its floor ({at_floor}), so this no longer matters" if at_floor else ""
        findings.append(
            make_finding(
                "act.saturation",
                "info" if at_floor else "warn",
                f"{window.label(layer)}: {row['saturated_units']:.0f} of {row['units']:.0f} units "
                f"({_percent(frac)}) pinned near their limits for at least {UNIT_SATURATED_FRAC:.0%} of their "
                f"outputs over {_window_text(row, entry)}{floor_note}",
                layer=layer,
                step=entry.step,
                evidence=_unit_evidence(row, "saturated_units"),
            )
        )
    return findings


def loss_at_floor(window: Window) -> str:
    """Why the loss counts as at its floor ("" when it does not): a supervised loss whose recent median is at most
    ``LOSS_FLOOR_FRACTION`` of its positive start (the median of its first ``LOSS_HEAD`` values)."""
    start, now = _loss_ends(window)
    if not window.objective.loss_should_fall or not start > 0 or not now <= LOSS_FLOOR_FRACTION * start:
        return ""
    return f"{now:.3g} from {start:.3g} at the start"


def _loss_ends(window: Window) -> tuple[float, float]:
    """(median of the first LOSS_HEAD finite losses, median of the last LOSS_TAIL); NaN when there are too few."""
    loss = window.loss[np.isfinite(window.loss)]
    if len(loss) < LOSS_HEAD + LOSS_TAIL:
        return float("nan"), float("nan")
    return float(np.median(loss[:LOSS_HEAD])), float(np.median(loss[-LOSS_TAIL:]))


def _persistent(window: Window, layer: str, stat: str, threshold: float) -> bool:
    """Whether ``stat`` of ``layer`` was at least ``threshold`` in the units block of every recent sampled step."""
    for entry in window.recent:
        block = entry.blocks.get("units")
        if block is None or layer not in block.layers:
            return False
        value = block.values[block.layers.index(layer), block.stats.index(stat)]
        if not value >= threshold:
            return False
    return True


def _unit_rows(window: Window, stat: str, full: bool = False):
    """(layer, {stat: value}, entry) for each layer of the latest ``units`` block whose window is long enough:
    ``MIN_WINDOW_ENTRIES`` sampled steps, or with ``full`` all of ``UNIT_WINDOW``."""
    entry = window.recent[-1] if window.recent else None
    block = None if entry is None else entry.blocks.get("units")
    if block is None:
        return
    needed = UNIT_WINDOW if full else MIN_WINDOW_ENTRIES
    for layer, values in zip(block.layers, block.values, strict=True):
        row = dict(zip(block.stats, values, strict=True))
        if not is_rank_row(layer) and np.isfinite(row[stat]) and row["window_steps"] >= needed:
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
            corroborated = finding_id == "act.explode" or _collapse_corroborated(window)
            severity = "warn" if corroborated else "info"
            finding = _trend_finding(window, finding_id, now[finding_id], window.recent, severity)
            if not corroborated:
                note = "; the loss falls and the gradient reaches the first layers, so training is not held back"
                finding = dataclasses.replace(finding, message=finding.message + note)
            findings.append(finding)
        elif finding_id in init:
            findings.append(_trend_finding(window, finding_id, init[finding_id], window.baseline[:1], "info"))
    return findings


def _collapse_corroborated(window: Window) -> bool:
    """A second sign that collapsed activations hold training back: a supervised loss that kept more than
    ``COLLAPSE_LOSS_KEPT`` of its start, or a first-to-last layer gradient ratio below ``GRADIENT_SHRINK``."""
    start, now = _loss_ends(window)
    if window.objective.loss_should_fall and start > 0 and now > COLLAPSE_LOSS_KEPT * start:
        return True
    ratio = first_to_last_gradient_ratio(window)
    return bool(np.isfinite(ratio) and ratio < GRADIENT_SHRINK)


def first_to_last_gradient_ratio(window: Window) -> float:
    """Median over the recent window of the first to the last layer's output-gradient norm (NaN if unknown)."""
    if not window.recent:
        return float("nan")
    recorded = set(layers_of(window.recent[-1], "gradient"))
    layers = tuple(layer for layer in layers_of(window.recent[-1], "activation") if layer in recorded)
    ratios = []
    for row in stat_matrix(window.recent, "gradient", "norm", layers):
        usable = np.flatnonzero(np.isfinite(row) & (row > 0))
        if len(usable) >= 2:
            ratios.append(row[usable[0]] / row[usable[-1]])
    return float(np.median(ratios)) if ratios else float("nan")


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
    kinds = window.record.meta.activation_kinds
    return tuple(layer for layer in layers if window.record.layer_type(layer) in types or module_of(layer) in kinds)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%" if fraction < 0.995 else f"{100 * fraction:.1f}%"
