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


FIGURE_WIDTH_PX = 1400  # the browser tests' viewport


def annotation_boxes(figure) -> list[tuple[str, float, float, float, float]]:
    """(text, x0, x1, y0, y1) in pixels of every non-empty annotation, from its anchor, font size and text length."""
    layout = figure.layout
    height = layout.height
    boxes = []
    for a in layout.annotations:
        if not a.text:
            continue
        x, y = a.x, a.y
        if a.xref.endswith(" domain"):  # a note centred in its subplot
            x_domain = layout[a.xref.split()[0].replace("x", "xaxis")].domain
            y_domain = layout[a.yref.split()[0].replace("y", "yaxis")].domain
            x = x_domain[0] + x * (x_domain[1] - x_domain[0])
            y = y_domain[0] + y * (y_domain[1] - y_domain[0])
        size = (a.font.size or layout.font.size or 12) if a.font else 12
        width, tall = 0.6 * size * len(a.text), 1.3 * size
        centre_x, centre_y = x * FIGURE_WIDTH_PX, y * height + (a.yshift or 0)
        boxes.append((a.text, centre_x - width / 2, centre_x + width / 2, centre_y - tall / 2, centre_y + tall / 2))
    return boxes


@pytest.mark.parametrize("fixed_batch", [False, True])
def test_no_annotation_boxes_overlap_and_time_axes_end_at_the_data(fixed_batch):
    pytest.importorskip("plotly")
    from nbdiag.views.figure import PanelFigure
    from nbdiag.views.grid import build_panels

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    batch = (torch.randn(16, 8), torch.randint(0, 3, (16,)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=10, display=False, fixed_batch=batch if fixed_batch else None) as mon:
        for _ in range(130):
            loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    built = build_panels(data.snapshot(mon), STATE)
    keys = [panel.key for panel in built]
    assert ("pred_heatmap" in keys) is fixed_batch  # no empty predictions panels without a fixed batch
    figure = PanelFigure(built, widget=False).figure
    # plotly.js draws no axes for a subplot without traces: a note placed in "x10 domain" would land on the loss panel
    assert not any(a.xref.endswith("domain") or a.yref.endswith("domain") for a in figure.layout.annotations)
    boxes = annotation_boxes(figure)
    for i, (text, x0, x1, y0, y1) in enumerate(boxes):
        for other, u0, u1, v0, v1 in boxes[i + 1 :]:
            assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0, f"{text!r} overlaps {other!r}"
    assert tuple(figure.layout.xaxis.range) == (0, 129)  # the loss: first and last logged step, never negative
    for key in ("grad_time", "update_time"):
        i = keys.index(key)
        assert tuple(figure.layout[f"xaxis{i + 1}"].range) == (0, 120)  # the first and last sampled step


def test_grey_lines_have_a_legend_and_a_relu_highlights_the_weights_that_feed_it():
    snap = data.snapshot(dead_relu_monitor())
    update = panels.update_time_panel(snap, ViewState(layer="1"))  # the ReLU has no weights of its own
    selected = series(update, "selected")
    assert selected.label == "0.weight · Linear (feeds 1 · ReLU)" and np.isfinite(selected.y).any()
    assert series(update, "all layers").legend and selected.legend
    own = series(panels.update_time_panel(snap, ViewState(layer="2")), "selected")
    assert own.label == "2.weight · Linear"


def histogram_monitor(spread: bool) -> nbdiag.Monitor:
    """A Linear layer whose outputs are one Gaussian (std ~1), or, ``spread``, units on scales over 5 decades."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].weight.mul_(torch.logspace(-4, 1, 32)[:, None] if spread else 1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        for _ in range(3):
            model(torch.randn(64, 64)).sum().backward()
            opt.zero_grad()
            mon.step(loss=torch.tensor(1.0))
    return mon


def test_histograms_are_linear_for_a_gaussian_layer_and_symlog_when_values_span_decades():
    """Issue 20: a Linear output with std ~1 is drawn on a linear value axis (the lecture's picture), every count
    kept; values spread over many decades keep the symlog axis, labelled so; the over-time heatmap follows."""
    snap = data.snapshot(histogram_monitor(spread=False))
    panel = panels.activation_histograms_panel(snap, STATE)
    assert panel.xlabel == "value" and panel.xticks is None
    outputs = snap.record.frame("activation", layers=["0"], stats=["min", "max"]).pivot_table(
        index="step", columns="stat", values="value"
    )
    xs = series(panel, "selected").x
    finite = xs[np.isfinite(xs)]
    assert finite.min() >= outputs["min"].min() - 1 and finite.max() <= outputs["max"].max() + 1  # value units
    over_time = panels.activation_time_panel(snap, ViewState(layer="0"))
    assert over_time.ylabel == "value" and over_time.yticks is None
    assert over_time.series[0].y.min() >= outputs["min"].min() - 1
    wide = data.snapshot(histogram_monitor(spread=True))
    symlog = panels.activation_time_panel(wide, ViewState(layer="0"))
    assert "symlog" in symlog.ylabel and symlog.yticks is not None


def test_a_loss_spike_turns_the_loss_axis_to_log_and_keeps_the_chance_line():
    """Notebook 02's lr=50: a 1.6e6 spike over losses near 2 would flatten a linear axis (issue 20)."""
    model = nn.Linear(4, 10)
    with nbdiag.watch(model, torch.optim.SGD(model.parameters(), lr=0.0), num_classes=10, display=False) as mon:
        for loss in [2.3, 163.6, 214597.9, 1592668.9, 695835.1, 29.2] + [2.3] * 20:
            model(torch.randn(2, 4))
            mon.step(loss=torch.tensor(loss))
    snap = data.snapshot(mon)
    panel = panels.loss_panel(snap, STATE)
    assert panel.ylog
    # the chance level is a dashed line named in the legend, across the panel: a label written at the line's start
    # sat on the loss curve, which starts at chance (issue 20)
    chance = series(panel, "chance")
    assert chance.dash and chance.legend and chance.label == "chance -ln(1/10) = 2.3"
    np.testing.assert_allclose(chance.y, [np.log(10)] * 2)
    assert tuple(chance.x) == panel.xrange == (0, 25) and panel.hlines == ()
    calm = data.snapshot(dead_relu_monitor())
    assert not panels.loss_panel(calm, STATE).ylog  # a loss within two decades keeps its linear axis
    assert panels.spans_decades([1.0, 50.0, 2.0]) is False and panels.spans_decades([1.0, 1e3, 2.0]) is True


def test_the_units_over_time_panel_is_a_note_when_no_unit_is_stuck_and_red_when_one_is(tmp_path):
    healthy = data.snapshot(histogram_monitor(spread=False))
    assert panels.units_time_panel(healthy, STATE).note == "no dead or saturated units so far"
    assert panels.units_time_panel(healthy, STATE).series == ()
    mon = dead_relu_monitor()
    dead = panels.units_time_panel(data.snapshot(mon), STATE)
    np.testing.assert_array_equal(dead.series[0].z, 1.0)  # one ReLU layer, dead at every step
    from PIL import Image

    from nbdiag.views.export import savefig

    pixels = np.asarray(Image.open(savefig(mon, tmp_path / "dead.png")).convert("RGB"), dtype=int)
    dark_red = (pixels[..., 0] > 80) & (pixels[..., 0] < 140) & (pixels[..., 1] < 30) & (pixels[..., 2] < 40)
    assert dark_red.sum() > 10_000  # the static heatmap of a single layer is drawn (it was blank)
