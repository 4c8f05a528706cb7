"""The dashboard's panels as plain data (series + axes), built from a Snapshot; plotly and matplotlib draw them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nbdiag.names import owning_layer
from nbdiag.record import stat_matrix
from nbdiag.views import data
from nbdiag.views.data import Snapshot
from nbdiag.views.hist_scale import choose_axis

SELECTED = "#1f77b4"  # the selected layer, everywhere
OTHERS = "#b8b8b8"  # every other layer
UPDATE_RATIO = 1e-3  # CS231n lecture 5: update/weight ratio "somewhere around 1e-3"
UPDATE_BAND = (1e-4, 1e-2)  # a decade either side counts as near it
LOSS_LOG_DECADES = 2.0  # the loss panel turns to a log axis when its values span more than this
NONFINITE = "#d62728"  # NaN/Inf markers, drawn at the top of a panel
MAX_LAYER_LINES = 32  # grey per-layer lines over time; a deeper model without repeated blocks draws every k-th
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class ViewState:
    """What the controls chose: the highlighted layer, the step-slider index (None: latest), axis scales."""

    layer: str | None = None
    index: int | None = None
    loss_log: bool = False
    norm_log: bool = True
    hist: str | int | None = None  # a deep model's histogram panel: a role, a block index, or the selected layer's role


@dataclass(frozen=True)
class Series:
    """One drawable: ``kind`` is "line", "markers" (line and markers), "points" (markers only), "area" (closed
    polygons), "bar", "heatmap" or "labels" (``text`` written at each (x, y), left-aligned, one colour each)."""

    name: str
    kind: str
    x: Any = None
    y: Any = None
    z: Any = None
    color: Any = None  # one colour, or one per bar
    width: float = 1.5
    text: Any = None  # per point: hover text (bars), or the layer's depth (lines, areas)
    zrange: tuple[float, float] | None = None
    colorscale: str = "Viridis"
    legend: bool = False
    label: str | None = None  # the legend's text when it differs from ``name`` (which keys the trace)
    dash: bool = False  # a dashed line (a reference level in the legend)
    symbol: str = "x"  # "points": "x", or "line-ew" (a short horizontal dash: a bar of height 0)


@dataclass(frozen=True)
class Panel:
    """A titled plot: its series, axis labels and scales, reference lines and bands."""

    key: str
    title: str
    series: tuple[Series, ...] = ()
    xlabel: str = ""
    ylabel: str = ""
    ylog: bool = False
    xrange: tuple[float, float] | None = None  # time axes end at the first and last step drawn, never beyond
    yrange: tuple[float, float] | None = None
    xticks: tuple[list, list] | None = None
    yticks: tuple[list, list] | None = None
    reversed_y: bool = False  # first row on top
    hlines: tuple[tuple[float, str], ...] = ()  # (y, label)
    hband: tuple[float, float] | None = None
    vline: float | None = None  # the selected step on time axes
    note: str = ""  # shown when there is nothing to draw


def selected_layer(snap: Snapshot, state: ViewState) -> str | None:
    """The highlighted layer: the chosen one if recorded, else the first."""
    if state.layer in snap.layers:
        return state.layer
    return snap.layers[0] if snap.layers else None


def selected_step(snap: Snapshot, state: ViewState) -> int | None:
    """The sampled step under the step slider."""
    index = data.step_index(snap, state.index)
    return None if index is None else snap.entries[index].step


def step_range(*steps: Any) -> tuple[float, float] | None:
    """(first, last) step over the given step arrays (half a step either side of a single one); None when empty."""
    values = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in steps] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    low, high = float(values.min()), float(values.max())
    return (low - 0.5, high + 0.5) if low == high else (low, high)


@dataclass(frozen=True)
class Marked:
    """Values made drawable: on a log axis zeros sit on a floor labelled "0"; recorded NaN/Inf are kept apart
    (drawn as markers at the top, see :func:`nonfinite_series`); gaps (not recorded) are NaN."""

    values: np.ndarray
    floor: float | None  # where zeros are drawn; None when there is none (or the axis is linear)
    nonfinite: np.ndarray  # bool, same shape: a NaN/Inf value was recorded there

    @property
    def hlines(self) -> tuple[tuple[float, str], ...]:
        return () if self.floor is None else ((self.floor, "0"),)

    def top(self, log: bool) -> float:
        """Where NaN/Inf markers go: just above the largest finite value."""
        finite = self.values[np.isfinite(self.values)]
        if not finite.size:
            return 1.0
        return float(finite.max()) * 3.0 if log else float(finite.max()) + 0.05 * float(np.ptp(finite) or 1.0)


def mark(values: np.ndarray, log: bool) -> Marked:
    """Split ``values`` (with :data:`nbdiag.views.data.MISSING` for gaps) for a linear or log axis."""
    recorded = values != data.MISSING
    nonfinite = recorded & ~np.isfinite(values)
    clean = np.where(recorded & np.isfinite(values), values, np.nan)
    floor = None
    if log and (clean <= 0).any():
        positive = clean[clean > 0]
        floor = 10.0 ** (np.floor(np.log10(positive.min())) - 1) if positive.size else 1e-8
        clean = np.where(clean <= 0, floor, clean)
    return Marked(clean, floor, nonfinite)


def nonfinite_series(x: Any, nonfinite: np.ndarray, top: float) -> tuple[Series, ...]:
    """A "NaN/Inf" marker series at ``top`` for each x where a non-finite value was recorded (none when clean)."""
    if not nonfinite.any():
        return ()
    where = nonfinite if nonfinite.ndim == 1 else nonfinite.any(axis=0)
    xs = [x[i] for i in np.flatnonzero(where)] if isinstance(x, list) else np.asarray(x)[where]
    ys = np.full(len(xs), top)
    return (Series("NaN/Inf", "points", x=xs, y=ys, color=NONFINITE, legend=True),)


def loss_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Loss (and validation losses) over steps, with the chance level -ln(1/C) when C is known."""
    names = [name for name in snap.scalars.columns if data.is_loss_name(name)]
    series = tuple(
        Series(name, "line", x=steps, y=values, color=PALETTE[i % len(PALETTE)], legend=True)
        for i, (name, (steps, values)) in enumerate(data.scalar_series(snap, names).items())
    )
    bad = np.concatenate([data.nonfinite_steps(snap, name) for name in names] or [np.zeros(0, np.int64)])
    if len(bad):
        finite = [s.y[np.isfinite(s.y)] for s in series]
        top = max((float(v.max()) for v in finite if v.size), default=1.0)
        series += (
            Series(
                "NaN/Inf", "points", x=np.unique(bad), y=np.full(len(np.unique(bad)), top), color=NONFINITE, legend=True
            ),
        )
    xrange = step_range(*(s.x for s in series))
    return Panel(
        "loss",
        "loss",
        series + chance_series(snap.num_classes, xrange),
        xlabel="step",
        ylog=state.loss_log or spans_decades(*(s.y for s in series)),
        xrange=xrange,
        vline=selected_step(snap, state),
        note="" if series else "log a loss: mon.step(loss=loss)",
    )


def chance_series(num_classes: int | None, xrange: tuple[float, float] | None) -> tuple[Series, ...]:
    """The chance level -ln(1/C) as a dashed line across the loss panel, named in its legend: a label written on
    the plot sat on the loss curve, which starts at chance."""
    chance = data.chance_loss(num_classes)
    if chance is None or xrange is None:
        return ()
    return (
        Series(
            "chance",
            "line",
            x=np.array(xrange),
            y=np.array([chance, chance]),
            color="#555555",
            width=1.0,
            legend=True,
            label=f"chance -ln(1/{num_classes}) = {chance:.3g}",
            dash=True,
        ),
    )


def spans_decades(*values: Any, decades: float = LOSS_LOG_DECADES) -> bool:
    """Whether the finite positive ``values`` span more than ``decades`` decades: a linear axis would flatten all
    but the largest (a loss spike of 1e6 over a loss of 2), so the loss panel draws them on a log axis."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values] or [np.zeros(0)])
    positive = pooled[np.isfinite(pooled) & (pooled > 0)]
    return bool(len(positive)) and float(np.log10(positive.max() / np.median(positive))) > decades


def scalars_panel(snap: Snapshot, state: ViewState) -> Panel:
    """The other logged scalars (accuracy, learning rate, validation metrics) over steps."""
    names = [name for name in snap.scalars.columns if not data.is_loss_name(name)]
    series = tuple(
        Series(name, "line", x=steps, y=values, color=PALETTE[i % len(PALETTE)], legend=True)
        for i, (name, (steps, values)) in enumerate(data.scalar_series(snap, names).items())
    )
    return Panel(
        "scalars",
        "other scalars",
        series,
        xlabel="step",
        xrange=step_range(*(s.x for s in series)),
        note="" if series else "log accuracy or other numbers with mon.step(loss=loss, acc=acc)",
    )


def depth_of(snap: Snapshot, name: str) -> float:
    """Forward-order depth of a layer, or of the layer owning a parameter (``"3.weight"`` -> depth of ``3``)."""
    # one index per snapshot: list.index per name was quadratic in the layers (400: 10 ms)
    depths = snap.cached("depths", lambda: {layer: float(i) for i, layer in enumerate(snap.layers)})
    for candidate in (name, owning_layer(name)):
        if candidate in depths:
            return depths[candidate]
    return float("nan")


def grey_rows(names: list[str], chosen: set[str], most: int = MAX_LAYER_LINES) -> tuple[np.ndarray, str]:
    """Which rows are drawn grey: all of them up to ``most``, else every k-th (the last and the chosen ones
    kept: 340 grey lines are a wall); and their legend text."""
    count = len(names)
    if count <= most:
        return np.arange(count), "all layers"
    stride = -(-count // most)
    kept = {*range(0, count, stride), count - 1, *(i for i, name in enumerate(names) if name in chosen)}
    return np.array(sorted(kept)), f"every {ordinal(stride)} of {count} layers"


def ordinal(n: int) -> str:
    """``"2nd"``, ``"11th"``, ``"23rd"``."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _layer_lines(
    snap: Snapshot, matrix: np.ndarray, names: list[str], chosen: set[str], label: str = ""
) -> tuple[Series, Series]:
    """The rows of an (L, S) matrix as one grey trace (at most about :data:`MAX_LAYER_LINES` of them, evenly
    spaced), the chosen rows as one coloured trace (in the legend as ``label``, default the chosen names); hover
    shows depth."""
    steps = snap.steps
    mask = np.array([name in chosen for name in names], dtype=bool)
    depths = np.array([depth_of(snap, name) for name in names])
    rows, grey_label = grey_rows(names, chosen)
    x_all, y_all = data.lines_with_gaps(steps, matrix[rows])
    x_sel, y_sel = data.lines_with_gaps(steps, matrix[mask])
    chosen_label = label or ", ".join(snap.label(name) for name in names if name in chosen)
    return (
        Series(
            "all layers",
            "line",
            x=x_all,
            y=y_all,
            color=OTHERS,
            width=1.0,
            text=np.repeat(depths[rows], len(steps) + 1),
            legend=True,
            label=grey_label,
        ),
        Series(
            "selected",
            "line",
            x=x_sel,
            y=y_sel,
            color=SELECTED,
            width=2.5,
            text=np.repeat(depths[mask], len(steps) + 1),
            legend=bool(chosen_label),
            label=chosen_label or None,
        ),
    )


def weights_of(snap: Snapshot, layer: str | None, names: list[str]) -> tuple[set[str], str]:
    """The parameters drawn for ``layer``: its own, or for a layer without any (a ReLU, a pooling layer) those of
    the nearest layer before it that has some, with a legend label that says so."""
    if layer is None or layer not in snap.layers:
        return set(), ""
    owners = {owning_layer(name) for name in names}
    for candidate in reversed(snap.layers[: snap.layers.index(layer) + 1]):
        if candidate in owners:
            chosen = {name for name in names if owning_layer(name) == candidate}
            label = ", ".join(snap.label(name) for name in sorted(chosen))
            return chosen, label if candidate == layer else f"{label} (feeds {snap.label(layer)})"
    return set(), ""


def gradient_time_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Per-layer norm of the gradient of the loss w.r.t. each layer's output, over steps."""
    layer = selected_layer(snap, state)
    marked = mark(stat_matrix(snap.timeline, "gradient", "norm", snap.layers, data.MISSING).T, state.norm_log)
    recorded = np.isfinite(marked.values).any() or marked.nonfinite.any()
    return Panel(
        "grad_time",
        "gradient norm per layer ‖∂loss/∂output‖",
        _layer_lines(snap, marked.values, snap.layers, {layer})
        + nonfinite_series(snap.steps, marked.nonfinite, marked.top(state.norm_log)),
        xlabel="step",
        ylog=state.norm_log,
        xrange=step_range(snap.steps),
        hlines=marked.hlines,
        vline=selected_step(snap, state),
        note="" if recorded else "no gradients recorded yet",
    )


def update_names(snap: Snapshot) -> list[str]:
    """Parameters drawn on the update panel: every recorded one except biases (read once per snapshot)."""

    def names() -> list[str]:
        layer_tuples = dict.fromkeys(e.blocks["update"].layers for e in snap.timeline if "update" in e.blocks)
        every = dict.fromkeys(name for layers in layer_tuples for name in layers)
        return [name for name in every if not name.endswith("bias")]

    return list(snap.cached("update_names", names))


def update_time_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Update/weight ratio per parameter over steps, with the ~1e-3 reference band."""
    layer = selected_layer(snap, state)
    names = update_names(snap)
    marked = mark(stat_matrix(snap.timeline, "update", "update_ratio", names, data.MISSING).T, state.norm_log)
    chosen, label = weights_of(snap, layer, names)
    return Panel(
        "update_time",
        "update / weight ratio per weight",
        _layer_lines(snap, marked.values, names, chosen, label)
        + nonfinite_series(snap.steps, marked.nonfinite, marked.top(state.norm_log)),
        xlabel="step",
        ylog=state.norm_log,
        xrange=step_range(snap.steps) if names else None,
        hlines=((UPDATE_RATIO, "1e-3"), *marked.hlines),
        hband=UPDATE_BAND,
        vline=selected_step(snap, state),
        note="" if names else "pass the optimizer: watch(model, optimizer)",
    )


def activation_histograms_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Small multiples across depth: each layer's activation histogram at the selected step, one row per layer."""
    return ridgelines(
        snap,
        state,
        snap.layers,
        snap.labels,
        key="act_hist",
        title=f"activation histograms @ step {selected_step(snap, state)}",
    )


def ridgelines(snap: Snapshot, state: ViewState, layers: list[str], labels: list[str], key: str, title: str) -> Panel:
    """The activation histograms of ``layers`` at the selected step, one row each (labelled ``labels``), the
    selected layer in colour."""
    counts = data.histograms_at(snap, "activation", state.index, layers)  # (L, B)
    low = data.depth_profile(snap, "activation", "min", state.index, layers=layers)
    high = data.depth_profile(snap, "activation", "max", state.index, layers=layers)
    axis = choose_axis(counts, _finite(np.nanmin, low), _finite(np.nanmax, high))
    if axis.scale == "linear":
        positions, drawn, xticks = axis.centres, axis.counts(counts), None
    else:
        bins = data.occupied_bins(counts)
        positions, drawn = np.arange(bins.start, bins.stop, dtype=np.float64), counts[:, bins]
        xticks = data.symlog_ticks(bins)
    peak = np.maximum(drawn.max(axis=1, keepdims=True), 1.0)
    heights = 0.9 * drawn / peak  # (L, B') each row scaled to its own peak
    layer = selected_layer(snap, state)
    polygons: dict[bool, tuple[list, list, list]] = {False: ([], [], []), True: ([], [], [])}
    for depth, name in enumerate(layers):
        xs, ys, depths = polygons[name == layer]
        base = -float(depth)
        xs.extend([positions[0], *positions, positions[-1], np.nan])
        ys.extend([base, *(base + heights[depth]), base, np.nan])
        depths.extend([depth] * (len(positions) + 3))
    series = tuple(
        Series(
            "selected" if chosen else "all layers",
            "area",
            x=np.array(xs),
            y=np.array(ys),
            text=np.array(depths),
            color=SELECTED if chosen else "#7f7f7f",
        )
        for chosen, (xs, ys, depths) in polygons.items()
    )
    return Panel(
        key,
        title,
        series,
        xlabel=axis.label,
        xticks=xticks,
        yticks=(list(-np.arange(len(layers), dtype=float)), list(labels)),
        note="" if counts.any() else "no activations recorded yet",
    )


def activation_depth_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Activation mean and std per layer (forward order) at the selected step."""
    mean = data.depth_profile(snap, "activation", "mean", state.index)
    std = data.depth_profile(snap, "activation", "std", state.index)
    return Panel(
        "act_depth",
        "activation std and mean by depth",
        (
            Series("std", "markers", x=list(snap.labels), y=std, color=PALETTE[0], legend=True),
            Series("mean", "markers", x=list(snap.labels), y=mean, color=PALETTE[1], legend=True),
        ),
        hlines=((0.0, ""),),
    )


def gradient_depth_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Gradient norm per layer (forward order) at the selected step."""
    marked = mark(data.depth_profile(snap, "gradient", "norm", state.index, data.MISSING), state.norm_log)
    labels = list(snap.labels)
    return Panel(
        "grad_depth",
        "gradient norm by depth",
        (Series("gradient norm", "markers", x=labels, y=marked.values, color=PALETTE[3]),)
        + nonfinite_series(labels, marked.nonfinite, marked.top(state.norm_log)),
        ylog=state.norm_log,
        hlines=marked.hlines,
    )


def activation_time_panel(snap: Snapshot, state: ViewState) -> Panel:
    """The selected layer's activation histogram over steps: bins x steps, log10(1 + count)."""
    layer = selected_layer(snap, state)
    counts = data.histogram_over_time(snap, "activation", layer) if layer else np.zeros((0, 0))
    if not counts.size:
        return Panel("act_hist_time", "activation histogram over time", note="no activations recorded yet")
    low = stat_matrix(snap.timeline, "activation", "min", [layer], np.nan)
    high = stat_matrix(snap.timeline, "activation", "max", [layer], np.nan)
    axis = choose_axis(counts.T, _finite(np.nanmin, low), _finite(np.nanmax, high))
    if axis.scale == "linear":
        rows, drawn, yticks = axis.centres, axis.counts(counts.T).T, None
    else:
        bins = data.occupied_bins(counts.T)
        rows, drawn = np.arange(bins.start, bins.stop, dtype=np.float64), counts[bins]
        yticks = data.symlog_ticks(bins)
    return Panel(
        "act_hist_time",
        f"{snap.label(layer)}: activations over time",
        (Series("log10(1 + count)", "heatmap", x=snap.steps, y=rows, z=np.log10(1.0 + drawn)),),
        xlabel="step",
        ylabel=axis.label,
        yticks=yticks,
        vline=selected_step(snap, state),
    )


def _finite(reduce: Callable, values: Any) -> float | None:
    """``reduce`` (np.nanmin / np.nanmax) over the finite ``values``; None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(reduce(values)) if len(values) else None


def units_depth_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Dead and saturated *units* per layer at the selected step (over the units window), and the zero fraction of
    outputs, a different thing: a healthy ReLU has half its outputs at zero and no dead unit."""
    dead = data.depth_profile(snap, "units", "dead_unit_frac", state.index)
    saturated = data.depth_profile(snap, "units", "saturated_unit_frac", state.index)
    zero = data.depth_profile(snap, "activation", "zero_frac", state.index)
    labels = list(snap.labels)
    bars = (("dead units", dead, PALETTE[3]), ("saturated units", saturated, PALETTE[1]))
    return Panel(
        "units_depth",
        "dead / saturated units by depth",
        (
            *(Series(name, "bar", x=labels, y=values, color=colour, legend=True) for name, values, colour in bars),
            # a measured 0 is a dash on the axis in the bar's colour: a bar of height 0 draws nothing, and would
            # look like a layer whose units are not measured (a Conv2d, a Linear), which stays blank
            *(
                Series(
                    f"{name} = 0",
                    "points",
                    x=labels,
                    y=np.where(values == 0, 0.0, np.nan),
                    color=colour,
                    symbol="line-ew",
                )
                for name, values, colour in bars
            ),
            Series("zero fraction of outputs", "markers", x=labels, y=zero, color="#555555", legend=True),
        ),
        yrange=(0.0, 1.0),
        note="" if np.isfinite(zero).any() else "no activations recorded yet",
    )


def units_time_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Share of dead-or-saturated units per layer over steps (the larger of the two), for layers whose units can
    die or saturate; layers x steps."""
    layers = units_layers(snap)
    if not layers:  # an empty heatmap would lay out bare axes (the 48-block GPT's GELUs have no units)
        note = "no ReLU or bounded activation layers" if snap.layers else "no activations recorded yet"
        return Panel("units_time", "dead or saturated units over time", note=note)
    dead = stat_matrix(snap.timeline, "units", "dead_unit_frac", layers).T
    saturated = stat_matrix(snap.timeline, "units", "saturated_unit_frac", layers).T
    stuck = backfill(np.fmax(dead, saturated))  # (L', S): each window's share over the steps it covers
    if not np.nanmax(stuck, initial=0.0) > 0:
        return Panel("units_time", "dead or saturated units over time", note="no dead or saturated units so far")
    return Panel(
        "units_time",
        "dead or saturated units over time",
        (
            Series(
                "stuck unit fraction",
                "heatmap",
                x=snap.steps,
                y=np.arange(len(layers), dtype=np.float64),
                z=stuck,
                zrange=(0.0, 1.0),
                colorscale="Reds",
            ),
        ),
        xlabel="step",
        yticks=(list(np.arange(len(layers), dtype=float)), [snap.label(layer) for layer in layers]),
        reversed_y=True,
        vline=selected_step(snap, state),
    )


def units_layers(snap: Snapshot) -> list[str]:
    """The activation layers whose units can die or saturate (ReLU-like and bounded ones), in forward order."""
    recorded = set(snap.record.layers("units")) if snap.record is not None else set()
    return [layer for layer in snap.layers if layer in recorded]


def backfill(values: np.ndarray) -> np.ndarray:
    """(L, S) with each NaN replaced by the next recorded value along S: a units window is recorded at its last
    step and covers the sampled steps before it (trailing NaN stay: their window has not closed)."""
    filled = np.array(values, dtype=np.float64)
    for column in range(filled.shape[1] - 2, -1, -1):
        gap = np.isnan(filled[:, column])
        filled[gap, column] = filled[gap, column + 1]
    return filled


PanelBuilder = Callable[[Snapshot, ViewState], Panel]
