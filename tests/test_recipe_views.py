"""First-layer filters (recorded with the step's copy, judged, drawn) and the train/validation gap panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.filters import MAX_FILTERS
from nbdiag.health import evaluate
from nbdiag.meta import FilterMeta
from nbdiag.views.data import snapshot
from nbdiag.views.filter_panels import filter_grid, filters_panel
from nbdiag.views.generalization_panels import gap_panel
from nbdiag.views.grid import build_panels
from nbdiag.views.panels import ViewState


def _cnn(out_channels: int = 6, in_channels: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3), nn.ReLU(), nn.Flatten(), nn.Linear(out_channels * 36, 4)
    )


def _train(model: nn.Module, steps: int, params=None, val_every: int = 0, lr: float = 0.05):
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters() if params is None else params, lr=lr)
    x, y = torch.randn(16, model[0].in_channels, 8, 8), torch.randint(0, 4, (16,))
    with nbdiag.watch(model, opt, every=5, dense=2, display=False) as mon:
        for step in range(steps):
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss, acc=float((out.argmax(1) == y).float().mean()))
            if val_every and step % val_every == val_every - 1:
                mon.validate(val_loss=float(loss.detach()) + 0.1 * step / steps, val_acc=0.5)
    return mon


def test_filters_block_holds_the_first_convs_weights_at_each_sampled_step():
    model = _cnn()
    mon = _train(model, 11)
    entry = mon.record.entries()[-1]
    block = entry.blocks["filters"]
    assert block.layers == tuple(f"0[{i}]" for i in range(6))
    np.testing.assert_array_equal(block.values, model[0].weight.detach().reshape(6, -1).double().numpy())
    assert mon.record.meta.filters == FilterMeta(layer="0", shape=(3, 3, 3), trainable=True)
    first = mon.record.entries()[0].blocks["filters"].values
    assert not np.array_equal(first, block.values)  # the weights moved between sampled steps


def test_filters_are_bounded_to_max_filters():
    mon = _train(_cnn(out_channels=40), 2)
    assert len(mon.record.entries()[-1].blocks["filters"].layers) == MAX_FILTERS


def test_filter_grid_tiles_each_filter_with_nan_gaps():
    images = np.arange(5 * 2 * 3 * 3, dtype=float).reshape(5, 2, 3, 3)
    grid = filter_grid(images)
    assert grid.shape == (2 * 4 - 1, 3 * 4 - 1)  # 3 columns, 2 rows of 3x3 tiles
    np.testing.assert_array_equal(grid[4:7, 4:7], images[4].mean(axis=0))
    assert np.isnan(grid[3]).all() and np.isnan(grid[:, 3]).all()


def test_filters_that_never_change_or_are_all_alike_are_found():
    model = _cnn()
    frozen = _train(model, 60, params=list(model[3].parameters()))  # the conv is left out of the optimizer
    assert [f.evidence["relative_change"] for f in evaluate(frozen) if f.id == "model.first_layer_filters"] == [0.0]
    alike = _cnn()
    nn.init.constant_(alike[0].weight, 0.2)
    found = [f for f in evaluate(_train(alike, 60)) if f.id == "model.first_layer_filters"]
    assert found and found[0].evidence["mean_abs_cosine_first"] > 0.999  # read after the first update
    assert not [f for f in evaluate(_train(_cnn(), 60)) if f.id == "model.first_layer_filters"]


def test_frozen_first_conv_of_a_fine_tune_is_not_judged_unchanged():
    model = _cnn()
    model[0].requires_grad_(False)
    mon = _train(model, 60, params=list(model[3].parameters()))
    assert not [f for f in evaluate(mon) if f.id == "model.first_layer_filters"]


def test_filters_panel_draws_the_step_under_the_slider():
    model = _cnn()
    mon = _train(model, 11)
    snap = snapshot(mon)
    first = filters_panel(snap, ViewState(index=0))
    latest = filters_panel(snap, ViewState())
    assert "@ step 0" in first.title and f"@ step {snap.entries[-1].step}" in latest.title
    tile = np.asarray(latest.series[0].z)[:3, :3]
    np.testing.assert_allclose(tile, model[0].weight.detach()[0].mean(0).numpy(), rtol=1e-6)
    assert filters_panel(snapshot(_train_mlp()), ViewState()).note  # no conv: a note, no series


def _train_mlp():
    model = nn.Sequential(nn.Linear(4, 3))
    with nbdiag.watch(model, display=False) as mon:
        model(torch.randn(2, 4)).sum().backward()
        mon.step(loss=1.0)
    return mon


def test_gap_panel_is_validation_minus_the_training_loss_since_the_last_validation():
    mon = _train(_cnn(), 40, val_every=10)
    panel = gap_panel(snapshot(mon), ViewState())
    train, val, gap = (panel.series[i] for i in range(3))
    losses = mon.scalars()["loss"]
    assert list(val.x) == [9, 19, 29, 39]
    assert train.y[1] == pytest.approx(np.median(losses.loc[10:19]))
    np.testing.assert_allclose(gap.y, np.asarray(val.y) - np.asarray(train.y))
    assert gap_panel(snapshot(_train(_cnn(), 3)), ViewState()).note  # nothing validated yet


def test_dashboard_lays_out_the_gap_and_filters_panels_when_they_have_data():
    keys = [panel.key for panel in build_panels(snapshot(_train(_cnn(), 12, val_every=5)), ViewState())]
    assert keys[-4:-1] == ["gap", "filters", "inputs"]
    assert not {"gap", "filters"} & {panel.key for panel in build_panels(snapshot(_train_mlp()), ViewState())}


def test_inputs_panel_draws_images_as_tiles_and_prints_the_range():
    mon = _train(_cnn(), 3)
    panel = next(p for p in build_panels(snapshot(mon), ViewState()) if p.key == "inputs")
    assert "images" in panel.title and "range [" in panel.title
    assert np.asarray(panel.series[0].z).shape == (3 * 9 - 1, 3 * 9 - 1)  # 8 samples of 8x8 in a 3 x 3 grid


def test_the_dashboard_widget_is_laid_out_anew_when_the_gap_panel_appears():
    pytest.importorskip("ipywidgets")
    from nbdiag.views.dashboard import Dashboard

    model = _cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        dashboard = Dashboard(mon)
        for _ in range(3):
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=1.0)
        dashboard.refresh()
        assert "gap" not in dashboard._controls().figure.keys
        mon.validate(val_loss=1.2)
        dashboard.refresh()
        figure = dashboard._controls().figure
        assert "gap" in figure.keys and figure.figure in dashboard.widget.children
    dashboard.close()
