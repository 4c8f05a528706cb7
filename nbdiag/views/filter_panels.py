"""The first conv's filters as an image grid at the selected step (Karpathy's recipe, 4: trained first-layer
filters look like smooth edge and colour detectors; noise means undertrained or a too-high learning rate)."""

from __future__ import annotations

import math

import numpy as np

from nbdiag.filters import GROUP, filter_images
from nbdiag.views.data import Snapshot
from nbdiag.views.panels import Panel, Series, ViewState, selected_step

NO_CONV = "the model has no Conv2d: first-layer filters are drawn for convolutional models"


def filter_grid(images: np.ndarray) -> np.ndarray:
    """(filters, C, kh, kw) -> one 2-D image: each filter (mean over channels) as a tile, NaN gaps between tiles."""
    tiles = images.mean(axis=1)  # (F, kh, kw)
    count, kh, kw = tiles.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    grid = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for i, tile in enumerate(tiles):
        top, left = (i // cols) * (kh + 1), (i % cols) * (kw + 1)
        grid[top : top + kh, left : left + kw] = tile
    return grid


def filters_panel(snap: Snapshot, state: ViewState) -> Panel:
    """The filters at the sampled step under the slider (latest by default), on a symmetric colour scale."""
    meta = snap.record.meta.filters if snap.record is not None else None
    entries = [entry for entry in snap.entries if GROUP in entry.blocks]
    if not meta or not entries:
        return Panel("filters", "first-layer filters", note=NO_CONV if not meta else "")
    step = selected_step(snap, state)
    entry = next((e for e in reversed(entries) if step is None or e.step <= step), entries[0])
    images = filter_images(entry.blocks[GROUP], meta.shape)
    grid = filter_grid(images)
    bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    channels = f", mean of {meta.shape[0]} channels" if meta.shape[0] > 1 else ""
    series = Series(
        "weight",
        "heatmap",
        x=np.arange(grid.shape[1], dtype=np.float64),
        y=np.arange(grid.shape[0], dtype=np.float64),
        z=grid,
        zrange=(-bound, bound),
        colorscale="RdBu",
    )
    title = f"{meta.layer}: {len(images)} filters @ step {entry.step}{channels}"
    return Panel("filters", title, (series,), reversed_y=True)
