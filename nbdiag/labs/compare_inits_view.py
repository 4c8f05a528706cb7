"""Drawing compare_inits: one plotly FigureWidget with the recommendation, and the matplotlib version."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nbdiag.labs._widgets import WidgetView

if TYPE_CHECKING:  # for annotations only: the lab never imports its view (see nbdiag.labs.lab)
    from nbdiag.labs.compare_inits import InitComparison


class InitComparisonView(WidgetView):
    """The recommendation above one FigureWidget, and the summary table; the data never changes."""

    def __init__(self, comparison: InitComparison) -> None:
        import ipywidgets as w

        from nbdiag.views.plotly_widget import FitWidth

        self.figure_widget = _figure_widget(comparison)
        self.figures = (self.figure_widget,)
        table = comparison.summary().to_html(float_format=lambda v: f"{v:.3g}")
        recommendation = w.HTML(f"<b>{comparison.recommendation}</b>")
        self.box = w.VBox([recommendation, self.figure_widget, FitWidth(), w.HTML(table)])

    def refresh(self) -> None:
        """Nothing to redraw: a comparison is computed once."""


def _figure_widget(comparison: InitComparison):
    """Activation std and gradient std per layer (one line per scheme, log scale), initial loss bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from nbdiag.views.plotly_widget import live

    fig = make_subplots(
        rows=1, cols=3, subplot_titles=("activation std per layer", "gradient std per layer", "initial loss")
    )
    for i, (scheme, group) in enumerate(comparison.layers.groupby("scheme", sort=False)):
        color = f"hsl({i * 360 // max(len(comparison.summary()), 1)}, 60%, 45%)"
        hover = group["layer"] + " (" + group["type"] + ")"
        for col, column in ((1, "act_std"), (2, "grad_std")):
            fig.add_trace(
                go.Scatter(
                    x=group["index"],
                    y=group[column],
                    name=scheme,
                    line_color=color,
                    text=hover,
                    showlegend=col == 1,
                    legendgroup=scheme,
                ),
                row=1,
                col=col,
            )
    summary = comparison.summary()
    fig.add_trace(
        go.Bar(x=summary.index, y=summary["initial_loss"], name="initial loss", showlegend=False), row=1, col=3
    )
    fig.add_trace(
        go.Scatter(
            x=summary.index,
            y=summary["chance_loss"],
            mode="markers",
            name="chance",
            marker_symbol="line-ew-open",
            marker_size=30,
        ),
        row=1,
        col=3,
    )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="layer (forward order)", row=1, col=1)
    fig.update_xaxes(title_text="layer (forward order)", row=1, col=2)
    fig.update_layout(height=420, margin={"t": 40, "b": 40, "l": 40, "r": 20})
    return live(fig)


def draw(comparison: InitComparison, fig) -> None:
    """The same panels with matplotlib on ``fig``."""
    act_ax, grad_ax, loss_ax = fig.subplots(1, 3)
    for scheme, group in comparison.layers.groupby("scheme", sort=False):
        act_ax.semilogy(group["index"], group["act_std"], "o-", ms=3, label=scheme)
        grad_ax.semilogy(group["index"], group["grad_std"], "o-", ms=3, label=scheme)
    act_ax.set_title("activation std per layer")
    grad_ax.set_title("gradient std per layer")
    for ax in (act_ax, grad_ax):
        ax.set_xlabel("layer (forward order)")
    act_ax.legend(fontsize=8)
    summary = comparison.summary()
    positions = np.arange(len(summary))
    loss_ax.bar(positions, summary["initial_loss"], label="initial loss")
    loss_ax.scatter(positions, summary["chance_loss"], marker="_", s=600, color="k", label="chance")
    loss_ax.set_xticks(positions, summary.index)
    loss_ax.set_title("initial loss")
    loss_ax.legend(fontsize=8)
    fig.suptitle(comparison.recommendation, fontsize=8, wrap=True)


VIEW = InitComparisonView  # the widgets of this module's lab (see nbdiag.labs._widgets.VIEW_MODULES)


def draw_lab(lab, fig) -> None:
    """The lab drawn with matplotlib on ``fig``."""
    draw(lab, fig)
