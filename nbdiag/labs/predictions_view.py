"""Drawing a PredictionTracker: sample x step heatmap and a per-step panel (images or predictions vs targets)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from nbdiag.labs._widgets import WidgetView

if TYPE_CHECKING:  # for annotations only: the tracker never imports its view (see nbdiag.labs.lab)
    from nbdiag.labs.predictions import PredictionTracker


def mosaic(images: np.ndarray) -> tuple[np.ndarray, int]:
    """Tile (N, H, W) images into one (rows*H, cols*W) array, NaN between; returns it and the column count."""
    n, height, width = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiled = np.full((rows * (height + 1), cols * (width + 1)), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        tiled[r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
    return tiled, cols


class PredictionsView(WidgetView):
    """A step slider above one FigureWidget: the heatmap, and the selected step's images or predictions."""

    def __init__(self, tracker: PredictionTracker) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from nbdiag.views.plotly_widget import FitWidth, live

        self.tracker = tracker
        classification = tracker.task == "classification"
        title = "p(true class)" if classification else "prediction - target"
        right = "predicted / true at the selected step" if classification else "prediction vs target"
        fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{title}: sample x step", right))
        scale = {"colorscale": "Viridis", "zmin": 0, "zmax": 1} if classification else {"colorscale": "RdBu", "zmid": 0}
        fig.add_trace(go.Heatmap(**scale, colorbar={"x": 0.45}), row=1, col=1)
        fig.add_trace(go.Scatter(mode="lines", line_color="red", showlegend=False, name="selected"), row=1, col=1)
        if classification and tracker.images is not None:
            fig.add_trace(go.Heatmap(colorscale="gray", showscale=False, z=mosaic(tracker.images)[0]), row=1, col=2)
            fig.update_yaxes(autorange="reversed", row=1, col=2)
        elif classification:
            fig.add_trace(go.Bar(name="p(true)"), row=1, col=2)
        else:
            fig.add_trace(go.Scatter(mode="markers", name="prediction"), row=1, col=2)
        fig.update_yaxes(autorange="reversed", title_text="sample", row=1, col=1)
        fig.update_xaxes(title_text="step", row=1, col=1)
        fig.update_layout(height=460, margin={"t": 40, "b": 40, "l": 50, "r": 20})
        self.figure_widget = fig  # a go.Figure until drawn once (below)
        # the description names the selected step (the value is its index among the recorded steps: no readout)
        self.slider = w.IntSlider(value=0, min=0, max=0, description="step", readout=False)
        self.slider.observe(lambda _change: self._show_step(), names="value")
        self.refresh()
        # wrapped with its values: a FigureWidget edited before its view existed came up empty in JupyterLab
        self.figure_widget = live(self.figure_widget)
        self.figures = (self.figure_widget,)
        self.box = w.VBox([self.slider, self.figure_widget, FitWidth()])

    def refresh(self) -> None:
        """Load every recorded step into the heatmap and move the slider to the latest."""
        fig, steps = self.figure_widget, self.tracker.steps
        with fig.batch_update():
            fig.data[0].update(z=self.tracker.heatmap_values(), x=steps)
        self.slider.max = max(len(steps) - 1, 0)
        if self.slider.value == self.slider.max:
            self._show_step()
        else:
            self.slider.value = self.slider.max

    def _show_step(self) -> None:
        tracker, fig, steps = self.tracker, self.figure_widget, self.tracker.steps
        if not steps:
            return
        index = min(self.slider.value, len(steps) - 1)
        self.slider.description = f"step {steps[index]}"
        n = len(tracker.targets)
        with fig.batch_update():
            fig.data[1].update(x=[steps[index], steps[index]], y=[-0.5, n - 0.5])
            panel = fig.data[2]
            if tracker.task == "regression":
                panel.update(x=tracker.targets.reshape(n, -1)[:, 0], y=tracker.outputs()[index, :, 0])
            elif tracker.images is None:
                panel.update(x=np.arange(n), y=tracker.p_true()[index])
            else:
                fig.layout.annotations = fig.layout.annotations[:2] + tuple(_labels(tracker, index))


def _labels(tracker: PredictionTracker, index: int) -> list[dict]:
    """One annotation per image: "pred/true", red when wrong."""
    _, height, width = tracker.images.shape
    cols = mosaic(tracker.images)[1]
    predicted = tracker.predicted()[index]
    labels = []
    for i, (pred, target) in enumerate(zip(predicted, tracker.targets, strict=True)):
        r, c = divmod(i, cols)
        labels.append(
            {
                "x": c * (width + 1) + width / 2,
                "y": r * (height + 1),
                "xref": "x2",
                "yref": "y2",
                "text": f"{pred}/{target}",
                "showarrow": False,
                "font": {"size": 9, "color": "lime" if pred == target else "red"},
            }
        )
    return labels


def draw(tracker: PredictionTracker, fig) -> None:
    """The heatmap and the last step's panel with matplotlib on ``fig``."""
    heat_ax, step_ax = fig.subplots(1, 2)
    steps = tracker.steps
    values = tracker.heatmap_values()
    if tracker.task == "classification":
        image = heat_ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    else:
        image = heat_ax.imshow(values, aspect="auto", cmap="RdBu")
    fig.colorbar(image, ax=heat_ax)
    if steps:
        ticks = np.linspace(0, len(steps) - 1, min(len(steps), 6)).astype(int)
        heat_ax.set_xticks(ticks, [steps[t] for t in ticks])
    heat_ax.set_xlabel("step")
    heat_ax.set_ylabel("sample")
    heat_ax.set_title("p(true class)" if tracker.task == "classification" else "prediction - target")
    if not steps:
        return
    n = len(tracker.targets)
    if tracker.task == "regression":
        targets = tracker.targets.reshape(n, -1)[:, 0]
        step_ax.scatter(targets, tracker.outputs()[-1, :, 0], s=8)
        step_ax.axline((targets.min(), targets.min()), slope=1, color="gray", lw=0.5)
        step_ax.set_xlabel("target")
        step_ax.set_ylabel("prediction")
    elif tracker.images is not None:
        step_ax.imshow(mosaic(tracker.images)[0], cmap="gray")
        for label in _labels(tracker, len(steps) - 1):
            step_ax.text(label["x"], label["y"], label["text"], color=label["font"]["color"], fontsize=6, ha="center")
        step_ax.axis("off")
    else:
        step_ax.bar(np.arange(n), tracker.p_true()[-1])
        step_ax.set_xlabel("sample")
        step_ax.set_ylabel("p(true class)")
    step_ax.set_title(f"step {steps[-1]}")


VIEW = PredictionsView  # the widgets of this module's lab (see nbdiag.labs._widgets.VIEW_MODULES)


def draw_lab(lab, fig) -> None:
    """The lab drawn with matplotlib on ``fig``."""
    draw(lab, fig)
