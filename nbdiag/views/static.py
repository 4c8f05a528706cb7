"""The same panels drawn with matplotlib (no pyplot state): the PNG beside the widget, ``savefig``, CI output."""

from __future__ import annotations

import io
import textwrap
from typing import Any

import numpy as np

from nbdiag.findings import SEVERITY_COLOURS, by_severity, where_text
from nbdiag.views.grid import COLS, position
from nbdiag.views.panels import Panel, Series

MAX_TICK_LABELS = 16
LEGEND_COLUMNS = 3  # legend entries per row above a panel
FINDING_LINES = 8  # text lines of the findings banner at the top of the PNG
FINDING_CHARS = 175  # characters per banner line at 9 pt across the 16-inch figure


def figure(panels: list[Panel], findings: list[Any], title: str = "") -> Any:
    """A matplotlib Figure of the panels in the dashboard's grid, under a banner of the findings (most severe first).

    Args:
        panels: from :func:`nbdiag.views.grid.build_panels`.
        findings: the source's findings (the first few are listed).
        title: a heading (model, step).

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    rows = -(-len(panels) // COLS)
    fig = Figure(figsize=(16, 4 * rows + 1.6), layout="constrained")
    grid = fig.add_gridspec(rows + 1, COLS, height_ratios=[0.4] + [1.0] * rows)
    _draw_findings(fig.add_subplot(grid[0, :]), findings)
    for i, panel in enumerate(panels):
        row, column = position(i)
        draw_panel(fig.add_subplot(grid[1 + row, column]), panel)
    if title:
        fig.suptitle(title)
    return fig


def png(panels: list[Panel], findings: list[Any], title: str = "", dpi: int = 72) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure(panels, findings, title).savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def draw_panel(ax: Any, panel: Panel) -> None:
    """One panel on one Axes."""
    ax.set_title(textwrap.shorten(panel.title, 60), fontsize=10)
    if not panel.series:
        ax.text(0.5, 0.5, panel.note, ha="center", va="center", transform=ax.transAxes, color="#888")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    categories = _categories(panel)
    bars = [series for series in panel.series if series.kind == "bar"]
    for series in panel.series:
        _draw_series(ax, series, categories, bars)
    _decorate(ax, panel, categories)


def _categories(panel: Panel) -> list[str] | None:
    """String x values (layer labels) become positions 0..n-1."""
    for series in panel.series:
        if series.kind != "heatmap" and isinstance(series.x, list) and series.x and isinstance(series.x[0], str):
            return series.x
    return None


def _draw_series(ax: Any, series: Series, categories: list[str] | None, bars: list[Series]) -> None:
    x = np.arange(len(categories)) if categories is not None and series.kind != "heatmap" else series.x
    if series.kind == "heatmap":
        _draw_heatmap(ax, series)
    elif series.kind == "bar":
        width = 0.8 / len(bars)
        offset = (bars.index(series) - (len(bars) - 1) / 2) * width
        label = series.name if series.legend else None
        ax.bar(np.asarray(x, dtype=float) + offset, series.y, width=width, color=series.color, label=label)
    elif series.kind == "area":
        for xs, ys in _polygons(np.asarray(series.x), np.asarray(series.y)):
            ax.fill(xs, ys, color=series.color, alpha=0.5, linewidth=0.5)
    elif series.kind == "labels":  # names at the right end of lines
        for x_end, y, text, colour in zip(series.x, series.y, series.text, series.color, strict=True):
            ax.annotate(
                text, (x_end, y), xytext=(3, 0), textcoords="offset points", ha="left", va="center", fontsize=7,
                color=colour, annotation_clip=False,
            )  # fmt: skip
    elif series.kind == "points" and series.symbol == "line-ew":  # a dash on the axis line: a bar of height 0
        shown = np.isfinite(np.asarray(series.y, dtype=float))
        if shown.any():  # an unclipped empty line would stretch the layout to the figure's corner
            ax.plot(np.asarray(x)[shown], np.asarray(series.y)[shown], "_", color=series.color, ms=12, mew=3,
                    clip_on=False)  # fmt: skip
    else:
        style = "--" if series.dash else {"markers": "o-", "points": "x"}.get(series.kind, "-")
        label = (series.label or series.name) if series.legend else None
        ax.plot(x, series.y, style, color=series.color, lw=series.width, ms=3, label=label)


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of the cells around ``centres`` (midpoints; a lone centre gets a cell of width 1). matplotlib's
    shading="nearest" draws nothing for a single row, e.g. a units heatmap of one ReLU layer."""
    if len(centres) < 2:
        return np.concatenate([centres - 0.5, centres + 0.5])
    middle = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def _draw_heatmap(ax: Any, series: Series) -> None:
    z = np.asarray(series.z, dtype=float)
    if not z.size:
        return
    y = series.y
    labels = isinstance(y, list) and y and isinstance(y[0], str)
    rows = np.arange(len(y)) if labels else np.asarray(y, dtype=float)
    low, high = series.zrange if series.zrange else (None, None)
    cmap = {"Viridis": "viridis", "Reds": "Reds", "RdBu": "RdBu"}.get(series.colorscale, "viridis")
    ax.pcolormesh(
        _cell_edges(np.asarray(series.x, dtype=float)),
        _cell_edges(rows),
        np.ma.masked_invalid(z),
        shading="flat",
        cmap=cmap,
        vmin=low,
        vmax=high,
    )
    if labels:
        ticks = _thinned(range(len(y)))
        ax.set_yticks(ticks, [y[t] for t in ticks], fontsize=7)


def _polygons(x: np.ndarray, y: np.ndarray):
    """Split NaN-separated polygons."""
    breaks = np.flatnonzero(np.isnan(x))
    start = 0
    for stop in [*breaks, len(x)]:
        if stop > start:
            yield x[start:stop], y[start:stop]
        start = stop + 1


def _thinned(positions: Any) -> list[int]:
    positions = list(positions)
    stride = max(1, -(-len(positions) // MAX_TICK_LABELS))
    return positions[::stride]


def _decorate(ax: Any, panel: Panel, categories: list[str] | None) -> None:
    if panel.hband is not None:
        ax.axhspan(*panel.hband, color="#2ca02c", alpha=0.12)
    for y, label in panel.hlines:
        ax.axhline(y, color="#555", ls="--", lw=0.8)
        ax.annotate(  # at the left end: the selected-step marker follows the latest step, at the right
            label,
            (0, y),
            xycoords=("axes fraction", "data"),
            xytext=(2, -2),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=7,
            color="#555",
        )
    if panel.vline is not None:
        ax.axvline(panel.vline, color="#d62728", ls=":", lw=1)
    if panel.xrange is not None:
        ax.set_xlim(*panel.xrange)
    if panel.ylog:
        ax.set_yscale("log")
    elif panel.yrange is not None:
        ax.set_ylim(*panel.yrange)
    if categories is not None:
        ticks = _thinned(range(len(categories)))
        ax.set_xticks(ticks, [categories[t] for t in ticks], rotation=60, ha="right", fontsize=7)
    for ticks, setter in ((panel.xticks, ax.set_xticks), (panel.yticks, ax.set_yticks)):
        if ticks is not None:
            keep = _thinned(range(len(ticks[0])))
            setter([ticks[0][k] for k in keep], [ticks[1][k] for k in keep], fontsize=7)
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if panel.reversed_y:
        ax.invert_yaxis()
    handles = ax.get_legend_handles_labels()[0]
    if handles:  # above the plot, under the title, as in the dashboard: a legend inside covered lines
        columns = min(len(handles), LEGEND_COLUMNS)
        rows = -(-len(handles) // columns)
        ax.legend(
            fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=columns, frameon=False, borderaxespad=0.2,
            handlelength=1.5, columnspacing=1.0,
        )  # fmt: skip
        ax.set_title(ax.get_title(), fontsize=10, pad=6 + 12 * rows)


def _draw_findings(ax: Any, findings: list[Any]) -> None:
    """The banner: each finding (severity, id, layer and step, message) and its advice with the source, wrapped at
    word boundaries; past :data:`FINDING_LINES` lines, a count of those left out."""
    ax.axis("off")
    if not findings:
        ax.text(0, 0.5, "findings: none", color=SEVERITY_COLOURS["info"], fontsize=10, va="center")
        return
    lines: list[tuple[str, str]] = []
    ordered = by_severity(findings)
    for shown, finding in enumerate(ordered):
        where = where_text(finding)
        head = f"{finding.severity.upper()}  {finding.id}{f' · {where}' if where else ''}: {finding.message}"
        block = textwrap.wrap(head, FINDING_CHARS, break_long_words=False) + textwrap.wrap(
            f"→ {finding.advice} ({finding.ref})", FINDING_CHARS, initial_indent="    ", subsequent_indent="      "
        )
        if len(lines) + len(block) > FINDING_LINES - (shown < len(ordered) - 1):
            lines.append((f"… and {len(ordered) - shown} more: mon.findings()", "#555"))
            break
        lines += [(line, SEVERITY_COLOURS.get(finding.severity, "#555")) for line in block]
    for row, (line, colour) in enumerate(lines):
        ax.text(0, 1 - row / FINDING_LINES, line, color=colour, fontsize=9, va="top", transform=ax.transAxes)
