"""The live dashboard: figures show the record's numbers, refreshes are throttled and drop stale states."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

from nbdiag.findings import SEVERITY_COLOURS, make_finding  # noqa: E402
from nbdiag.labs.predictions import PredictionTracker  # noqa: E402
from nbdiag.record import Record  # noqa: E402
from nbdiag.stats import ACTIVATION_STATS  # noqa: E402
from nbdiag.views import data  # noqa: E402
from nbdiag.views.dashboard import WIDGET_MIME, Dashboard  # noqa: E402
from nbdiag.views.renderer import MAX_OUTLIER_WAIT_S, Renderer  # noqa: E402
from tests.clock import FakeClock  # noqa: E402
from tests.synthetic import synthetic_entry  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_source(n_layers: int = 6, n_steps: int = 20, findings=(), predictions=None, seed: int = 0):
    """Anything with .record/.findings()/.predictions, as a run reader would be."""
    rng = np.random.default_rng(seed)
    record = Record(capacity=512)
    record.update_meta(
        model="MLP",
        num_classes=10,
        layer_types={str(i): ("Linear" if i % 2 == 0 else "Tanh") for i in range(n_layers)},
    )
    for step in range(0, 10 * n_steps, 10):
        record.append(synthetic_entry(step, n_layers, rng))
        record.add_scalars(step, {"loss": 2.3 / (1 + step / 50), "acc": step / (10 * n_steps), "val_loss": 2.0})
    return SimpleNamespace(record=record, findings=lambda: list(findings), predictions=predictions, rng=rng)


def trace(dashboard: Dashboard, panel: str, name: str):
    return dashboard.plot.data[dashboard._controls().figure.slots[(panel, name)]]


def test_std_vs_depth_trace_equals_record_frame():
    source = synthetic_source()
    dashboard = Dashboard(source)
    frame = source.record.frame("activation", stats=["std"])
    latest = frame[frame["step"] == frame["step"].max()].set_index("layer")["value"]
    std = trace(dashboard, "act_depth", "std")
    np.testing.assert_allclose(std.y, latest.loc[source.record.layers()].to_numpy())
    assert list(std.x) == [f"{i} · {'Linear' if i % 2 == 0 else 'Tanh'}" for i in range(6)]


def test_gradient_norm_over_time_equals_record_in_forward_order():
    source = synthetic_source()
    dashboard = Dashboard(source)
    frame = source.record.frame("gradient", stats=["norm"]).pivot(index="layer", columns="step", values="value")
    expected = frame.loc[source.record.layers()].to_numpy()  # (L, S) in forward order
    lines = np.asarray(trace(dashboard, "grad_time", "all layers").y, dtype=float).reshape(6, -1)
    np.testing.assert_allclose(lines[:, :-1], expected)
    assert np.isnan(lines[:, -1]).all()  # one gap between layers


def test_selected_layer_and_step_follow_the_controls():
    source = synthetic_source()
    dashboard = Dashboard(source)
    dashboard.set_state(layer="3", index=4)
    selected = np.asarray(trace(dashboard, "grad_time", "selected").y, dtype=float)
    row = source.record.frame("gradient", layers=["3"], stats=["norm"])["value"].to_numpy()
    np.testing.assert_allclose(selected[:-1], row)
    step_4 = source.record.entries()[4]
    mean = step_4.blocks["activation"].values[:, ACTIVATION_STATS.index("mean")]
    np.testing.assert_allclose(trace(dashboard, "act_depth", "mean").y, mean)
    assert dashboard._controls().step.value == 40 and dashboard._controls().layer.value == "3"  # the slider shows steps
    assert "showing step 40" in dashboard._controls().status.value
    assert (dashboard._controls().step.min, dashboard._controls().step.max) == (0, 190)


def test_loss_panel_draws_losses_and_chance_level():
    dashboard = Dashboard(synthetic_source())
    loss = trace(dashboard, "loss", "loss")
    scalars = dashboard.source.record.scalars()
    np.testing.assert_allclose(loss.y, scalars["loss"].to_numpy())
    assert trace(dashboard, "loss", "val_loss") is not None
    chance = trace(dashboard, "loss", "chance")  # named in the legend: a label on the plot sat on the curve
    assert chance.name == "chance -ln(1/10) = 2.3" and chance.showlegend and chance.line.dash == "dash"
    np.testing.assert_allclose(chance.y, [np.log(10)] * 2)


def test_predictions_heatmap_equals_tracker():
    tracker = PredictionTracker(nn.Linear(4, 3), (torch.randn(8, 4), torch.randint(0, 3, (8,))))
    for step in (0, 10, 20):
        tracker.record(step)
    dashboard = Dashboard(synthetic_source(predictions=tracker))
    heatmap = trace(dashboard, "pred_heatmap", "p(true)")  # column form: x, y, z flat, one entry per cell
    np.testing.assert_allclose(np.asarray(heatmap.z).reshape(8, 3), tracker.p_true().T)
    np.testing.assert_array_equal(np.asarray(heatmap.x).reshape(8, 3)[0], [0, 10, 20])
    bars = trace(dashboard, "pred_step", "p(true)")
    np.testing.assert_allclose(bars.y, tracker.p_true()[-1])


def test_renderer_drops_stale_states_and_keeps_the_budget():
    version = {"now": 0}
    drawn: list[int] = []
    cpu = FakeClock(per_read=0.01)  # each refresh costs 10 ms of CPU

    class Owner:
        def refresh(self) -> None:
            drawn.append(version["now"])
            cpu.advance(0.01)  # 20 ms in all

    owner = Owner()
    renderer = Renderer(owner.refresh, lambda: version["now"], max_hz=10, budget=0.01, cpu_clock=cpu)
    version["now"] = 10  # ten writes before the first poll
    assert renderer.tick(now=100.0)
    assert drawn == [10] and list(renderer.costs) == [pytest.approx(0.02)]
    version["now"] = 30
    renderer.tick(now=100.5)  # 20 ms cost / 1% budget: not before 2 s
    assert drawn == [10]
    renderer.tick(now=101.99)
    assert drawn == [10]
    renderer.tick(now=102.01)
    assert drawn == [10, 30] and renderer.dropped == 19


def test_a_one_off_costly_refresh_does_not_freeze_the_view():
    """A rebuild (the first draw, a panel that got data) costs far more than a steady refresh: the next refresh
    still comes within MAX_OUTLIER_WAIT_S, while steady costly refreshes keep the full cost / budget spacing."""
    version = {"now": 0}
    costs = iter([0.001] * 3 + [0.2, 0.001] + [0.2] * 4)  # CPU seconds: three cheap, a rebuild, cheap, costly
    cpu = FakeClock()

    class Owner:
        def refresh(self) -> None:
            cpu.advance(next(costs))

    owner = Owner()
    renderer = Renderer(owner.refresh, lambda: version["now"], max_hz=10, budget=0.01, cpu_clock=cpu)

    def tick(now: float) -> None:
        version["now"] += 1
        renderer.tick(now=now)

    for now in (100.0, 100.2, 100.4):
        tick(now)
    tick(100.6)  # the rebuild: 0.2 s / 1% would mean 20 s without the cap
    assert renderer.refreshes == 4
    tick(100.6 + MAX_OUTLIER_WAIT_S - 0.01)
    assert renderer.refreshes == 4
    tick(100.6 + MAX_OUTLIER_WAIT_S + 0.01)
    assert renderer.refreshes == 5
    start = 100.6 + MAX_OUTLIER_WAIT_S + 0.01
    for now in (start + 0.2, start + 2.25, start + 4.3):  # costly from now on: capped until it is the median
        tick(now)
    assert renderer.refreshes == 8
    tick(start + 4.3 + 2.1)  # 0.2 s is the median now, not an outlier: the full 20 s spacing
    assert renderer.refreshes == 8
    tick(start + 4.3 + 20.05)
    assert renderer.refreshes == 9


@pytest.mark.parametrize(("cost", "bound"), [(0.05, "max_hz"), (0.3, "budget")])
def test_refreshes_are_throttled_under_a_fast_loop(cost, bound):
    """3000 writes in 1.5 s of (fake) time, polled after each: at most max_hz refreshes a second and at most
    ``budget`` of the time spent refreshing, intermediate states dropped, and the latest state drawn at the end."""
    source = synthetic_source(n_steps=2)
    dashboard = Dashboard(source, max_hz=5, budget=0.5)
    renderer = dashboard.renderer
    renderer.clock, renderer.cpu_clock = FakeClock(), FakeClock(per_read=cost)  # each refresh costs ``cost``
    start, steps = renderer.clock.now, 3000
    for step in range(steps):
        source.record.add_scalars(100 + step, {"loss": 1.0 / (1 + step)})
        renderer.clock.advance(0.0005)
        renderer.tick()
    elapsed = renderer.clock.now - start
    spacing = {"max_hz": 1 / 5, "budget": cost / 0.5}[bound]  # the wait after each refresh
    assert renderer.refreshes == math.ceil(elapsed / spacing)
    assert renderer.refreshes <= elapsed * 5 + 1
    assert sum(renderer.costs) <= 0.5 * elapsed + cost  # the budget: the last refresh's cost is not yet paid back
    assert renderer.dropped > steps / 2  # intermediate states are skipped, never queued
    renderer.clock.advance(spacing)
    renderer.tick()
    assert trace(dashboard, "loss", "loss").x[-1] == 100 + steps - 1  # the latest state wins


def test_background_thread_training_updates_the_figure():
    source = synthetic_source(n_steps=1)
    dashboard = Dashboard(source, max_hz=10, budget=0.5)
    dashboard.start()
    before = len(trace(dashboard, "grad_time", "all layers").x)

    def train() -> None:
        for step in range(10, 200, 10):
            source.record.append(synthetic_entry(step, 6, source.rng))
            source.record.add_scalars(step, {"loss": 1.0})
            time.sleep(0.01)

    worker = threading.Thread(target=train)
    worker.start()
    worker.join()
    deadline = time.monotonic() + 60  # a hang guard only: the loop ends once the figure shows the last write
    while time.monotonic() < deadline and len(trace(dashboard, "loss", "loss").x) < 20:
        time.sleep(0.05)
    dashboard.close()
    assert len(trace(dashboard, "loss", "loss").x) == 20
    assert len(trace(dashboard, "grad_time", "all layers").x) > before


def _tree(widget) -> list:
    return [widget, *(w for child in getattr(widget, "children", ()) for w in _tree(child))]


def test_saved_widget_state_is_bounded():
    import ipywidgets

    dashboard = Dashboard(synthetic_source(n_layers=50, n_steps=500))
    dashboard._repr_mimebundle_()  # what a notebook saves: the state as displayed, data included
    dashboard.renderer.stop()
    widgets = _tree(dashboard.widget)
    state = ipywidgets.Widget.get_manager_state(widgets=widgets)["state"]
    size = len(json.dumps(state))
    plotly_models = [m for m in state.values() if "_widget_data" in m["state"]]
    dashboard.close()
    assert len(plotly_models) == 1  # one FigureWidget: each carries ~5 MB of JavaScript (_esm)
    assert size < 7.5e6, f"saved widget state is {size / 1e6:.1f} MB"


def test_mimebundle_has_widget_png_and_text():
    finding = make_finding("train.nonfinite", "fail", "NaN in 3 at step 40", layer="3", step=40)
    dashboard = Dashboard(synthetic_source(findings=[finding]))
    bundle = dashboard._repr_mimebundle_()
    dashboard.close()
    assert bundle["image/png"].startswith(PNG_MAGIC) and len(bundle["image/png"]) > 20_000
    assert "model_id" in bundle[WIDGET_MIME]
    assert "step 190" in bundle["text/plain"] and "train.nonfinite" in bundle["text/plain"]


def test_findings_banner_comes_first_most_severe_first_and_selects_the_layer_and_step():
    fail = make_finding("train.nonfinite", "fail", "NaN in 3 at step 40", layer="3", step=40)
    warn = make_finding("train.update_ratio", "warn", "ratio 0.5", layer="2.weight", step=100)
    dashboard = Dashboard(synthetic_source(findings=[warn, fail]))
    controls = dashboard._controls()
    assert controls.box.children.index(controls.findings) < controls.box.children.index(controls.figure.figure)
    first, second = controls.findings.children
    text = first.children[1].value
    assert "train.nonfinite" in text and SEVERITY_COLOURS["fail"] in text and fail.advice in text
    assert "layer 3 · step 40" in text and "train.update_ratio" in second.children[1].value
    first.children[0].click()
    assert (dashboard.state.layer, dashboard.snapshot().entries[dashboard.state.index].step) == ("3", 40)
    second.children[0].click()  # a parameter's finding selects its layer
    assert (dashboard.state.layer, dashboard.snapshot().entries[dashboard.state.index].step) == ("2", 100)
    dashboard.close()


def test_layer_labels_name_the_module_type():
    source = synthetic_source()
    assert data.layer_label(source.record, "3") == "3 · Tanh"
    assert data.layer_label(source.record, "2.weight") == "2.weight · Linear"


def test_empty_record_draws_hints_not_errors():
    source = SimpleNamespace(record=Record())
    dashboard = Dashboard(source)
    assert "nothing recorded yet" in dashboard.text()
    assert dashboard.png().startswith(PNG_MAGIC)
    dashboard.close()


def test_import_nbdiag_loads_no_plotting_library():
    code = "import sys, nbdiag; bad = {'plotly', 'ipywidgets', 'matplotlib'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
