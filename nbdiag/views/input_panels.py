"""What the model sees (Karpathy's recipe, 2: visualize just before the net): the sampled input tensor, drawn as
images (a tile per sample), or as a sample x feature map for token ids and tabular inputs, with its value range."""

from __future__ import annotations

import numpy as np

from nbdiag.inputs import latest_sample
from nbdiag.views.data import Snapshot
from nbdiag.views.filter_panels import filter_grid
from nbdiag.views.panels import Panel, Series, ViewState


def inputs_panel(snap: Snapshot, state: ViewState) -> Panel:
    """The latest sampled inputs; images as tiles (channels averaged), anything else as a sample x feature map."""
    sample = latest_sample(snap.record) if snap.record is not None else None
    if sample is None:
        return Panel("inputs", "what the model sees", note="no input sampled yet")
    values = sample.values
    if sample.kind.startswith("images"):
        images = values if sample.kind == "images" else np.moveaxis(values, -1, 1)
        z, colorscale = filter_grid(images), "Greys"
    else:
        z, colorscale = values.reshape(len(values), -1), "Viridis"
    low, high = sample.value_range
    series = Series(
        "input",
        "heatmap",
        x=np.arange(z.shape[1], dtype=np.float64),
        y=np.arange(z.shape[0], dtype=np.float64),
        z=z,
        zrange=(low, high),
        colorscale=colorscale,
    )
    title = f"inputs @ step {sample.step}: {sample.kind}, range [{low:.3g}, {high:.3g}]"
    ylabel = "" if sample.kind.startswith("images") else "sample"
    return Panel("inputs", title, (series,), ylabel=ylabel, reversed_y=True)
