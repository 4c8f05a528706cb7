"""Drawing the init lab: one plotly FigureWidget updated in place, and the same panels in matplotlib."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nbdiag.labs._widgets import WidgetView

if TYPE_CHECKING:  # for annotations only: the lab never imports its view (see nbdiag.labs.lab)
    from nbdiag.labs.init import InitLab

SLOT = 0.9  # width of one layer's histogram on the layer axis
FLAT_LABEL = "share of f'(z) ~ 0"  # the lecture's "local gradients vanish": |f'(z)| < FLAT_GRAD, per layer
FLAT_COLOUR = "#7f7f7f"
SHARE_TICKS = [0, 0.25, 0.5, 0.75, 1]
FLAT_HOVER = "layer %{x}: %{y:.0%} of local gradients f'(z) below 0.01<extra></extra>"


def histogram_row(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Bars of every layer's histogram side by side: layer l's bins span [l - SLOT/2, l + SLOT/2].

    Heights are each layer's counts over its tallest bin (shapes compare; ``fraction`` keeps the share).
    """
    edges = df.attrs["edges"]
    offsets = (0.5 * (edges[:-1] + edges[1:]) - edges[0]) / (edges[-1] - edges[0]) * SLOT - SLOT / 2
    counts = np.stack(df["hist"].to_numpy())  # (L, B)
    fraction = counts / counts.sum(axis=1, keepdims=True)
    height = counts / np.maximum(counts.max(axis=1, keepdims=True), 1)
    x = df["layer"].to_numpy()[:, None] + offsets[None, :]
    return {"x": x.ravel(), "y": height.ravel(), "fraction": fraction.ravel(), "width": SLOT / len(offsets)}


def slot_bands(layers: np.ndarray) -> list[dict]:
    """A light band behind every other layer's slot: the slots read as slots, and a spike at a slot's edge (tanh
    saturating at +-1) no longer reads as a divider between layers."""
    return [
        {
            **{"type": "rect", "xref": "x", "yref": "y domain", "y0": 0, "y1": 1, "layer": "below"},
            **{"x0": float(layer) - SLOT / 2, "x1": float(layer) + SLOT / 2},
            **{"fillcolor": "rgba(76, 114, 176, 0.08)", "line": {"width": 0}},
        }
        for layer in layers[::2]
    ]


class InitLabView(WidgetView):
    """Controls above one FigureWidget (histograms in a row; mean/std vs depth; gradient std per layer)."""

    def __init__(self, lab: InitLab) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from nbdiag.views.plotly_widget import FitWidth, live

        self.lab = lab
        params = lab.params
        init = "custom" if params.get("std") is not None else params["init"]
        self.controls = {
            "activation": w.Dropdown(options=lab.activations, value=params["activation"], description="activation"),
            "init": w.Dropdown(options=lab.inits, value=init, description="init"),
            "std": w.FloatLogSlider(value=params.get("std") or 0.05, base=10, min=-3, max=1, description="custom std"),
            "depth": w.IntSlider(value=params["depth"], min=1, max=20, description="depth"),
            "batch_norm": w.Checkbox(value=params["batch_norm"], description="batch norm"),
        }
        self.controls["std"].layout.display = None if init == "custom" else "none"  # shown only for init="custom"
        fig = make_subplots(
            rows=2,
            cols=2,
            specs=[[{"colspan": 2}, None], [{}, {"secondary_y": True}]],
            subplot_titles=(
                "activation histograms per layer",
                "activation mean and std",
                "gradient going back: local f'(z) ~ 0 (bars), backpropagated std (lines)",
            ),
            vertical_spacing=0.18,
        )
        fig.add_trace(go.Bar(name="histogram", marker_color="#4c72b0", showlegend=False), row=1, col=1)
        fig.add_trace(go.Scatter(name="mean", mode="lines+markers"), row=2, col=1)
        fig.add_trace(go.Scatter(name="std", mode="lines+markers"), row=2, col=1)
        fig.add_trace(go.Scatter(name="dLoss/dh std", mode="lines+markers"), row=2, col=2)
        fig.add_trace(go.Scatter(name="dLoss/dW std", mode="lines+markers"), row=2, col=2)
        flat = go.Bar(name=FLAT_LABEL, marker_color=FLAT_COLOUR, opacity=0.35, hovertemplate=FLAT_HOVER)
        fig.add_trace(flat, row=2, col=2, secondary_y=True)
        fig.update_yaxes(type="log", title_text="std", row=2, col=2, secondary_y=False)
        share_axis = {"range": [0, 1], "tickformat": ".0%", "title_text": "share f'(z) ~ 0", "showgrid": False}
        share_ticks = {"tickmode": "array", "tickvals": SHARE_TICKS}  # its own ticks, not the log axis's synced ones
        fig.update_yaxes(**share_axis, **share_ticks, row=2, col=2, secondary_y=True)
        fig.update_xaxes(title_text="layer", row=2)
        fig.update_layout(height=560, margin={"t": 40, "b": 40, "l": 50, "r": 20}, bargap=0)
        self.figure_widget = fig  # a go.Figure until drawn once (below)
        self.status = w.HTML()
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.refresh()
        # wrapped with its values: a FigureWidget edited before its view existed came up empty in JupyterLab
        self.figure_widget = live(self.figure_widget)
        self.figures = (self.figure_widget,)
        controls = list(self.controls.values())
        self.box = w.VBox([w.HBox(controls[:3]), w.HBox([*controls[3:], self.status]), self.figure_widget, FitWidth()])

    def _on_change(self, _change: Any) -> None:
        controls = self.controls
        custom = controls["init"].value == "custom"
        controls["std"].layout.display = None if custom else "none"
        self.lab.update(
            activation=controls["activation"].value,
            init="xavier" if custom else controls["init"].value,
            std=controls["std"].value if custom else None,
            depth=controls["depth"].value,
            batch_norm=controls["batch_norm"].value,
        )

    def refresh(self) -> None:
        """Put ``lab.data`` into the figure (one batched message) and the status line."""
        lab = self.lab
        df = lab.data
        row = histogram_row(df)
        edges = df.attrs["edges"]
        layers = df["layer"].to_numpy()
        fig = self.figure_widget
        with fig.batch_update():
            bars, mean, std, grad, weight_grad, flat = fig.data
            bars.update(x=row["x"], y=row["y"], width=row["width"], customdata=row["fraction"])
            bars.hovertemplate = "x=%{x:.2f}<br>share of layer=%{customdata:.2%}<extra></extra>"
            mean.update(x=layers, y=df["mean"].to_numpy())
            std.update(x=layers, y=df["std"].to_numpy())
            grad.update(x=layers, y=df["grad_std"].to_numpy())
            weight_grad.update(x=layers, y=df["weight_grad_std"].to_numpy())
            flat.update(x=layers, y=df["flat"].to_numpy())
            fig.layout.xaxis.update(tickvals=layers, ticktext=[f"layer {layer}" for layer in layers])
            fig.layout.shapes = slot_bands(layers)
            fig.layout.xaxis.title.text = f"each layer's slot spans [{edges[0]:.3g}, {edges[-1]:.3g}]"
        self.status.value = (
            f"<code>{df.attrs['activation']}, init={df.attrs['init']}: last layer std {df['std'].iloc[-1]:.3g}, "
            f"saturated {df['saturated'].iloc[-1]:.0%}, f'(z) ~ 0 for {df['flat'].iloc[-1]:.0%}, "
            f"dead units {df['dead'].iloc[-1]:.0%} "
            f"&mdash; recomputed in {lab.elapsed_s * 1000:.0f} ms</code>"
        )


def draw(df: pd.DataFrame, fig) -> None:
    """The same panels with matplotlib on ``fig``: a row of histograms, then mean/std and gradient std."""
    edges = df.attrs["edges"]
    top, bottom = fig.subfigures(2, 1)
    for ax, layer, counts in zip(top.subplots(1, len(df), squeeze=False)[0], df["layer"], df["hist"], strict=True):
        ax.stairs(counts / max(counts.sum(), 1), edges, fill=True)
        ax.set_title(f"layer {layer}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    stats_ax, grad_ax = bottom.subplots(1, 2)
    stats_ax.plot(df["layer"], df["mean"], "o-", label="mean")
    stats_ax.plot(df["layer"], df["std"], "o-", label="std")
    stats_ax.set_xlabel("layer")
    stats_ax.legend()
    flat_ax = grad_ax.twinx()
    flat_ax.bar(df["layer"], df["flat"], color=FLAT_COLOUR, alpha=0.35, label=FLAT_LABEL)
    flat_ax.set_ylim(0, 1)
    flat_ax.set_ylabel("share f'(z) ~ 0")
    grad_ax.semilogy(df["layer"], df["grad_std"], "o-", label="dLoss/dh std")
    grad_ax.semilogy(df["layer"], df["weight_grad_std"], "o-", label="dLoss/dW std")
    grad_ax.set_zorder(flat_ax.get_zorder() + 1)  # the lines over the bars
    grad_ax.patch.set_visible(False)
    grad_ax.set_xlabel("layer")
    grad_ax.set_title("gradient going back: local f'(z) ~ 0 (bars), backpropagated std (lines)", fontsize=9)
    handles = grad_ax.get_legend_handles_labels()
    bars = flat_ax.get_legend_handles_labels()
    grad_ax.legend(handles[0] + bars[0], handles[1] + bars[1], fontsize=8)
    fig.suptitle(f"{df.attrs['activation']}, init={df.attrs['init']}, batch_norm={df.attrs['batch_norm']}")


VIEW = InitLabView  # the widgets of this module's lab (see nbdiag.labs._widgets.VIEW_MODULES)


def draw_lab(lab, fig) -> None:
    """The lab drawn with matplotlib on ``fig``."""
    draw(lab.frame(), fig)
