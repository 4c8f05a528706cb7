"""Every dashboard interaction answers the front end's echo without a traceback (plotly 7.1 FigureWidget).

After each restyle/relayout, plotly's widget JavaScript sends back what plotly.js holds (``createDeltaObject`` in
plotly's ``widgetbundle.js``). A numpy array sent by the FigureWidget arrives there as a typed array, which that
function walks like an object: the echo holds ``{"0": v0, "1": v1, ...}``, and plotly's Python side then raised
``ValueError: The truth value of an array ... is ambiguous`` in ``_remove_overlapping_props`` (logged twice per
interaction in JupyterLab's log console). ``echo`` below reproduces that message without a browser.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from nbdiag.views.dashboard import Dashboard  # noqa: E402
from tests.test_dashboard import synthetic_source, trace  # noqa: E402


def as_javascript_sees_it(value):
    """``value`` after plotly's widget serializer and plotly.js: 1-D numeric arrays (not int64) become typed
    arrays, which createDeltaObject reports as index-keyed objects."""
    if isinstance(value, dict):
        return {key: as_javascript_sees_it(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_javascript_sees_it(item) for item in value]
    binary = isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "uif"
    if binary and value.dtype not in (np.int64, np.uint64):
        return {str(i): item.item() for i, item in enumerate(value)}
    return value


def echo(figure) -> None:
    """Deliver the trace and layout deltas the front end sends after an edit, as the kernel would."""
    deltas = [{**as_javascript_sees_it(trace._props), "uid": trace.uid} for trace in figure.data]
    figure._js2py_traceDeltas = {"trace_deltas": deltas, "trace_edit_id": figure._last_trace_edit_id}
    layout = as_javascript_sees_it(figure._layout)
    figure._js2py_layoutDelta = {"layout_delta": layout, "layout_edit_id": figure._last_layout_edit_id}


def test_figure_widget_values_are_binary_float_arrays():
    """The echo is handled, not avoided: values stay float arrays, which the widget sends as binary buffers
    (lists cost 5x more CPU per refresh: plotly validates them element by element)."""
    dashboard = Dashboard(synthetic_source())
    loss = dashboard.plot.data[dashboard._controls().figure.slots[("loss", "loss")]]
    dashboard.close()
    assert isinstance(loss._props["x"], np.ndarray) and loss._props["x"].dtype == np.float64


def test_layer_step_and_log_controls_survive_the_front_end_echo():
    """Layer selector, step slider, both log toggles: after each, the echo is processed without an exception,
    and the selection it made is still drawn."""
    dashboard = Dashboard(synthetic_source(n_layers=6, n_steps=20))
    controls = dashboard._controls()
    figure = dashboard.plot
    echo(figure)  # the first draw's echo
    controls.layer.value = controls.layer.options[3][1]
    echo(figure)
    controls.step.value = 52  # the slider runs over steps; the nearest sampled one is step 50, entry 5
    echo(figure)
    controls.loss_log.value = not controls.loss_log.value
    echo(figure)
    controls.norm_log.value = not controls.norm_log.value
    echo(figure)
    state = dashboard.state
    dashboard.close()
    assert (state.layer, state.index) == ("3", 5)


def test_figure_widget_is_born_with_its_values_and_not_edited_before_it_is_shown():
    """A FigureWidget edited before its first view exists comes up empty in JupyterLab and Notebook 7 (plotly
    7.1): the dashboard's is created from the drawn figure and untouched until displayed."""
    dashboard = Dashboard(synthetic_source(n_layers=6, n_steps=20))
    bundle = dashboard.path("widget").bundle(dashboard.frame())
    figure = dashboard.plot
    edits = (figure._last_trace_edit_id, figure._last_layout_edit_id)
    loss = figure.data[dashboard._controls().figure.slots[("loss", "loss")]]
    dashboard.close()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert edits == (0, 0)
    assert len(loss.x) == 20


def _init_lab():
    lab = nbdiag.labs.init_lab(display=False, depth=4, width=64, n_samples=128)
    return lab, lambda: lab.view.controls["activation"].__setattr__("value", "relu")


def _preprocessing_lab():
    lab = nbdiag.labs.preprocessing_lab(display=False)
    return lab, lambda: lab.view.controls["correlation"].__setattr__("value", 0.2)


def _activations_lab():
    lab = nbdiag.labs.activations_lab(display=False)
    return lab, lambda: lab.view.controls["mean"].__setattr__("value", 1.5)


def _search_lab():
    lab = nbdiag.labs.search_lab(budget=4, display=False)
    return lab, lambda: lab.view.controls["seed"].__setattr__("value", 3)


def _compare_inits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    result = nbdiag.compare_inits(model, (torch.randn(32, 8), torch.randint(0, 3, (32,))), schemes=("xavier", "he"))
    return result, None  # computed once: no control


def _prediction_tracker():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    tracker = nbdiag.track_predictions(model, (torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))))
    tracker.record(0)
    tracker.record(10)

    def move():
        tracker.view.slider.value = 0

    return tracker, move


LABS = [_init_lab, _preprocessing_lab, _activations_lab, _search_lab, _compare_inits, _prediction_tracker]


@pytest.mark.parametrize("make", LABS, ids=lambda make: make.__name__.strip("_"))
def test_every_lab_figure_survives_the_front_end_echo(make):
    """Each lab draws on the shared plotly widget: its first draw's echo, and the echo after a control moved, are
    processed without plotly's "truth value of an array is ambiguous" ValueError, and the control redrew."""
    lab, move = make()
    figures = lab.view.figures
    assert figures and all(type(figure).__module__ == "nbdiag.views.plotly_widget" for figure in figures)
    for figure in figures:
        echo(figure)
    before = [[_values(trace) for trace in figure.data] for figure in figures]
    if move is not None:
        move()
        after = [[_values(trace) for trace in figure.data] for figure in figures]
        assert after != before  # the control redrew the figure
        for figure in figures:
            echo(figure)


def _values(trace) -> list:
    return [np.asarray(getattr(trace, key, None), dtype=object).tolist() for key in ("x", "y", "z")]


class _RecordingComm:
    """Stands in for ipywidgets' comm: keeps the state each widget opens with."""

    opened: list[dict] = []

    def __init__(self, **args):
        self.comm_id, self.kernel = f"comm-{len(self.opened)}", object()
        self.opened.append(args["data"]["state"])

    def on_msg(self, callback):
        pass

    def send(self, *args, **kwargs):
        pass

    def close(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("make", LABS, ids=lambda make: make.__name__.strip("_"))
def test_every_lab_figure_opens_its_comm_with_its_traces(make, monkeypatch):
    """The front end's model starts with the figure: plotly's own FigureWidget opens the comm before it holds any
    trace and sends them in a later update, which a view created first never draws (blank lab figures in the
    browser tests). Every figure nbdiag shows opens with every trace and the layout."""
    import ipywidgets.widgets.widget as widget_module
    import plotly.graph_objects as go

    _RecordingComm.opened = []
    monkeypatch.setattr(widget_module.comm, "create_comm", _RecordingComm)
    lab, _ = make()
    assert lab.view.figures  # built now
    figures = [state for state in _RecordingComm.opened if "_widget_data" in state]
    assert figures and all(len(state["_widget_data"]) > 0 and state["_widget_layout"] for state in figures)
    plain = go.FigureWidget(go.Figure(go.Scatter(y=[1, 2])))  # the reason: plotly's class opens empty
    assert _RecordingComm.opened[-1]["_widget_data"] == [] and len(plain.data) == 1


def test_the_dashboard_figure_opens_its_comm_with_its_traces(monkeypatch):
    import ipywidgets.widgets.widget as widget_module

    _RecordingComm.opened = []
    monkeypatch.setattr(widget_module.comm, "create_comm", _RecordingComm)
    dashboard = Dashboard(synthetic_source(n_layers=6, n_steps=20))
    dashboard.path("widget").bundle(dashboard.frame())
    (state,) = [state for state in _RecordingComm.opened if "_widget_data" in state]
    dashboard.close()
    assert len(state["_widget_data"]) > 10


def test_a_dashboard_shown_before_its_data_sends_every_name_and_x_to_a_new_view():
    """After data arrived the front end's echo named properties Python had set (``echo`` sends every property);
    plotly removed them from the figure, and the next display drew traces without names or x (notebook 07: "0…4"
    beside the layer labels). The echo must leave the figure as Python built it, and still record the defaults
    plotly.js filled in."""
    from tests.test_dashboard import synthetic_entry

    source = synthetic_source(n_layers=4, n_steps=0)  # displayed before the first sampled step
    dashboard = Dashboard(source)
    dashboard.path("widget").bundle(dashboard.frame())
    figure = dashboard.plot
    empty = len(figure.data)
    for step in range(0, 50, 10):  # data arrives: new panels, the figure is laid out anew in the same widget
        source.record.append(synthetic_entry(step, 4, source.rng))
        source.record.add_scalars(step, {"loss": 2.3 / (1 + step / 50)})
    dashboard.refresh()
    labels = [f"{i} · {'Linear' if i % 2 == 0 else 'Tanh'}" for i in range(4)]
    units = trace(dashboard, "units_depth", "zero fraction of outputs")
    names = [t.name for t in figure.data]
    echo(figure)
    echoed = {"uid": units.uid, "visible": True, "line": {"color": "#555555", "dash": "solid"}}  # as plotly.js holds
    figure._js2py_traceDeltas = {"trace_deltas": [echoed], "trace_edit_id": figure._last_trace_edit_id}
    figure._repr_mimebundle_()  # what a view created now draws (the dashboard displayed again)
    sent = figure._widget_data
    dashboard.close()
    assert len(figure.data) > empty and [t.get("name") for t in sent] == names and None not in names
    (zero,) = [t for t in sent if t["uid"] == units.uid]
    assert list(zero["x"]) == labels and zero["line"]["color"] == "#555555"
    assert units.visible is True and units.line.dash == "solid"  # the defaults plotly.js filled in are still read
    assert all(t.get("x") is not None for t in sent if t["type"] != "heatmap")
    assert figure._widget_layout["annotations"][0]["text"] == "loss"


def test_the_echo_keeps_only_what_python_did_not_set():
    """Of an echo, only what Python did not set: at any depth, in lists of dicts (annotations) element by element."""
    from nbdiag.views.plotly_widget import _defaults_only

    props = {"name": "std", "x": np.arange(3.0), "marker": {"color": "red"}, "uid": "u"}
    delta = {
        "uid": "u",
        "name": "std",
        "x": {"0": 0.0, "1": 1.0, "2": 2.0},  # a binary array as createDeltaObject reports it
        "visible": True,
        "marker": {"color": "red", "size": 6},
        "line": {"width": 2},
    }
    assert _defaults_only(delta, props) == {"uid": "u", "visible": True, "marker": {"size": 6}, "line": {"width": 2}}
    layout = {"annotations": [{"text": "loss"}, {"text": "norm"}], "xaxis": {"range": [0, 1]}}
    annotations = [{"text": "loss", "x": 0.1}, {"text": "norm"}, {"text": "new"}]
    echoed = {"annotations": annotations, "xaxis": {"range": [0, 1]}}
    assert _defaults_only(echoed, layout) == {"annotations": [{"x": 0.1}, {}, {"text": "new"}]}
