"""Panels drawn with plotly: one figure of subplots, built once, then updated in place (one batch per refresh).

Plotly validates every property it is given, which costs far more than the numbers themselves, so the figure
keeps what it last sent and passes plotly only the properties that changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nbdiag.views.grid import COLS, position
from nbdiag.views.panels import Panel, Series

ROW_HEIGHT = 310  # px per grid row
TITLE_SHIFT = 20  # px between a subplot's title and its top edge: room for its legend, in one row under the title
HOVER = "depth %{customdata}<br>x=%{x}<br>y=%{y:.3g}<extra></extra>"


class PanelFigure:
    """A plotly figure of the dashboard's panels; its traces are slots keyed by (panel key, series name).

    Args:
        panels: the first panels to draw (their order fixes the grid positions).
        widget: build a ``go.FigureWidget`` (live, in a notebook) instead of a static ``go.Figure``.
        digits: round values to this many significant digits (None: exact), for views sent as JSON text.
        into: a live FigureWidget to draw into instead of a new one (the set of panels changed: the same widget
            model keeps being shown; see :func:`nbdiag.views.plotly_widget.refill`).
    """

    def __init__(self, panels: list[Panel], widget: bool = True, digits: int | None = None, into: Any = None) -> None:
        from plotly.subplots import make_subplots

        rows = -(-len(panels) // COLS)
        grid = make_subplots(
            rows=rows,
            cols=COLS,
            specs=[[{} if r * COLS + c < len(panels) else None for c in range(COLS)] for r in range(rows)],
            subplot_titles=[p.title for p in panels],
            horizontal_spacing=0.08,
            vertical_spacing=0.1,
        )
        self.keys = [panel.key for panel in panels]
        self.axes = {panel.key: _axes(grid, i) for i, panel in enumerate(panels)}
        layout = grid.layout.to_plotly_json()
        layout.update(
            height=ROW_HEIGHT * rows,
            autosize=True,  # the width follows the output area (see nbdiag.views.plotly_widget)
            margin={"t": 60, "b": 50, "l": 95, "r": 20},
            template="plotly_white",
            hovermode="closest",
            font={"size": 11},
        )
        layout["annotations"] = [{**a, "font": {"size": 12}, "yshift": TITLE_SHIFT} for a in layout["annotations"]] + [
            _note(layout[self.axes[key][0]]["domain"], layout[self.axes[key][1]]["domain"]) for key in self.keys
        ]
        for i, key in enumerate(self.keys):
            x_name, y_name = self.axes[key][:2]
            layout[_legend_id(i)] = _legend_position(layout[x_name]["domain"], layout[y_name]["domain"])
            for name in (x_name, y_name):
                layout[name].update(tickfont={"size": 10}, title={"font": {"size": 11}, "standoff": 4})
        self.digits = digits
        self.plain = not widget  # JSON lists for static figures; binary float arrays for the widget
        self.slots: dict[tuple[str, str], int] = {}
        traces = [self._new_trace(panel, series) for panel in panels for series in panel.series]
        self._sent: list[dict[str, Any]] = [{} for _ in traces]
        self._sent_layout: dict[str, Any] = {}
        self.figure = self._make(traces, layout)
        self.update(panels)
        if widget:
            # Wrapped only now, with the values in: a FigureWidget edited before its first view exists comes up
            # empty in JupyterLab and Notebook 7 (plotly 7.1; seen in the browser tests).
            from nbdiag.views.plotly_widget import live, refill

            self.figure = live(self.figure) if into is None else refill(into, self.figure)

    def _make(self, traces: list[dict], layout: dict) -> Any:
        """The plotly object the slots are drawn on (a subclass may draw on another with the same methods)."""
        import plotly.graph_objects as go

        return go.Figure(data=traces, layout=layout)

    def fits(self, panels: list[Panel]) -> bool:
        """Whether ``panels`` are the ones this figure was laid out for (a panel that gets data later, such as
        the train/validation gap, changes the layout: the figure is then built anew)."""
        return [panel.key for panel in panels] == self.keys

    def update(self, panels: list[Panel]) -> None:
        """Bring every panel up to date: one batched message carrying only what changed."""
        for panel in panels:
            for series in panel.series:
                if (panel.key, series.name) not in self.slots:
                    self.figure.add_trace(self._new_trace(panel, series))
                    self._sent.append({})
        trace_changes = self._trace_changes(panels)
        layout_changes = _changed(self._sent_layout, self._layout_values(panels))
        if not trace_changes and not layout_changes:
            return
        batch = self.figure.batch_update() if hasattr(self.figure, "batch_update") else _NoBatch()
        with batch:
            for index, values in trace_changes.items():
                self.figure.data[index].update(values)
            for path, value in layout_changes.items():
                self.figure.layout[path] = value

    def _new_trace(self, panel: Panel, series: Series) -> dict:
        i = self.keys.index(panel.key)
        x_ref, y_ref = self.axes[panel.key][2:]
        self.slots[(panel.key, series.name)] = len(self.slots)
        return {**_static_props(series), "xaxis": x_ref, "yaxis": y_ref, "legend": _legend_id(i)}

    def _trace_changes(self, panels: list[Panel]) -> dict[int, dict]:
        wanted: dict[int, dict] = {}
        for panel in panels:
            current = {series.name: series for series in panel.series}
            for (key, name), index in self.slots.items():
                if key == panel.key:
                    series = current.get(name)
                    wanted[index] = _values(series, self.digits, self.plain) if series is not None else _EMPTY
        changes = {}
        for index, values in wanted.items():
            changed = _changed(self._sent[index], values)
            if changed:
                changes[index] = changed
        return changes

    def _layout_values(self, panels: list[Panel]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        shapes = []
        for i, panel in enumerate(panels):
            x_name, y_name, x_ref, y_ref = self.axes[panel.key]
            values[f"{y_name}.type"] = "log" if panel.ylog else "linear"
            values[f"{y_name}.minorloglabels"] = "complete" if panel.ylog else None  # "2e-3", never a bare "2"
            values[f"{x_name}.range"] = list(panel.xrange) if panel.xrange and panel.series else None
            values[f"{x_name}.autorange"] = not (panel.xrange and panel.series)
            fixed = panel.yrange is not None and not panel.ylog
            values[f"{y_name}.range"] = list(panel.yrange) if fixed else None
            values[f"{y_name}.autorange"] = "reversed" if panel.reversed_y else not fixed
            values.update(_ticks(x_name, panel.xticks))
            values.update(_ticks(y_name, panel.yticks))
            values[f"{x_name}.title.text"] = panel.xlabel or None
            values[f"{x_name}.tickangle"] = 45 if _categorical(panel) else None
            values[f"annotations[{i}].text"] = panel.title
            values[f"annotations[{len(self.keys) + i}].text"] = "" if panel.series else panel.note
            shapes.extend(_shapes(panel, x_ref, y_ref))
        values["shapes"] = shapes
        return values


_EMPTY = {"x": [], "y": []}


class _NoBatch:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _categorical(panel: Panel) -> bool:
    """Whether the panel's x axis holds layer labels (drawn at 45 degrees, so long names fit side by side)."""
    return any(isinstance(s.x, list) and s.x and isinstance(s.x[0], str) for s in panel.series)


def _changed(sent: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``wanted`` that differ from ``sent`` (numpy arrays compared by value); ``sent`` is updated."""
    changed = {}
    for key, value in wanted.items():
        if key not in sent or not _equal(sent[key], value):
            changed[key] = value
            sent[key] = value
    return changed


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return type(a) is type(b) and a == b


def _axes(fig: Any, i: int) -> tuple[str, str, str, str]:
    """Layout names and trace references of subplot ``i``: ("xaxis3", "yaxis3", "x3", "y3")."""
    row, column = position(i)
    subplot = fig.get_subplot(row + 1, column + 1)
    x_name, y_name = subplot.xaxis.plotly_name, subplot.yaxis.plotly_name
    return x_name, y_name, x_name.replace("axis", ""), y_name.replace("axis", "")


def _legend_id(i: int) -> str:
    return "legend" if i == 0 else f"legend{i + 1}"


def _legend_position(x_domain: Any, y_domain: Any) -> dict:
    """One row of legend entries centred between a subplot's title and its top edge."""
    return {
        "orientation": "h",
        "x": (x_domain[0] + x_domain[1]) / 2,
        "y": y_domain[1],
        "xanchor": "center",
        "yanchor": "bottom",
        "bgcolor": "rgba(0,0,0,0)",
        "font": {"size": 10},
        "itemwidth": 30,
    }


def _note(x_domain: Any, y_domain: Any) -> dict:
    """An empty annotation centred in a subplot, for "nothing to draw yet" hints. Placed in paper coordinates from
    the subplot's domain: plotly.js draws no axes for a subplot without traces, and a note referring to them
    ("x10 domain") lands at the figure's top left, on top of the loss panel."""
    return {
        "text": "",
        "showarrow": False,
        "xref": "paper",
        "yref": "paper",
        "x": (x_domain[0] + x_domain[1]) / 2,
        "y": (y_domain[0] + y_domain[1]) / 2,
        "font": {"color": "#888"},
    }


def _static_props(series: Series) -> dict:
    """What a trace keeps for its whole life."""
    if series.kind == "heatmap":
        return {
            "type": "heatmap",
            "name": series.name,
            "showscale": False,
            "colorscale": series.colorscale,
            "hoverongaps": False,
        }
    if series.kind == "bar":
        return {
            "type": "bar",
            "name": series.name,
            "showlegend": series.legend,
            "textposition": "none",
            "hovertemplate": "%{text}<br>x=%{x}<br>y=%{y:.3g}<extra></extra>" if series.text is not None else None,
        }
    if series.kind == "labels":  # names at the right end of lines, left-aligned from their point
        return {
            "type": "scatter",
            "name": series.name,
            "mode": "text",
            "textposition": "middle right",
            "textfont": {"size": 9},
            "hoverinfo": "skip",
            "showlegend": False,
            "cliponaxis": False,
        }
    mode = {"markers": "lines+markers", "points": "markers"}.get(series.kind, "lines")
    hover = HOVER if series.text is not None else f"{series.name}<br>x=%{{x}}<br>y=%{{y:.3g}}<extra></extra>"
    props = {"type": "scatter", "name": series.name, "mode": mode, "showlegend": series.legend, "hovertemplate": hover}
    if series.kind == "area":
        props.update(fill="toself", fillcolor=_transparent(series.color))
    if series.kind == "points" and series.symbol == "line-ew":  # a dash on the axis line: a bar of height 0
        props.update(marker={"symbol": "line-ew", "size": 16, "line": {"width": 3, "color": series.color}})
        props.update(cliponaxis=False)
    elif series.kind == "points":
        props.update(marker={"symbol": series.symbol, "size": 9, "color": series.color})
    if series.dash:
        props.update(line={"dash": "dash"})
    return props


def _values(series: Series, digits: int | None = None, plain: bool = True) -> dict[str, Any]:
    """The properties that change between refreshes: plain lists (see :func:`_plain`), or for a FigureWidget
    float arrays, which it sends as binary buffers (lists cost it 5x more: plotly validates them element by
    element)."""
    if series.kind == "heatmap":
        low, high = series.zrange if series.zrange else (None, None)
        cells = _grid(series, digits) if plain else _columns(series)
        return {**cells, "zmin": low, "zmax": high}
    numbers = (lambda v: _plain(v, digits)) if plain else _float
    if series.kind == "labels":
        return {
            "x": numbers(series.x),
            "y": numbers(series.y),
            "text": list(series.text),
            "textfont.color": list(series.color),
        }
    values = {"x": numbers(series.x), "y": numbers(series.y), "showlegend": series.legend}
    if series.label is not None:
        values["name"] = series.label
    if series.kind == "bar":
        values.update({"marker.color": _plain(series.color), "text": _plain(series.text)})
    else:
        # hover depths: for the widget a float array too (a list of 100,000 depths is validated element by element)
        depths = _plain(series.text) if plain else _float(series.text)
        values.update({"customdata": depths, "line.color": series.color, "line.width": series.width})
    return values


def _float(values: Any) -> Any:
    """Numeric arrays as float64: plotly sends 1-D float arrays as binary buffers, int64 ones as JSON lists."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return values.astype(np.float64)
    return values


def _columns(series: Series) -> dict[str, np.ndarray]:
    """A heatmap's (rows, columns) grid as three 1-D float arrays (plotly.js grids them again): binary buffers
    instead of a nested JSON list, which ipywidgets would walk element by element."""
    z = np.asarray(series.z, dtype=np.float64)  # (len(y), len(x))
    x, y = np.asarray(series.x, dtype=np.float64), np.asarray(series.y, dtype=np.float64)
    return {"x": np.tile(x, len(y)), "y": np.repeat(y, len(x)), "z": z.reshape(-1)}


def _plain(values: Any, digits: int | None = None) -> Any:
    """Arrays as lists (floats rounded to ``digits`` significant digits), non-finite numbers as None (a gap):
    plain JSON, for the inline view."""
    if not isinstance(values, np.ndarray):
        return values
    if values.dtype.kind not in "fc":
        return values.tolist()
    finite = np.isfinite(values)
    if digits is not None:
        values = _significant(np.where(finite, values, 0.0), digits)
    plain = values.astype(object)
    plain[~finite] = None
    return plain.tolist()


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (their shortest repr is then at most that long)."""
    magnitude = np.floor(np.log10(np.where(values == 0, 1.0, np.abs(values))))
    shift = (digits - 1 - magnitude).astype(np.int64)  # decimals to keep; negative for large numbers
    up = 10.0 ** np.clip(shift, 0, 300)
    down = 10.0 ** np.clip(-shift, 0, 300)
    return np.where(shift >= 0, np.round(values * up) / up, np.round(values / down) * down)


def _grid(series: Series, digits: int | None) -> dict[str, Any]:
    """A heatmap's x, y and z (rows of z, one per y) as lists; gaps are None."""
    z = np.asarray(series.z, dtype=np.float64)  # (len(y), len(x))
    x, y = np.asarray(series.x, dtype=np.float64), np.asarray(series.y, dtype=np.float64)
    return {"x": _plain(x), "y": _plain(y), "z": _plain(z, digits)}


def _transparent(color: str) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},0.35)"


def _ticks(axis: str, ticks: tuple[list, list] | None) -> dict[str, Any]:
    if ticks is None:
        return {f"{axis}.tickmode": None, f"{axis}.tickvals": None, f"{axis}.ticktext": None}
    return {f"{axis}.tickmode": "array", f"{axis}.tickvals": list(ticks[0]), f"{axis}.ticktext": list(ticks[1])}


def _shapes(panel: Panel, x_ref: str, y_ref: str) -> list[dict]:
    """Reference band and lines (in data units) and the selected-step line (across the subplot's height)."""
    shapes = []
    if panel.hband is not None:
        shapes.append(
            {
                "type": "rect",
                "xref": f"{x_ref} domain",
                "yref": y_ref,
                "x0": 0,
                "x1": 1,
                "y0": panel.hband[0],
                "y1": panel.hband[1],
                "fillcolor": "rgba(44,160,44,0.12)",
                "line": {"width": 0},
                "layer": "below",
            }
        )
    for y, label in panel.hlines:
        shapes.append(
            {
                "type": "line",
                "xref": f"{x_ref} domain",
                "yref": y_ref,
                "x0": 0,
                "x1": 1,
                "y0": y,
                "y1": y,
                "line": {"color": "#555", "dash": "dash", "width": 1},
                # at the left end: the selected-step marker follows the latest step, at the right
                "label": {"text": label, "font": {"size": 10}, "textposition": "start", "yanchor": "top"},
            }
        )
    if panel.vline is not None and panel.series:
        shapes.append(
            {
                "type": "line",
                "xref": x_ref,
                "yref": f"{y_ref} domain",
                "x0": panel.vline,
                "x1": panel.vline,
                "y0": 0,
                "y1": 1,
                "line": {"color": "#d62728", "width": 1, "dash": "dot"},
            }
        )
    return shapes
