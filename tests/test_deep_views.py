"""A deep model on the dashboard: no empty panel is laid out (issue 21: the 48-block GPT's "dead or saturated units
over time" panel was bare axes, 187.5-210)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nbdiag
from nbdiag.views import data, depth_panels, grid, static
from nbdiag.views.panels import Panel, ViewState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from overhead_models import GPT  # noqa: E402


def gpt_monitor(blocks: int, steps: int = 3) -> nbdiag.Monitor:
    """The issue's GPT layout (d = 64), ``blocks`` blocks, trained ``steps`` sampled steps on random tokens."""
    torch.manual_seed(0)
    model = GPT(vocab=64, context=16, d=64, heads=4, layers=blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        for _ in range(steps):
            idx = torch.randint(0, 64, (2, 16))
            loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    return mon


@pytest.fixture(scope="module")
def gpt() -> nbdiag.Monitor:
    return gpt_monitor(blocks=6)


def drawable(panel: Panel) -> bool:
    """Whether a panel with series has something to draw: a finite value in one of them."""
    values = [s.z if s.kind == "heatmap" else s.y for s in panel.series]
    return any(np.isfinite(np.asarray(v, dtype=np.float64)).any() for v in values if v is not None and len(v))


def test_no_panel_is_laid_out_empty_on_a_gpt(gpt):
    snap = data.snapshot(gpt)
    built = grid.build_panels(snap, ViewState())
    assert "units_time" not in [p.key for p in built]  # GELU units neither die nor saturate: nothing to draw, ever
    for panel in built:
        assert drawable(panel), panel.key  # no panel that is only a hint ("log accuracy ...")
    fig = static.figure(built, [], "gpt")
    for ax, panel in zip(fig.axes[1:], built, strict=True):  # axes 0 is the findings banner
        drawn = ax.lines or ax.collections or ax.patches or ax.images
        assert drawn, panel.key


def watched_panels(model: torch.nn.Module, inputs: torch.Tensor, steps: int = 2) -> tuple[nbdiag.Monitor, dict]:
    """``model`` watched at every step over ``steps`` backward passes on ``inputs``; its panels by key."""
    with nbdiag.watch(model, every=1, display=False) as mon:
        for _ in range(steps):
            model(inputs).sum().backward()
            mon.step()
    return mon, {p.key: p for p in grid.build_panels(data.snapshot(mon), ViewState())}


def test_the_units_time_panel_stays_for_a_model_with_relus_and_has_rows():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)  # every ReLU unit dead: the panel has something to draw
    _, built = watched_panels(model, torch.randn(8, 4))
    (heatmap,) = built["units_time"].series
    assert np.asarray(heatmap.z).shape == (1, 2) and np.nanmax(heatmap.z) == 1.0  # one ReLU, two steps, all dead


GPT_ROLES = ("ln1", "attn.qkv", "attn.proj", "ln2", "mlp.0", "mlp.1", "mlp.2")
GPT_LABELS = ["ln1", "attn.qkv", "attn.proj", "ln2", "mlp.0 · Linear", "mlp.1 · GELU", "mlp.2 · Linear"]


def depth_panels_series(panel: Panel, name: str):
    (found,) = [s for s in panel.series if s.name == name]
    return found


def latest(mon: nbdiag.Monitor, kind: str, stat: str) -> dict[str, float]:
    """``layer -> value`` of ``stat`` at the latest sampled step, read through the public frame()."""
    frame = mon.frame(kind, stats=[stat])
    frame = frame[frame.step == frame.step.max()]
    return dict(zip(frame.layer, frame.value, strict=True))


def test_a_gpt_is_drawn_by_block_and_role(gpt):
    snap = data.snapshot(gpt)
    built = {p.key: p for p in grid.build_panels(snap, ViewState())}
    # no "other scalars": only a loss was logged, and a panel that would only hint what to log is not laid out
    assert list(built) == [
        "loss", "grad_time", "update_time",
        "act_hist", "act_depth", "grad_depth",
        "act_hist_time", "act_heatmap", "update_heatmap",
        "inputs",
    ]  # fmt: skip
    std, norm = latest(gpt, "activation", "std"), latest(gpt, "gradient", "norm")
    lines = {s.name: s for s in built["act_depth"].series if s.kind == "markers"}
    assert tuple(lines) == GPT_ROLES  # one line per role, not one point per layer
    assert set(depth_panels_series(built["act_depth"], "line names").text) == set(GPT_LABELS)  # named at the ends
    for role in GPT_ROLES:
        np.testing.assert_allclose(lines[role].x, np.arange(6))
        np.testing.assert_allclose(lines[role].y, [std[f"blocks.{i}.{role}"] for i in range(6)], rtol=1e-6)
    grads = {s.name: s.y for s in built["grad_depth"].series}
    np.testing.assert_allclose(grads["mlp.0"], [norm[f"blocks.{i}.mlp.0"] for i in range(6)], rtol=1e-6)
    (heat,) = built["act_heatmap"].series
    expected = np.log10([[std[f"blocks.{i}.{role}"] for i in range(6)] for role in GPT_ROLES])
    np.testing.assert_allclose(heat.z, expected, rtol=1e-6)  # rows: roles, columns: blocks
    assert built["act_heatmap"].yticks[1] == GPT_LABELS  # a role named by its position says its type
    ratio = latest(gpt, "update", "update_ratio")
    (update,) = built["update_heatmap"].series
    np.testing.assert_allclose(update.z[GPT_ROLES.index("attn.qkv"), 4], np.log10(ratio["blocks.4.attn.qkv.weight"]))
    assert np.isnan(update.z[GPT_ROLES.index("mlp.1")]).all()  # a GELU has no weight: a gap, not a zero


def test_the_histogram_panel_shows_one_role_or_one_block(gpt):
    snap = data.snapshot(gpt)
    by_role = depth_panels.histograms_panel(snap, ViewState(hist="attn.qkv"))
    assert by_role.title.startswith("attn.qkv activations in each block")
    assert by_role.yticks[1] == [f"block {i}" for i in range(6)]
    by_block = depth_panels.histograms_panel(snap, ViewState(hist=2))
    assert by_block.yticks[1] == GPT_LABELS
    # by default the selected layer's role, its ridgeline in colour
    default = depth_panels.histograms_panel(snap, ViewState(layer="blocks.3.mlp.1"))
    assert default.title.startswith("mlp.1 activations")
    (selected,) = [s for s in default.series if s.name == "selected"]
    assert set(np.asarray(selected.text)) == {3}  # the fourth row: block 3
    assert depth_panels.histograms_panel(snap, ViewState()).title.startswith("ln1 ")  # wte: no block, first role


def test_histograms_is_chosen_by_argument_and_checked(gpt):
    dashboard = gpt.dashboard(display="static", histograms="mlp.0")
    assert dashboard.state.hist == "mlp.0"
    assert dashboard.panels()[3].title.startswith("mlp.0 activations")
    with pytest.raises(ValueError, match=r"expected a role, one of \['ln1', 'attn.qkv'"):
        gpt.dashboard(histograms="mlp.9")
    with pytest.raises(ValueError, match="block index from 0 to 5"):
        gpt.dashboard(histograms=6)
    controls = dashboard._controls()
    assert [v for _, v in controls.hist.options][1:8] == list(GPT_ROLES)
    assert controls.hist.layout.display is None  # shown for a deep model
    controls.hist.value = 4
    assert dashboard.state.hist == 4 and dashboard.panels()[3].title.startswith("block 4 activations")


def cnn_monitor() -> nbdiag.Monitor:
    """The 7-layer CNN of the quickstart's shape."""
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
        nn.LogSoftmax(1),
    )  # fmt: skip
    return watched_panels(model, torch.randn(4, 1, 8, 8))[0]


def test_small_models_keep_the_per_layer_dashboard():
    mon = cnn_monitor()
    snap = data.snapshot(mon)
    assert grid.grid(snap)[:3] == grid.GRID  # the 7-layer CNN looks as it did
    built = {p.key: p for p in grid.build_panels(snap, ViewState())}
    assert built["act_hist"].yticks[1] == snap.labels  # one ridgeline per layer
    with pytest.raises(ValueError, match="no repeated blocks"):
        mon.dashboard(histograms="0")
    assert mon.dashboard()._controls().hist.layout.display == "none"
    # three blocks are still read one point per layer
    three = gpt_monitor(blocks=depth_panels.MIN_BLOCKS - 1, steps=1)
    assert grid.grid(data.snapshot(three))[1] == grid.GRID[1]


def test_a_deep_relu_stack_draws_its_dead_block_on_the_heatmap_and_the_units_panels():
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(6)], nn.Linear(16, 2))
    with torch.no_grad():
        model[2][0].bias.fill_(-10.0)  # block 2's ReLU outputs only zeros: std 0, every unit dead
    _, built = watched_panels(model, torch.randn(8, 16))
    (heat,) = built["act_heatmap"].series
    assert heat.z[1, 2] == heat.zrange[0] == np.nanmin(heat.z)  # std 0: drawn at the bottom, not a gap
    assert np.isfinite(heat.z).all() and "0 at the bottom" in built["act_heatmap"].title
    (stuck,) = [s for s in built["units_depth"].series if s.kind == "markers"]  # only the ReLU role has units
    assert stuck.label == "1 · ReLU" and stuck.y[2] == 1.0
    assert depth_panels_series(built["units_depth"], "line names").text == ["1 · ReLU"]
    assert np.asarray(built["units_time"].series[0].z).shape == (6, 2)


def test_many_blocks_draw_every_kth_ridgeline_and_keep_the_selected_one(gpt, monkeypatch):
    monkeypatch.setattr(depth_panels, "MAX_RIDGELINES", 4)  # 6 blocks: every 2nd
    snap = data.snapshot(gpt)
    panel = depth_panels.histograms_panel(snap, ViewState(layer="blocks.3.mlp.1"))
    assert panel.title.startswith("mlp.1 activations in every 2nd block")
    assert panel.yticks[1] == ["block 0", "block 2", "block 3", "block 4", "block 5"]  # the last and the selected
    (selected,) = [s for s in panel.series if s.name == "selected"]
    assert set(np.asarray(selected.text)) == {2}  # block 3 is the third row drawn
