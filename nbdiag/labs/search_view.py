"""Drawing the random vs grid search lab: where each strategy looked (lr x weight decay) and what it found; one
plotly FigureWidget updated in place, and the same panels in matplotlib."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nbdiag.labs._widgets import WidgetView

if TYPE_CHECKING:  # for annotations only: the lab never imports its view (see nbdiag.labs.lab)
    from nbdiag.labs.search import SearchLab

COLORS = {"grid": "#1f77b4", "random": "#d62728"}
MARKERS = {"coarse": "o", "fine": "^"}


def draw(lab: SearchLab, fig: Any) -> None:
    """Three axes: each strategy's trials in (lr, weight decay) coloured by validation accuracy, then validation
    accuracy against the learning rate for both (the important hyperparameter: the grid sees few values of it)."""
    frame, summary = lab.frame(), lab.summary()
    axes = fig.subplots(1, 3)
    for ax, strategy in zip(axes[:2], ("grid", "random"), strict=True):
        trials = frame[frame["strategy"] == strategy]
        for stage, marker in MARKERS.items():
            part = trials[trials["stage"] == stage]
            points = ax.scatter(
                part["lr"],
                part["weight_decay"],
                c=part["val_acc"],
                cmap="viridis",
                vmin=float(frame["val_acc"].min()),  # the colour scale spans the accuracies found (0.85-0.97 on
                vmax=float(frame["val_acc"].max()),  # digits), not 0-1, where they would all look alike
                marker=marker,
                s=36,
                edgecolors="k",
                linewidths=0.3,
                label=stage,
            )
        best = summary.loc[strategy]
        ax.scatter([best["best_lr"]], [best["best_weight_decay"]], marker="*", s=220, c="gold", edgecolors="k")
        ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="weight decay")
        ax.set_title(f"{strategy}: {int(best['distinct_lr'])} distinct lr, best {best['best_val_acc']:.1%}")
        ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(points, ax=axes[:2], location="bottom", shrink=0.5, label="colour: validation accuracy")
    for strategy, color in COLORS.items():
        trials = frame[frame["strategy"] == strategy]
        axes[2].scatter(trials["lr"], trials["val_acc"], color=color, s=18, alpha=0.8, label=strategy)
    low, high = float(frame["val_acc"].min()), float(frame["val_acc"].max())
    margin = 0.05 * max(high - low, 0.01)
    axes[2].set(xscale="log", xlabel="learning rate", ylabel="validation accuracy", ylim=(low - margin, high + margin))
    axes[2].set_title("what each strategy found along the lr axis")
    axes[2].legend(loc="lower right", fontsize=8)


class SearchLabView(WidgetView):
    """Budget and seed controls above one FigureWidget (each strategy's trials in lr x weight decay, and validation
    accuracy against lr), and the summary table."""

    def __init__(self, lab: SearchLab) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from nbdiag.views.plotly_widget import FitWidth, live

        self.lab = lab
        fig = make_subplots(rows=1, cols=3, subplot_titles=("grid", "random", "validation accuracy vs lr"))
        for col, strategy in enumerate(("grid", "random"), start=1):
            for stage, symbol in (("coarse", "circle"), ("fine", "triangle-up")):
                marker = {"symbol": symbol, "colorscale": "Viridis", "cmin": 0, "cmax": 1, "size": 8}
                marker["showscale"] = col == 2 and stage == "coarse"
                marker["colorbar"] = COLOUR_BAR
                name = f"{strategy} {stage}"
                fig.add_trace(go.Scatter(mode="markers", name=name, marker=marker, showlegend=False), row=1, col=col)
            star = {"symbol": "star", "size": 16, "color": "gold", "line": {"width": 1, "color": "black"}}
            fig.add_trace(go.Scatter(mode="markers", name=f"{strategy} best", marker=star, showlegend=False), 1, col)
        for strategy, color in COLORS.items():
            marker = {"color": color, "size": 6, "opacity": 0.8}
            fig.add_trace(go.Scatter(mode="markers", name=strategy, marker=marker), row=1, col=3)
        fig.update_xaxes(type="log", title_text="learning rate")
        fig.update_yaxes(type="log", title_text="weight decay", col=1)
        fig.update_yaxes(type="log", col=2)
        fig.update_yaxes(title_text="validation accuracy", col=3)
        fig.update_layout(height=460, margin={"t": 60, "b": 125, "l": 60, "r": 20})
        self.figure_widget = fig  # a go.Figure until drawn once (below)
        self.controls = {
            "budget": w.IntSlider(value=lab.budget, min=4, max=49, description="trials/stage"),
            "seed": w.IntText(value=lab.seed, description="seed"),
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
        self.lab.update(budget=self.controls["budget"].value, seed=self.controls["seed"].value)

    def refresh(self) -> None:
        """Put the lab's trials into the figure (one batched message), and refill the summary table."""
        frame, summary = self.lab.frame(), self.lab.summary()
        fig = self.figure_widget
        traces = iter(fig.data)
        with fig.batch_update():
            for strategy in ("grid", "random"):
                trials = frame[frame["strategy"] == strategy]
                for stage in ("coarse", "fine"):
                    part = trials[trials["stage"] == stage]
                    values = {"x": _floats(part["lr"]), "y": _floats(part["weight_decay"])}
                    span = {"cmin": float(frame["val_acc"].min()), "cmax": float(frame["val_acc"].max())}
                    next(traces).update(values, marker_color=_floats(part["val_acc"]), marker=span)
                best = summary.loc[strategy]
                next(traces).update(x=[float(best["best_lr"])], y=[float(best["best_weight_decay"])])
            for strategy in COLORS:
                trials = frame[frame["strategy"] == strategy]
                next(traces).update(x=_floats(trials["lr"]), y=_floats(trials["val_acc"]))
            fig.layout.yaxis3.range = accuracy_range(frame["val_acc"])
            for i, strategy in enumerate(("grid", "random")):
                best = summary.loc[strategy]
                title = f"{strategy}: {int(best['distinct_lr'])} distinct lr<br>best {best['best_val_acc']:.1%}"
                fig.layout.annotations[i].text = title
        self.table.value = summary.to_html(float_format=lambda v: f"{v:.4g}")


# Under the grid and random panels, horizontal: standing at x = 0.64 it covered the third panel's points.
COLOUR_BAR = {
    "title": {"text": "val acc", "side": "top"},
    **{"orientation": "h", "x": 0.31, "xanchor": "center", "y": -0.28, "yanchor": "top", "len": 0.6, "thickness": 12},
}


def accuracy_range(values: Any) -> list[float]:
    """The third panel's y range: the trials' accuracies with a margin (0-1 squeezed 0.85-0.97 into a band)."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(0.05 * (hi - lo), 0.005)
    return [max(lo - pad, 0.0), min(hi + pad, 1.0)]


def _floats(column: Any) -> np.ndarray:
    return column.to_numpy(dtype=np.float64)


VIEW = SearchLabView  # the widgets of this module's lab (see nbdiag.labs._widgets.VIEW_MODULES)


def draw_lab(lab: SearchLab, fig: Any) -> None:
    """The lab drawn with matplotlib on ``fig``."""
    draw(lab, fig)
