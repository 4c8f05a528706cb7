"""The inline render path (VS Code, Colab, any front end without a widget manager): one output updated in place,
at most 2 updates a second, each bounded in size, carrying plotly's figure JSON drawn from the record."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("plotly")
pytest.importorskip("matplotlib")

import nbdiag  # noqa: E402
from nbdiag.record import Record  # noqa: E402
from nbdiag.views.dashboard import Dashboard  # noqa: E402
from nbdiag.views.inline import MAX_BYTES_PER_S, MAX_HZ, bundle_bytes  # noqa: E402
from tests.clock import FakeClock  # noqa: E402
from tests.fake_kernel import simulate_kernel  # noqa: E402
from tests.synthetic import synthetic_entry  # noqa: E402
from tests.test_dashboard import synthetic_source  # noqa: E402

MAX_UPDATE_BYTES = 1_500_000  # at 50 layers, a full record (measured 0.74-0.82 MB)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HANG_S = 120  # a deadline that only guards against a hang


@pytest.fixture(autouse=True)
def cheap_png(monkeypatch):
    """matplotlib's PNG takes seconds on a loaded CI machine; these tests check where it goes, not its pixels."""
    from nbdiag.views import static

    monkeypatch.setattr(static, "png", lambda *args, **kwargs: PNG_MAGIC + b"stub")


def figure_of(bundle) -> dict:
    """The plotly figure JSON the bundle's page draws."""
    (figure,) = re.findall(r"figure=(\{.*\}),tries=0;", bundle["text/html"])
    return json.loads(figure)


def traces_of(page: str) -> list[dict]:
    """Every plotly figure JSON a page draws (a lab may have several)."""
    return [json.loads(figure) for figure in re.findall(r"figure=(\{.*?\}),tries=0;", page)]


def typed_array(value) -> np.ndarray:
    """A figure JSON array: a list, or plotly's base64 typed array ``{"dtype": "f8", "bdata": ...}``."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value, dtype=float)


def traces(bundle) -> dict[str, list[dict]]:
    """The figure's traces by name (several panels share names like "all layers")."""
    by_name: dict[str, list[dict]] = {}
    for trace in figure_of(bundle)["data"]:
        by_name.setdefault(trace.get("name", ""), []).append(trace)
    return by_name


def tiny_training(monkeypatch, front: str, live_updates: int = 0, steps: int = 20, **watch_kwargs):
    """Train ``steps`` steps under a simulated ``front``, then on until the renderer thread has sent
    ``live_updates`` updates: however slow the machine, the test sees the same messages (the deadline only
    guards against a hang)."""
    recorder = simulate_kernel(monkeypatch, front)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with nbdiag.watch(model, opt, every=1, **watch_kwargs) as mon:
        deadline = time.monotonic() + HANG_S
        while mon.current_step < steps or len(recorder.bundles("update")) < live_updates:
            assert time.monotonic() < deadline, f"{len(recorder.bundles('update'))} live updates after {HANG_S} s"
            loss = model(torch.randn(32, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss=loss)
    return mon, recorder


def test_vscode_gets_one_output_updated_in_place_with_the_final_state(monkeypatch):
    mon, recorder = tiny_training(monkeypatch, "vscode", live_updates=2)
    assert mon._dashboard.mode == "inline"
    kinds = [message.kind for message in recorder.messages]
    assert kinds[0] == "display" and set(kinds[1:]) == {"update"} and len(kinds) >= 3, kinds
    assert len({message.display_id for message in recorder.messages}) == 1
    live, final = recorder.bundles()[:-1], recorder.bundles()[-1]
    assert all(set(b) == {"text/html", "text/plain"} for b in live)  # no PNG while training: it costs seconds
    assert set(final) == {"text/html", "text/plain", "image/png"}
    assert "data:image/png;base64," in final["text/html"]  # shown where plotly.js is not loaded (saved, nbconvert)
    (loss,) = traces(final)["loss"]
    scalars = mon.scalars()
    assert loss["x"][-1] == scalars.index[-1]  # the last step trained is drawn
    assert np.isclose(loss["y"][-1], scalars["loss"].iloc[-1], rtol=1e-3)  # 4 significant digits
    assert "mon.dashboard(layer=" in final["text/html"] and "mon.dashboard(layer=" in final["text/plain"]
    assert "no findings" in final["text/html"]  # the findings table under the figure


def test_jupyter_gets_the_widget_and_static_gets_png_at_close(monkeypatch):
    _, recorder = tiny_training(monkeypatch, "jupyter")
    assert "application/vnd.jupyter.widget-view+json" in recorder.bundles("display")[0]
    _, recorder = tiny_training(monkeypatch, "vscode", display="static")
    shown, *updates = recorder.bundles()
    assert set(shown) == {"image/png", "text/plain"} and "nothing recorded yet" in shown["text/plain"]
    assert updates and "nbdiag dashboard: step" in updates[-1]["text/plain"]


@pytest.mark.parametrize("front", ["colab", "vscode"])
def test_plotly_js_inline_once_never_a_cdn(monkeypatch, front):
    _, recorder = tiny_training(monkeypatch, front, live_updates=1)
    pages = [bundle["text/html"] for bundle in recorder.bundles()]
    assert len(pages) >= 3
    assert len(pages[0]) > 3_000_000 and "plotly.js" in pages[0][:1000]  # plotly.js itself, from the package
    assert all(len(page) < 500_000 for page in pages[1:])  # later messages reuse it
    assert not any(re.search(r"<script[^>]*\ssrc=", page) for page in pages)  # nothing fetched: no CDN


def run_inline(source, seconds: float, n_layers: int, budget: float = 1.0) -> list[tuple[float, int, float, int]]:
    """Display ``source`` inline, then grow its record every 5 ms of fake time for ``seconds``, polling the renderer
    after each write (the renderer thread stays off); return each update's (time, bytes, last step of the loss
    trace, last step written)."""
    dashboard = Dashboard(source, display="inline")
    renderer = dashboard.renderer
    renderer.start = lambda: None  # this test polls, on a fake clock: no verdict depends on the machine's load
    renderer.clock, renderer.cpu_clock, renderer.budget = FakeClock(), FakeClock(), budget  # refreshes cost 0 CPU
    sent: list[tuple[float, int, float, int]] = []
    written = {"step": -1}

    class Handle:
        def update(self, bundle, raw=False):
            drawn = traces(bundle)["loss"][0]["x"][-1]
            sent.append((renderer.clock.now, bundle_bytes(bundle), drawn, written["step"]))

    import IPython.display

    original = IPython.display.display
    IPython.display.display = lambda bundle, raw=False, display_id=None: Handle()
    try:
        dashboard._ipython_display_()
    finally:
        IPython.display.display = original
    end = renderer.clock.now + seconds
    for step in itertools.count(2000, 10):
        source.record.append(synthetic_entry(step, n_layers, source.rng))
        source.record.add_scalars(step, {"loss": 1.0})
        written["step"] = step
        renderer.clock.advance(0.005)
        renderer.tick()
        if renderer.clock.now >= end:
            return sent
    raise AssertionError("unreachable")


def test_at_most_two_updates_a_second_latest_state_wins():
    """The budget lifted (a cheap refresh): the ceiling itself holds, and each update draws the newest record."""
    sent = run_inline(synthetic_source(n_layers=6, n_steps=20), seconds=3.0, n_layers=6)
    gaps = np.diff([at for at, _, _, _ in sent])
    # after each update: 1 / MAX_HZ, longer when it was large (bytes / MAX_BYTES_PER_S); then the next 5 ms poll
    waits = np.maximum(1 / MAX_HZ, np.array([size for _, size, _, _ in sent[:-1]]) / MAX_BYTES_PER_S)
    assert len(sent) >= 3 and np.all(gaps >= waits - 1e-9) and np.all(gaps < waits + 0.005 + 1e-9), (gaps, waits)
    assert all(drawn == written for _, _, drawn, written in sent)


@pytest.mark.slow
def test_rate_and_size_are_bounded_at_50_layers():
    """50 layers: each update under MAX_UPDATE_BYTES, at most MAX_HZ a second and MAX_BYTES_PER_S on average."""
    sent = run_inline(synthetic_source(n_layers=50, n_steps=200), seconds=10.0, n_layers=50)
    times = [at for at, _, _, _ in sent]
    assert len(sent) >= 2, sent
    assert max(size for _, size, _, _ in sent) < MAX_UPDATE_BYTES
    rate = (len(sent) - 1) / (times[-1] - times[0])
    assert rate <= MAX_HZ
    sizes = [size for _, size, _, _ in sent]
    assert sum(sizes[:-1]) / (times[-1] - times[0]) <= 1.05 * MAX_BYTES_PER_S
    assert all(drawn == written for _, _, drawn, written in sent)  # drawn from the grown record


def test_controls_become_arguments(monkeypatch):
    simulate_kernel(monkeypatch, "vscode")
    source = synthetic_source(n_layers=6, n_steps=20)
    dashboard = Dashboard(source, display="inline")
    dashboard.select(layer="3", step=52, loss_log=True)
    assert (dashboard.state.layer, dashboard.state.index, dashboard.state.loss_log) == ("3", 5, True)  # step 50
    dashboard.select(step=10_000)
    assert dashboard.state.index is None  # past the end: follow the latest
    with pytest.raises(ValueError, match="got layer='9', expected one of"):
        dashboard.select(layer="9")


def test_monitor_dashboard_takes_display_and_selection(monkeypatch):
    mon, recorder = tiny_training(monkeypatch, "jupyter", display=False)
    assert not recorder.messages
    dashboard = mon.dashboard(display="inline", layer="2")
    assert dashboard.mode == "inline" and dashboard.state.layer == "2"
    mon.show()
    (bundle,) = recorder.bundles("display")
    assert traces(bundle)["selected"]  # drawn inline: the highlighted layer's lines
    with pytest.raises(ValueError, match="got display='live'"):
        mon.dashboard(display="live")


@pytest.mark.parametrize(("front", "widget"), [("vscode", False), ("jupyter", True)])
def test_labs_are_inline_where_widgets_do_not_run(monkeypatch, front, widget):
    """Where no widget manager runs, a lab is drawn inline as the dashboard is: its plotly figure drawn by
    plotly.js in the output (the same figure the widget shows), controls as arguments, a PNG fallback."""
    recorder = simulate_kernel(monkeypatch, front)
    lab = nbdiag.labs.activations_lab(mean=1.0)
    bundle, *saved_view = recorder.bundles("display")
    assert bundle["image/png"].startswith(PNG_MAGIC)
    assert ("application/vnd.jupyter.widget-view+json" in bundle) is widget
    assert len(saved_view) == int(widget)  # a widget is followed by its saved view (tests/test_saved_view.py)
    assert ("text/html" in bundle) is not widget
    assert ("the lab's controls are its function's arguments" in bundle["text/plain"]) is not widget
    if not widget:
        (figure,) = traces_of(bundle["text/html"])
        bars = {trace["name"]: trace["y"] for trace in figure["data"] if trace["type"] == "bar"}
        assert bars
        for column, values in bars.items():
            np.testing.assert_allclose(typed_array(values), lab.summary()[column].to_numpy())


def test_dashboard_layer_before_the_first_sampled_step_is_a_clear_error():
    """Nothing recorded yet: asking for a layer says why there is none, not an IndexError."""
    dashboard = Dashboard(SimpleNamespace(record=Record(capacity=8), findings=list))
    with pytest.raises(ValueError, match="no layer is recorded yet"):
        dashboard.select(layer="0")
