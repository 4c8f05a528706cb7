"""Panels of a deep model: statistics over block index x role (:mod:`nbdiag.blocks`), not one point per layer.

A 48-block GPT has 340 layers. Drawn one point per layer, Linear, LayerNorm and GELU alternate in a sawtooth and
no trend across depth can be read; 340 histogram ridgelines are a grey wall. Drawn per role across blocks, each
line is one kind of layer (``attn.qkv``, ``mlp.0``...) going deeper, and a heatmap shows every layer at once as
block x role. These panels replace the per-layer ones when a model has :data:`MIN_BLOCKS` blocks or more.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from nbdiag.blocks import Blocks, find_blocks
from nbdiag.names import owning_layer
from nbdiag.record import stat_matrix
from nbdiag.views import data, panels
from nbdiag.views.data import Snapshot
from nbdiag.views.end_labels import end_labels, with_room
from nbdiag.views.panels import Panel, Series, ViewState

MIN_BLOCKS = 4  # fewer blocks read fine one point per layer (and small models' dashboards stay as they were)
MAX_RIDGELINES = 16  # histogram rows of one role; more blocks are drawn every k-th (the selected layer's kept)
ROLE_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def blocks_of(snap: Snapshot) -> Blocks | None:
    """The repeated blocks of ``snap``'s layers when there are at least :data:`MIN_BLOCKS`, else None (read once
    per snapshot: eight panels ask)."""

    def find() -> Blocks | None:
        record = snap.record
        types = tuple(record.layer_type(layer) if record is not None else None for layer in snap.layers)
        found = _find(tuple(snap.layers), types)
        return found if found is not None and len(found) >= MIN_BLOCKS else None

    return snap.cached("blocks", find)


@lru_cache(maxsize=8)
def _find(layers: tuple[str, ...], types: tuple[str | None, ...]) -> Blocks | None:
    return find_blocks(layers, dict(zip(layers, types, strict=True)))


def role_label(snap: Snapshot, blocks: Blocks, role: str) -> str:
    """``"mlp.1 · GELU"`` for a role named by its position in a Sequential; other roles as they are."""
    if not role.rsplit(".", 1)[-1].isdigit() or snap.record is None:
        return role
    layer = next(layer for layer in blocks.of_role(role) if layer is not None)
    kind = snap.record.layer_type(layer)
    return f"{role} · {kind}" if kind else role


def role_colour(index: int) -> str:
    return ROLE_COLOURS[index % len(ROLE_COLOURS)]


def role_values(snap: Snapshot, blocks: Blocks, kind: str, stat: str, state: ViewState, missing: float = np.nan):
    """(roles, blocks) values of ``stat`` of ``kind`` at the selected step; ``missing`` where a block lacks a role."""
    names = [blocks.layers.get((i, role), "") for role in blocks.roles for i in range(len(blocks))]
    index = data.step_index(snap, state.index)
    block = None if index is None else snap.entries[index].blocks.get(kind)
    return data.block_column(snap, block, stat, names, missing).reshape(len(blocks.roles), len(blocks))


def role_lines_panel(snap: Snapshot, state: ViewState, key: str, title: str, kind: str, stat: str) -> Panel:
    """One line per role across block index, the selected layer marked; log axis with the "log norms" control."""
    blocks = blocks_of(snap)
    assert blocks is not None
    marked = panels.mark(role_values(snap, blocks, kind, stat, state, data.MISSING), state.norm_log)
    x = np.arange(len(blocks), dtype=np.float64)
    series = tuple(
        Series(role, "markers", x=x, y=marked.values[r], color=role_colour(r), label=role_label(snap, blocks, role))
        for r, role in enumerate(blocks.roles)
    )
    where = blocks.locate(panels.selected_layer(snap, state) or "")
    if where is not None:
        value = marked.values[blocks.roles.index(where[1]), where[0]]
        series += (Series("selected layer", "points", x=x[[where[0]]], y=np.array([value]), color="#000000"),)
    finite = np.isfinite(marked.values).any()
    labels = named_ends(series[: len(blocks.roles)], (-0.5, len(blocks) - 0.5), state.norm_log, values=[marked.values])
    return Panel(
        key,
        title,
        series + labels + panels.nonfinite_series(x, marked.nonfinite, marked.top(state.norm_log)) if finite else (),
        xlabel="block",
        ylog=state.norm_log,
        xrange=with_room(-0.5, len(blocks) - 0.5),
        hlines=marked.hlines,
        note="" if finite else f"no {kind}s recorded yet",
    )


def named_ends(
    lines: tuple[Series, ...],
    x_data: tuple[float, float],
    log: bool,
    yrange: tuple[float, float] | None = None,
    values: Any = None,
) -> tuple[Series, ...]:
    """The role lines named at their right ends (in the role's colour), not in a legend over them."""
    return end_labels([(s.label or s.name, np.asarray(s.y), s.color) for s in lines], x_data, log, yrange, values)


def activation_roles_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Activation std per role across blocks."""
    return role_lines_panel(snap, state, "act_depth", "activation std by block, per role", "activation", "std")


def gradient_roles_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Gradient norm per role across blocks."""
    return role_lines_panel(snap, state, "grad_depth", "gradient norm by block, per role", "gradient", "norm")


def role_heatmap(snap: Snapshot, key: str, what: str, values: np.ndarray, blocks: Blocks, state: ViewState) -> Panel:
    """A (roles, blocks) matrix as a heatmap of log10 values; the title gives the colour range. Zeros are drawn a
    decade below the smallest positive value (the title says so), NaN/Inf and gaps are left blank."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
    finite = z[np.isfinite(z)]
    zeros = values == 0
    if not finite.size and not zeros.any():
        return Panel(key, f"{what}, block × role", note=f"no {what} recorded yet")
    low = float(finite.min()) if finite.size else 0.0
    if zeros.any():
        low -= 1.0
        z = np.where(zeros, low, z)
    high = float(z[np.isfinite(z)].max())
    zero_note = "; 0 at the bottom" if zeros.any() else ""
    rows = np.arange(len(blocks.roles), dtype=np.float64)
    return Panel(
        key,
        f"{what}, block × role (log10 {low:.1f} … {high:.1f}{zero_note})",
        (
            Series(
                f"log10 {what}",
                "heatmap",
                x=np.arange(len(blocks), dtype=np.float64),
                y=rows,
                z=z,
                zrange=(low, high if high > low else low + 1.0),
            ),
        ),
        xlabel="block",
        yticks=(list(rows), [role_label(snap, blocks, role) for role in blocks.roles]),
        reversed_y=True,
    )


def activation_heatmap_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Activation std of every layer in a block at the selected step, block x role."""
    blocks = blocks_of(snap)
    assert blocks is not None
    values = role_values(snap, blocks, "activation", "std", state)
    return role_heatmap(snap, "act_heatmap", "activation std", values, blocks, state)


def update_heatmap_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Update/weight ratio of each block layer's weight at the selected step, block x role (a layer without
    weights, a GELU, is a gap)."""
    blocks = blocks_of(snap)
    assert blocks is not None
    names = [name for name in panels.update_names(snap) if blocks.locate(owning_layer(name)) is not None]
    if not names:
        return Panel(
            "update_heatmap", "update / weight ratio, block × role", note="pass the optimizer: watch(model, optimizer)"
        )
    index = data.step_index(snap, state.index)
    entry = [] if index is None else [snap.entries[index]]
    ratios = (
        stat_matrix(entry, "update", "update_ratio", names, np.nan).reshape(-1)
        if entry
        else np.full(len(names), np.nan)
    )
    values = np.full((len(blocks.roles), len(blocks)), np.nan)
    for name, ratio in zip(names, ratios, strict=True):
        block, role = blocks.locate(owning_layer(name))
        values[blocks.roles.index(role), block] = ratio
    return role_heatmap(snap, "update_heatmap", "update / weight ratio", values, blocks, state)


def focus(snap: Snapshot, blocks: Blocks, state: ViewState) -> str | int:
    """What the histogram panel shows: ``state.hist`` (a role, or a block index) when valid, else the selected
    layer's role, else the first role."""
    if (isinstance(state.hist, str) and state.hist in blocks.roles) or (
        isinstance(state.hist, int) and 0 <= state.hist < len(blocks)
    ):
        return state.hist
    where = blocks.locate(panels.selected_layer(snap, state) or "")
    return where[1] if where is not None else blocks.roles[0]


def histograms_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Activation histograms of one role in every block (one ridgeline per block), or of one block's layers."""
    blocks = blocks_of(snap)
    assert blocks is not None
    shown = focus(snap, blocks, state)
    if isinstance(shown, str):
        pairs = [(layer, f"block {i}") for i, layer in enumerate(blocks.of_role(shown)) if layer is not None]
        title = f"{shown} activations in each block @ step {panels.selected_step(snap, state)}"
    else:
        pairs = [(layer, role_label(snap, blocks, blocks.locate(layer)[1])) for layer in blocks.of_block(shown)]
        title = f"block {shown} activations @ step {panels.selected_step(snap, state)}"
    kept, stride = _evenly(len(pairs), [i for i, (layer, _) in enumerate(pairs) if layer == state.layer])
    if stride > 1:
        title = title.replace(" in each block", f" in every {panels.ordinal(stride)} block")
    pairs = [pairs[i] for i in kept]
    layers, labels = [layer for layer, _ in pairs], [label for _, label in pairs]
    return panels.ridgelines(snap, state, layers, labels, key="act_hist", title=title)


def _evenly(count: int, always: list[int]) -> tuple[list[int], int]:
    """At most about :data:`MAX_RIDGELINES` of ``count`` rows, evenly spaced, the last one and ``always`` kept (a
    ridgeline a few pixels high shows no shape); and the stride."""
    stride = max(1, -(-count // MAX_RIDGELINES))
    return sorted({*range(0, count, stride), *([count - 1] if count else []), *always}), stride


def units_roles_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Share of dead-or-saturated units (the larger) per role across blocks, for roles whose units can die or
    saturate, at the selected step."""
    blocks = blocks_of(snap)
    assert blocks is not None
    dead = role_values(snap, blocks, "units", "dead_unit_frac", state)
    saturated = role_values(snap, blocks, "units", "saturated_unit_frac", state)
    stuck = np.fmax(dead, saturated)
    x = np.arange(len(blocks), dtype=np.float64)
    series = tuple(
        Series(role, "markers", x=x, y=stuck[r], color=role_colour(r), label=role_label(snap, blocks, role))
        for r, role in enumerate(blocks.roles)
        if np.isfinite(stuck[r]).any()
    )
    return Panel(
        "units_depth",
        "dead or saturated units by block, per role",
        series + named_ends(series, (-0.5, len(blocks) - 0.5), log=False, yrange=(0.0, 1.0)),
        xlabel="block",
        xrange=with_room(-0.5, len(blocks) - 0.5),
        yrange=(0.0, 1.0),
        note="" if series else "no units recorded yet",
    )


def role_time_lines(
    snap: Snapshot, blocks: Blocks, values: np.ndarray, names: list[str], selected: tuple[set[str], str], log: bool
) -> tuple[Series, ...]:
    """Per role, the median over blocks of an (N, S) statistic over steps (``names``: its rows, layers or their
    parameters), named at the line's right end; and the selected rows in black, in the legend as their label. One
    line per role, not one per layer: 340 grey lines over time were a wall."""
    steps = snap.steps
    located = [blocks.locate(name) or blocks.locate(owning_layer(name)) for name in names]
    lines = []
    for r, role in enumerate(blocks.roles):
        rows = [i for i, where in enumerate(located) if where is not None and where[1] == role]
        if not rows or not np.isfinite(values[rows]).any():
            continue
        median = column_median(values[rows])
        label = role_label(snap, blocks, role)
        lines.append(Series(role, "line", x=steps, y=median, color=role_colour(r), label=label))
    chosen, label = selected
    mask = np.array([name in chosen for name in names], dtype=bool)
    x_sel, y_sel = data.lines_with_gaps(steps, values[mask])
    depths = np.array([panels.depth_of(snap, name) for name, kept in zip(names, mask, strict=True) if kept])
    black = Series(
        "selected",
        "line",
        x=x_sel,
        y=y_sel,
        color="#000000",
        width=2.0,
        text=np.repeat(depths, len(steps) + 1),
        legend=bool(label),
        label=label or None,
    )
    x_data = panels.step_range(steps) or (0.0, 0.0)
    return (*lines, black, *named_ends(tuple(lines), x_data, log, values=[line.y for line in lines] + [y_sel]))


def column_median(values: np.ndarray) -> np.ndarray:
    """The median of each column of ``values`` over its non-NaN entries, NaN for a column with none (a step no
    block recorded): ``np.nanmedian`` without its masked-array path, which cost 30 ms a refresh at 340 layers."""
    ordered = np.sort(values, axis=0)  # NaN last
    count = np.isfinite(ordered).sum(axis=0)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[None] // 2, axis=0)[0]
    high = np.take_along_axis(ordered, (count // 2)[None], axis=0)[0] if len(ordered) else low
    return np.where(count > 0, 0.5 * (low + high), np.nan)


def gradient_roles_time_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Gradient norm ‖∂loss/∂output‖ over steps, the median of each role over blocks, and the selected layer."""
    blocks = blocks_of(snap)
    assert blocks is not None
    layer = panels.selected_layer(snap, state)
    raw = stat_matrix(snap.timeline, "gradient", "norm", snap.layers, data.MISSING).T
    marked = panels.mark(raw, state.norm_log)
    recorded = np.isfinite(marked.values).any() or marked.nonfinite.any()
    chosen = ({layer}, snap.label(layer)) if layer else (set(), "")
    lines = role_time_lines(snap, blocks, marked.values, snap.layers, chosen, state.norm_log)
    return Panel(
        "grad_time",
        "gradient norm ‖∂loss/∂output‖, median per role",
        lines + panels.nonfinite_series(snap.steps, marked.nonfinite, marked.top(state.norm_log)) if recorded else (),
        xlabel="step",
        ylog=state.norm_log,
        xrange=_time_range(snap),
        hlines=marked.hlines,
        vline=panels.selected_step(snap, state),
        note="" if recorded else "no gradients recorded yet",
    )


def update_roles_time_panel(snap: Snapshot, state: ViewState) -> Panel:
    """Update/weight ratio over steps, the median of each role's weights over blocks, and the selected layer's,
    with the ~1e-3 reference band."""
    blocks = blocks_of(snap)
    assert blocks is not None
    names = panels.update_names(snap)
    marked = panels.mark(stat_matrix(snap.timeline, "update", "update_ratio", names, data.MISSING).T, state.norm_log)
    chosen = panels.weights_of(snap, panels.selected_layer(snap, state), names)
    lines = role_time_lines(snap, blocks, marked.values, names, chosen, state.norm_log) if names else ()
    return Panel(
        "update_time",
        "update / weight ratio, median per role",
        lines + panels.nonfinite_series(snap.steps, marked.nonfinite, marked.top(state.norm_log)),
        xlabel="step",
        ylog=state.norm_log,
        xrange=_time_range(snap) if names else None,
        hlines=((panels.UPDATE_RATIO, "1e-3"), *marked.hlines),
        hband=panels.UPDATE_BAND,
        vline=panels.selected_step(snap, state),
        note="" if names else "pass the optimizer: watch(model, optimizer)",
    )


def _time_range(snap: Snapshot) -> tuple[float, float] | None:
    """The sampled steps' range, with room on the right for the role names."""
    steps = panels.step_range(snap.steps)
    return None if steps is None else with_room(*steps)
