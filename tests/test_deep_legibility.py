"""The dashboard reads at depth (issue 21 part 3, issue 20): what the review saw in the 48-block GPT's screenshot.

- lines over time: one per role (the median over blocks) and the selected layer, not 340 grey lines; a deep model
  without repeated blocks draws every k-th layer; the 7-layer CNN keeps one grey line per layer;
- names of role lines at their right ends, apart, and legends above the plots, never over the lines;
- a measured 0 of dead/saturated units is a visible dash, a layer whose units are not measured stays blank;
- the chance level is named in the loss panel's legend, not written on the curve;
- no panel that only says what to log.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.record import Record
from nbdiag.views import data, depth_panels, end_labels, grid, panels, static
from nbdiag.views.panels import Panel, Series, ViewState
from tests.synthetic import GPT_BLOCK, gpt_layers, synthetic_entry

STEPS = 6
SELECTED = "blocks.30.attn.qkv"


@pytest.fixture(scope="module")
def gpt340():
    """A synthetic record of the 48-block GPT's 340 layers (random statistics), loss only."""
    rng = np.random.default_rng(0)
    types = gpt_layers(340)
    record = Record(capacity=64)
    record.update_meta(num_classes=64, layer_types=types)
    for step in range(STEPS):
        record.append(synthetic_entry(10 * step, 340, rng, tuple(types)))
        record.add_scalars(10 * step, {"loss": 4.2 - 0.1 * step})
    return SimpleNamespace(record=record, findings=list, predictions=None)


def built(source, state: ViewState | None = None) -> dict[str, Panel]:
    """The panels of ``source`` by key (``SELECTED`` highlighted unless ``state`` says otherwise)."""
    return {p.key: p for p in grid.build_panels(data.snapshot(source), state or ViewState(layer=SELECTED))}


def named(panel: Panel, name: str) -> Series:
    (found,) = [s for s in panel.series if s.name == name]
    return found


@pytest.mark.parametrize(("key", "kind", "stat", "suffix"), [
    ("grad_time", "gradient", "norm", ""),
    ("update_time", "update", "update_ratio", ".weight"),
])  # fmt: skip
def test_a_340_layer_gpt_draws_one_line_per_role_over_time(gpt340, key, kind, stat, suffix):
    panel = built(gpt340)[key]
    lines = [s for s in panel.series if s.kind == "line"]
    assert [s.name for s in lines] == [*GPT_BLOCK, "selected"]  # 8 lines, not 340
    assert sum(np.isfinite(np.asarray(s.y, dtype=float)).sum() for s in lines) <= 8 * STEPS
    frame = gpt340.record.frame(kind, stats=[stat])
    for role in GPT_BLOCK:  # each role's line: the median over the 48 blocks at each step, from the public frame
        rows = frame[frame.layer.isin([f"blocks.{b}.{role}{suffix}" for b in range(48)])]
        expected = rows.groupby("step").value.median()
        line = named(panel, role)
        np.testing.assert_allclose(line.x, expected.index.to_numpy())
        np.testing.assert_allclose(line.y, expected.to_numpy(), rtol=1e-12)
    selected = named(panel, "selected")
    mine = frame[frame.layer == SELECTED + suffix]
    np.testing.assert_allclose(selected.y[np.isfinite(selected.y)], mine.value.to_numpy())
    assert selected.legend and selected.color == "#000000"  # black: blue is a role's colour here


def test_the_plotly_and_static_figures_draw_as_few_lines(gpt340):
    pytest.importorskip("plotly")
    from nbdiag.views.figure import PanelFigure

    shown = list(built(gpt340).values())
    figure = PanelFigure(shown, widget=False).figure
    keys = [p.key for p in shown]
    for key in ("grad_time", "update_time"):
        axis = f"x{keys.index(key) + 1}"
        traces = [t for t in figure.data if t.xaxis == axis and t.mode == "lines"]
        assert len(traces) == len(GPT_BLOCK) + 1
        assert sum(np.isfinite(np.asarray(t.y, dtype=float)).sum() for t in traces) <= (len(GPT_BLOCK) + 1) * STEPS
    fig = static.figure(shown, [], "gpt")
    ax = fig.axes[1 + keys.index("grad_time")]
    assert len(ax.lines) <= len(GPT_BLOCK) + 2  # the role lines, the selected one, the selected-step marker


def cnn_source():
    """The 7-layer CNN of the quickstart's shape, 3 steps, with accuracy logged."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 10),
        nn.LogSoftmax(1),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with nbdiag.watch(model, opt, every=1, display=False, num_classes=10) as mon:
        for _ in range(3):
            loss = nn.functional.nll_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss, acc=0.1)
    return mon


@pytest.fixture(scope="module")
def cnn():
    return cnn_source()


def test_the_7_layer_cnn_keeps_one_grey_line_per_layer(cnn):
    shown = built(cnn, ViewState(layer="2"))
    grey = named(shown["grad_time"], "all layers")
    assert grey.label == "all layers" and np.isnan(grey.x).sum() == 6  # 6 activation layers, NaN-separated
    assert named(shown["grad_time"], "selected").color == panels.SELECTED
    updates = named(shown["update_time"], "all layers")
    assert np.isnan(updates.x).sum() == 3  # the three weights (conv, conv, linear)
    assert "scalars" in shown  # accuracy was logged: the panel has a line


def test_a_deep_model_without_blocks_draws_every_kth_layer_and_the_selected_one():
    rng = np.random.default_rng(0)
    record = Record(capacity=16)
    record.update_meta(layer_types={str(i): "Linear" if i % 2 == 0 else "Tanh" for i in range(100)})
    for step in range(3):
        record.append(synthetic_entry(step, 100, rng))
    source = SimpleNamespace(record=record, findings=list, predictions=None)
    snap = data.snapshot(source)
    assert depth_panels.blocks_of(snap) is None
    panel = panels.gradient_time_panel(snap, ViewState(layer="41"))
    grey = named(panel, "all layers")
    depths = set(np.asarray(grey.text))
    assert len(depths) <= panels.MAX_LAYER_LINES + 2 and {0.0, 41.0, 99.0} <= depths  # first, selected, last
    assert grey.label == "every 4th of 100 layers"
    assert np.isnan(grey.x).sum() == len(depths)


ROLE_PANELS = ("grad_time", "update_time", "act_depth", "grad_depth")


def test_role_names_sit_at_the_right_ends_apart_and_outside_the_data(gpt340):
    shown = built(gpt340)
    for key in ROLE_PANELS:
        panel = shown[key]
        lines = [s for s in panel.series if s.name in GPT_BLOCK]
        assert lines and not any(s.legend for s in lines), key  # no legend over the lines
        names = named(panel, "line names")
        data_end = max(float(np.nanmax(np.asarray(s.x, dtype=float))) for s in lines)
        assert set(names.text) == {s.label for s in lines}
        assert (names.x > data_end).all() and (names.x < panel.xrange[1]).all(), key
        room = (panel.xrange[1] - data_end) / (panel.xrange[1] - panel.xrange[0])
        assert room >= 0.2, key  # a fifth of the width for the names, right of every point
        heights = np.sort(np.log10(names.y) if panel.ylog else names.y)
        values = np.concatenate([np.asarray(s.y, dtype=float) for s in lines])
        values = np.log10(values[values > 0]) if panel.ylog else values
        span = np.nanmax(values) - np.nanmin(values)
        assert np.diff(heights).min() >= end_labels.LABEL_GAP * span * (1 - 1e-9), key  # no two names overlap


def test_names_follow_their_lines_when_apart():
    lines = [("a", np.array([1.0, 2.0]), "#111111"), ("b", np.array([5.0, np.nan]), "#222222")]
    (names,) = end_labels.end_labels(lines, (0.0, 1.0), log=False, values=[np.array([0.0, 10.0])])
    assert (names.x > 1.0).all()  # just right of the data
    np.testing.assert_allclose(names.y, [2.0, 5.0])  # the last finite value of each, far enough apart: unmoved
    (close,) = end_labels.end_labels([("a", np.array([3.0]), "#1"), ("b", np.array([3.1]), "#2")], (0, 1), False,
                                     values=[np.array([0.0, 10.0])])  # fmt: skip
    assert close.y[1] - close.y[0] == pytest.approx(end_labels.LABEL_GAP * 10.0)


def legend_boxes(fig):
    """(axes box, legend box, label boxes) in pixels, for every axes with a legend or line names."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[1:]:
        legend = ax.get_legend()
        yield (
            ax,
            ax.get_window_extent(renderer),
            legend.get_window_extent(renderer) if legend else None,
            {t.get_text(): t.get_window_extent(renderer) for t in ax.texts},
        )


@pytest.mark.parametrize("which", ["gpt", "cnn"])
def test_legends_sit_above_the_plots_in_both_renderers(gpt340, cnn, which):
    pytest.importorskip("plotly")
    from nbdiag.views.figure import PanelFigure

    shown = list(built(gpt340 if which == "gpt" else cnn).values())
    layout = PanelFigure(shown, widget=False).figure.layout
    for i in range(len(shown)):
        legend = layout["legend" if i == 0 else f"legend{i + 1}"]
        y_domain = layout["yaxis" if i == 0 else f"yaxis{i + 1}"].domain
        assert legend.y >= y_domain[1] and legend.yanchor == "bottom", shown[i].key  # above the plotting area
    fig = static.figure(shown, [], which)
    for (ax, box, legend, names), panel in zip(legend_boxes(fig), shown, strict=True):
        if legend is not None:
            assert legend.y0 >= box.y1 - 1, panel.key  # above the axes, not over the lines
        if panel.key in ROLE_PANELS and which == "gpt":
            last = max(float(np.nanmax(np.asarray(s.x, dtype=float))) for s in panel.series if s.name in GPT_BLOCK)
            x_end = ax.transData.transform((last, 1.0))[0]
            names = [box for text, box in names.items() if text in named(panel, "line names").text]
            assert len(names) == len(GPT_BLOCK)  # every role named (synthetic: the GELU has a weight too)
            assert all(n.x0 >= x_end for n in names), panel.key
            ordered = sorted(names, key=lambda n: n.y0)
            assert all(a.y1 <= b.y0 + 0.5 for a, b in zip(ordered, ordered[1:], strict=False)), (
                panel.key
            )  # names do not overlap
            assert all(n.x1 <= box.x1 + 1 for n in names), panel.key  # inside the axes' room


def units_source():
    """Linear -> ReLU -> Linear -> Tanh -> Linear: the ReLU's units can die, the Tanh's saturate, none do."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    with nbdiag.watch(model, every=1, display=False) as mon:
        for _ in range(2):
            model(torch.randn(32, 4)).sum().backward()
            mon.step()
    return mon


def test_a_measured_zero_is_a_dash_and_an_unmeasured_layer_stays_blank():
    snap = data.snapshot(units_source())
    panel = panels.units_depth_panel(snap, ViewState())
    dead, saturated = named(panel, "dead units"), named(panel, "saturated units")
    assert dead.y[1] == 0 and saturated.y[3] == 0  # measured, and 0: no bar height
    dead_zero, saturated_zero = named(panel, "dead units = 0"), named(panel, "saturated units = 0")
    np.testing.assert_array_equal(np.isnan(dead_zero.y), [True, False, True, True, True])  # the ReLU only
    np.testing.assert_array_equal(np.isnan(saturated_zero.y), [True, True, True, False, True])  # the Tanh only
    assert dead_zero.y[1] == 0 and dead_zero.color == dead.color and dead_zero.symbol == "line-ew"
    for layer in (0, 2, 4):  # Linear: units not measured, nothing drawn at all
        assert all(np.isnan(s.y[layer]) for s in (dead, saturated, dead_zero, saturated_zero))
    fig = static.figure([panel], [], "units")
    dashes = [line for line in fig.axes[1].lines if line.get_marker() == "_"]
    drawn = {(float(x), float(y)) for line in dashes for x, y in zip(*line.get_data(), strict=True) if np.isfinite(y)}
    assert drawn == {(1.0, 0.0), (3.0, 0.0)} and not any(line.get_clip_on() for line in dashes)
    pytest.importorskip("plotly")
    from nbdiag.views.figure import PanelFigure

    figure = PanelFigure([panel], widget=False).figure
    (trace,) = [t for t in figure.data if t.name == "dead units = 0"]
    assert trace.marker.symbol == "line-ew" and trace.marker.line.width >= 2 and trace.cliponaxis is False
    assert [y is not None for y in trace.y] == [False, True, False, False, False]


def test_a_dead_layer_has_its_bar_and_no_zero_dash():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)
    with nbdiag.watch(model, every=1, display=False) as mon:
        model(torch.randn(8, 4)).sum().backward()
        mon.step()
    panel = panels.units_depth_panel(data.snapshot(mon), ViewState())
    assert named(panel, "dead units").y[1] == 1.0 and np.isnan(named(panel, "dead units = 0").y).all()


def test_the_chance_level_is_in_the_loss_legend_not_on_the_curve(cnn):
    pytest.importorskip("plotly")
    from nbdiag.views.figure import PanelFigure

    shown = list(built(cnn).values())
    figure = PanelFigure(shown, widget=False).figure
    (chance,) = [t for t in figure.data if t.name == f"chance -ln(1/10) = {np.log(10):.3g}"]
    assert chance.line.dash == "dash" and chance.showlegend and chance.legend == "legend"  # the loss panel's
    assert not any("chance" in (shape.label.text or "") for shape in figure.layout.shapes)  # no text on the plot
    fig = static.figure(shown, [], "cnn")
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["loss", "chance -ln(1/10) = 2.3"]


def test_no_panel_only_hints_what_to_log(gpt340, cnn):
    deep = built(gpt340)
    assert "scalars" not in deep  # only a loss was logged
    assert all(p.series for p in deep.values()), [p.key for p in deep.values() if not p.series]
    assert named(built(cnn)["scalars"], "acc").y.tolist() == [0.1, 0.1, 0.1]


def test_column_median_is_numpys_nanmedian():
    rng = np.random.default_rng(0)
    for shape in [(1, 5), (2, 5), (7, 9), (48, 30)]:
        values = rng.random(shape)
        values[rng.random(shape) < 0.3] = np.nan
        values[:, 0] = np.nan  # a step no block recorded: a gap
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "All-NaN slice"
            expected = np.nanmedian(values, axis=0)
        np.testing.assert_allclose(depth_panels.column_median(values), expected)
