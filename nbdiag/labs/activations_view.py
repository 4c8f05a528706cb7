"""Drawing the activations lab: one plotly FigureWidget updated in place, and the same panels in matplotlib."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from nbdiag.labs._widgets import WidgetView

if TYPE_CHECKING:  # for annotations only: the lab never imports its view (see nbdiag.labs.lab)
    from nbdiag.labs.activations import ActivationsLab

STAT_COLUMNS = ("mean_grad", "saturated", "zero_frac")
# One distinct hue per activation function (lines), and other colours for the statistics' bars, which have a legend
# of their own beside their panel: a line and a bar never share a colour or a legend.
LINE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
BAR_COLOURS = {"mean_grad": "#393b79", "saturated": "#bcbd22", "zero_frac": "#7f7f7f"}


def input_density(lab: ActivationsLab) -> tuple[np.ndarray, np.ndarray]:
    """The input distribution's density on the curves' x grid, scaled to peak at 1 (drawn behind the curves)."""
    x = lab.curves["x"].unique()
    density = np.exp(-0.5 * ((x - lab.mean) / lab.std) ** 2)
    return x, density / max(density.max(), math.ulp(1.0))


class ActivationsLabView(WidgetView):
    """Mean/std sliders above one FigureWidget: f(x), f'(x) (with the input density), and the statistics."""

    def __init__(self, lab: ActivationsLab) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from nbdiag.views.plotly_widget import FitWidth, live

        self.lab = lab
        fig = make_subplots(rows=1, cols=3, subplot_titles=("f(x)", "f'(x)", input_title(lab)), horizontal_spacing=0.06)
        for col in (1, 2):
            fig.add_trace(
                go.Scatter(name="input density", fill="tozeroy", line_color="lightgray", showlegend=col == 1),
                row=1,
                col=col,
            )
        for i, (name, curve) in enumerate(lab.curves.groupby("activation", sort=False)):
            color = LINE_COLOURS[i % len(LINE_COLOURS)]
            fig.add_trace(go.Scatter(x=curve["x"], y=curve["value"], name=name, line_color=color), row=1, col=1)
            fig.add_trace(
                go.Scatter(x=curve["x"], y=curve["grad"], name=name, line_color=color, showlegend=False), row=1, col=2
            )
        for column in STAT_COLUMNS:
            fig.add_trace(go.Bar(name=column, marker_color=BAR_COLOURS[column], legend="legend2"), row=1, col=3)
        fig.update_yaxes(range=[-2, 3], row=1, col=1)
        fig.update_yaxes(range=[-0.2, 1.3], row=1, col=2)
        fig.update_yaxes(range=[0, 1.1], row=1, col=3)
        fig.update_layout(
            height=420,
            barmode="group",
            margin={"t": 40, "b": 70, "l": 40, "r": 20},
            # below the bars, not over them (it hid the last activation's bars)
            legend2={
                **{"orientation": "h", "x": 1.0, "y": -0.1, "xanchor": "right", "yanchor": "top"},
                "title": "statistic",
            },
        )
        self.figure_widget = fig  # a go.Figure until drawn once (below)
        self.controls = {
            "mean": w.FloatSlider(value=lab.mean, min=-4, max=4, step=0.1, description="input mean"),
            "std": w.FloatLogSlider(value=lab.std, base=10, min=-1.5, max=1, description="input std"),
        }
        self.table = w.HTML()
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.refresh()
        # wrapped with its values: a FigureWidget edited before its view existed came up empty in JupyterLab
        self.figure_widget = live(self.figure_widget)
        self.figures = (self.figure_widget,)
        self.box = w.VBox([w.HBox(list(self.controls.values())), self.figure_widget, FitWidth(), self.table])

    def _on_change(self, _change: Any) -> None:
        self.lab.update(mean=self.controls["mean"].value, std=self.controls["std"].value)

    def refresh(self) -> None:
        """Move the density and the bars to ``lab.stats`` (one batched message), and refill the table."""
        lab = self.lab
        x, density = input_density(lab)
        fig = self.figure_widget
        with fig.batch_update():
            fig.data[0].update(x=x, y=density)
            fig.data[1].update(x=x, y=density)
            for trace in fig.data[-len(STAT_COLUMNS) :]:
                trace.update(x=lab.stats.index.to_list(), y=lab.stats[trace.name].to_numpy())
            fig.layout.annotations[2].text = input_title(lab)
        self.table.value = lab.stats.to_html(float_format=lambda v: f"{v:.3f}")


def input_title(lab: ActivationsLab) -> str:
    """The statistics panel's title: the input distribution with its numbers, e.g. "for x ~ N(1, 0.5²)"."""
    return f"for x ~ N({lab.mean:.3g}, {lab.std:.3g}²)"


def draw(lab: ActivationsLab, fig) -> None:
    """The same panels with matplotlib on ``fig``."""
    curve_ax, grad_ax, stats_ax = fig.subplots(1, 3)
    x, density = input_density(lab)
    for ax in (curve_ax, grad_ax):
        ax.fill_between(x, density, color="lightgray", label="input density")
    for i, (name, curve) in enumerate(lab.curves.groupby("activation", sort=False)):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        curve_ax.plot(curve["x"], curve["value"], label=name, color=colour)
        grad_ax.plot(curve["x"], curve["grad"], label=name, color=colour)
    curve_ax.set_ylim(-2, 3)
    curve_ax.set_title("f(x)")
    curve_ax.legend(fontsize=7)
    grad_ax.set_title("f'(x)")
    positions = np.arange(len(lab.stats))
    bar_width = 0.8 / len(STAT_COLUMNS)
    for i, column in enumerate(STAT_COLUMNS):
        stats_ax.bar(positions + i * bar_width, lab.stats[column], bar_width, label=column, color=BAR_COLOURS[column])
    stats_ax.set_xticks(positions + 0.4 - bar_width / 2, lab.stats.index, rotation=45, fontsize=7)
    stats_ax.legend(fontsize=7)
    stats_ax.set_title(input_title(lab))


VIEW = ActivationsLabView  # the widgets of this module's lab (see nbdiag.labs._widgets.VIEW_MODULES)


def draw_lab(lab, fig) -> None:
    """The lab drawn with matplotlib on ``fig``."""
    draw(lab, fig)
