"""Where each panel sits: rows read as "over time", "across depth now", "one layer and stuck units", "predictions",
then the train/validation gap, first-layer filters and inputs where recorded."""

from __future__ import annotations

import numpy as np

from nbdiag.views import (
    data,
    depth_panels,
    filter_panels,
    generalization_panels,
    input_panels,
    panels,
    prediction_panels,
)
from nbdiag.views.data import Snapshot
from nbdiag.views.panels import Panel, PanelBuilder, ViewState

GRID: tuple[tuple[PanelBuilder, ...], ...] = (
    (panels.loss_panel, panels.gradient_time_panel, panels.update_time_panel),
    (panels.activation_histograms_panel, panels.activation_depth_panel, panels.gradient_depth_panel),
    (panels.activation_time_panel, panels.units_depth_panel, panels.units_time_panel),
)
DEEP_GRID: tuple[tuple[PanelBuilder, ...], ...] = (  # a model of depth_panels.MIN_BLOCKS repeated blocks or more
    (panels.loss_panel, depth_panels.gradient_roles_time_panel, depth_panels.update_roles_time_panel),
    (depth_panels.histograms_panel, depth_panels.activation_roles_panel, depth_panels.gradient_roles_panel),
    (panels.activation_time_panel, depth_panels.activation_heatmap_panel, depth_panels.update_heatmap_panel),
    (depth_panels.units_roles_panel, panels.units_time_panel),
)
PREDICTIONS_ROW = (prediction_panels.heatmap_panel, prediction_panels.step_panel, panels.scalars_panel)
COLS = len(GRID[0])


def grid(snap: Snapshot) -> tuple[tuple[PanelBuilder, ...], ...]:
    """The rows laid out for ``snap``: the predictions row only with a fixed batch to predict on; without one,
    the other scalars take a row of their own (a single panel, no empty ones beside it), and only when a scalar
    other than a loss was logged (no panel that only says what to log). A model whose activation
    layers include none that can die or saturate (a GPT's GELUs) gets no "dead or saturated units over time"
    panel: it could never draw anything. A model of :data:`nbdiag.views.depth_panels.MIN_BLOCKS` repeated blocks or
    more is drawn by block x role (:data:`DEEP_GRID`)."""
    last = PREDICTIONS_ROW if snap.predictions is not None else (panels.scalars_panel,)
    if not has_other_scalars(snap):  # a panel that would only hint "log accuracy..." is not laid out
        last = tuple(build for build in last if build is not panels.scalars_panel)
    recipe = recipe_row(snap)
    rows = DEEP_GRID if depth_panels.blocks_of(snap) is not None else GRID
    if snap.layers and not panels.units_layers(snap):  # no unit can die or saturate: no "stuck units" panels
        unitless = (panels.units_time_panel, depth_panels.units_roles_panel)
        rows = tuple(kept for kept in (tuple(b for b in row if b not in unitless) for row in rows) if kept)
    return tuple(row for row in (*rows, recipe, last) if row)


def has_other_scalars(snap: Snapshot) -> bool:
    """Whether a scalar other than a loss (accuracy, learning rate) has a finite value to draw."""
    scalars = snap.scalars
    others = [name for name in scalars.columns if not data.is_loss_name(name)]
    return bool(others) and bool(np.isfinite(scalars[others].to_numpy(np.float64)).any())


def recipe_row(snap: Snapshot) -> tuple[PanelBuilder, ...]:
    """The train/validation gap, first-layer filters and sampled inputs panels, those that have data (panels flow
    in ``COLS`` columns, so a shorter row is filled by the next)."""
    meta = snap.record.meta if snap.record is not None else None
    has = (
        (generalization_panels.gap_panel, "val_loss" in snap.scalars.columns),
        (filter_panels.filters_panel, meta is not None and meta.filters is not None),
        (input_panels.inputs_panel, meta is not None and meta.inputs is not None),
    )
    return tuple(build for build, shown in has if shown)


def position(i: int) -> tuple[int, int]:
    """(row, column), 0-based, of panel ``i`` in grid order."""
    return i // COLS, i % COLS


def build_panels(snap: Snapshot, state: ViewState) -> list[Panel]:
    """Every panel in grid order (row by row).

    Args:
        snap: the record read once.
        state: the controls' choices.

    Returns:
        The panels of :func:`grid`, row by row; panel ``i`` sits at :func:`position` ``(i)``.
    """
    return [build(snap, state) for row in grid(snap) for build in row]
