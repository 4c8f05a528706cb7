"""Panels tell the truth: zeros and NaN/Inf stay visible on log axes, hints never overlap, axes end at the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.views import data, panels
from nbdiag.views.panels import ViewState

STATE = ViewState()


def dead_relu_monitor(steps: int = 8, nan_at: int | None = None) -> nbdiag.Monitor:
    """Notebook 02's dead ReLU: bias -10 kills every hidden unit, so the first Linear's gradients are exactly 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        for step in range(steps):
            x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
            if step == nan_at:
                x[0, 0] = float("nan")
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    return mon


def series(panel: panels.Panel, name: str) -> panels.Series:
    (found,) = [s for s in panel.series if s.name == name]
    return found


def test_zero_gradients_and_updates_sit_on_a_floor_labelled_0_on_log_axes():
    snap = data.snapshot(dead_relu_monitor())
    zero = snap.record.frame("gradient", layers=["0"], stats=["norm"]).value
    assert (zero == 0).all()  # what the panels must not drop
    depth = panels.gradient_depth_panel(snap, STATE)
    ((floor, label),) = depth.hlines
    assert label == "0" and 0 < floor < np.nanmin(depth.series[0].y[1:])
    assert depth.series[0].y[0] == floor  # the first Linear's point is drawn, on the floor
    time = panels.gradient_time_panel(snap, ViewState(layer="0"))
    selected = series(time, "selected").y
    assert np.count_nonzero(selected == time.hlines[0][0]) == len(snap.steps)  # every step, none dropped
    update = panels.update_time_panel(snap, ViewState(layer="0"))
    assert update.hlines[-1][1] == "0" and update.hlines[0] == (panels.UPDATE_RATIO, "1e-3")
    assert np.isfinite(series(update, "selected").y).sum() == len(snap.steps)  # the dead layer's update ratio: 0


def test_linear_axes_keep_zeros_as_zeros():
    snap = data.snapshot(dead_relu_monitor())
    depth = panels.gradient_depth_panel(snap, ViewState(norm_log=False))
    assert depth.hlines == () and depth.series[0].y[0] == 0.0


def test_nan_and_inf_are_marked_not_dropped():
    snap = data.snapshot(dead_relu_monitor(nan_at=5))
    for panel in (panels.gradient_time_panel(snap, STATE), panels.loss_panel(snap, STATE)):
        marker = series(panel, "NaN/Inf")
        assert marker.kind == "points" and 5 in list(marker.x) and np.isfinite(marker.y).all()
    depth = panels.gradient_depth_panel(snap, ViewState(index=5))
    assert series(depth, "NaN/Inf").x  # layers whose gradient norm was NaN at step 5
    clean = data.snapshot(dead_relu_monitor())
    assert all(s.name != "NaN/Inf" for s in panels.loss_panel(clean, STATE).series)


@pytest.mark.parametrize("log", [True, False])
def test_plotly_traces_carry_the_floor_and_the_markers(log):
    pytest.importorskip("plotly")
    from nbdiag.views.figure import PanelFigure
    from nbdiag.views.grid import build_panels

    snap = data.snapshot(dead_relu_monitor(nan_at=5))
    figure = PanelFigure(build_panels(snap, ViewState(norm_log=log)), widget=False)
    trace = figure.figure.data[figure.slots[("grad_time", "NaN/Inf")]]
    assert trace.mode == "markers" and 5 in trace.x and all(y is not None for y in trace.y)
    clean = PanelFigure(build_panels(data.snapshot(dead_relu_monitor()), ViewState(norm_log=log)), widget=False)
    depth = clean.figure.data[clean.slots[("grad_depth", "gradient norm")]]
    assert depth.y[0] is not None  # the first Linear's zero (log: on the floor) is drawn
