"""Where each panel sits: rows read as "over time", "across depth now", "one layer and stuck units", "predictions"."""

from __future__ import annotations

from nbdiag.views import panels, prediction_panels
from nbdiag.views.data import Snapshot
from nbdiag.views.panels import Panel, PanelBuilder, ViewState

GRID: tuple[tuple[PanelBuilder, ...], ...] = (
    (panels.loss_panel, panels.gradient_time_panel, panels.update_time_panel),
    (panels.activation_histograms_panel, panels.activation_depth_panel, panels.gradient_depth_panel),
    (panels.activation_time_panel, panels.units_depth_panel, panels.units_time_panel),
    (prediction_panels.heatmap_panel, prediction_panels.step_panel, panels.scalars_panel),
)
ROWS, COLS = len(GRID), len(GRID[0])


def build_panels(snap: Snapshot, state: ViewState) -> list[Panel]:
    """Every panel in grid order (row by row).

    Args:
        snap: the record read once.
        state: the controls' choices.

    Returns:
        ``ROWS * COLS`` panels; panel ``i`` sits at row ``i // COLS``, column ``i % COLS``.
    """
    return [build(snap, state) for row in GRID for build in row]
