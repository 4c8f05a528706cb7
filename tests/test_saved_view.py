"""Issue 20: every widget output (the dashboard, each lab) is followed by its saved view, which carries the same
PNG as the widget's bundle, so a saved notebook reopened without its kernel shows the picture in JupyterLab (the
script's behaviour in the browser: tests/browser/test_saved_notebook.py)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import torch
from torch import nn

import nbdiag
from tests.fake_kernel import simulate_kernel

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SCRIPT_MIME = "application/javascript"


def carried_png(saved_view: dict) -> bytes:
    """The PNG the saved view's script shows (decoded from its data URI)."""
    script = saved_view[SCRIPT_MIME]
    start = script.index("base64,") + len("base64,")
    return base64.b64decode(script[start : script.index('\\"', start)])


def train(mon, model, opt, steps: int) -> None:
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss=loss)


def test_the_dashboard_is_followed_by_its_saved_view_which_ends_on_the_final_picture(monkeypatch):
    front_end = simulate_kernel(monkeypatch)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=5) as mon:
        train(mon, model, opt, 23)
    shown = [m for m in front_end.messages if m.kind == "display"]
    assert [WIDGET_MIME in m.bundle for m in shown] == [True, False]  # the widget, then its saved view
    widget_id, saved_view_id = (m.display_id for m in shown)
    final = {m.display_id: m.bundle for m in front_end.messages}  # the last message of each output wins
    assert final[widget_id]["text/plain"].startswith("nbdiag dashboard: step 20")
    assert carried_png(final[saved_view_id]) == final[widget_id]["image/png"]
    assert final[saved_view_id]["text/plain"] == ""  # where no script runs (untrusted, GitHub) it is empty


def test_a_lab_widget_is_followed_by_its_saved_view(monkeypatch):
    front_end = simulate_kernel(monkeypatch)
    nbdiag.labs.init_lab(depth=3, width=16, n_samples=32)
    widget, saved_view = front_end.bundles("display")
    assert WIDGET_MIME in widget and WIDGET_MIME not in saved_view
    assert carried_png(saved_view) == widget["image/png"]


def test_no_saved_view_where_the_output_is_not_a_widget(monkeypatch):
    """VS Code and Colab draw inline (plotly.js in the output, no widget to stand in for)."""
    front_end = simulate_kernel(monkeypatch, "vscode")
    nbdiag.labs.init_lab(depth=3, width=16, n_samples=32)
    assert [SCRIPT_MIME in bundle for bundle in front_end.bundles("display")] == [False]


def test_a_dashboard_is_displayed_again_only_when_the_record_changed(monkeypatch):
    """Going quiet redraws the saved PNG only if the record changed since the output was displayed or last
    settled: each display again gives the widget a new view, which misses what is sent while it is built (a
    dashboard shown before its data came up blank under load when it was displayed again before the first step)."""
    from nbdiag.record import Record
    from nbdiag.views.dashboard import Dashboard
    from tests.clock import FakeClock

    front_end = simulate_kernel(monkeypatch)
    record = Record(capacity=8)
    dashboard = Dashboard(SimpleNamespace(record=record, findings=list))
    dashboard._ipython_display_()
    dashboard.renderer.stop()  # driven by hand below, on a fake clock
    clock = FakeClock()
    renderer = dashboard.renderer

    def quiet_for(seconds: float) -> None:
        renderer.tick(now=clock())
        clock.advance(seconds)
        renderer.tick(now=clock())

    quiet_for(renderer.idle_s + 1)  # nothing recorded yet: quiet, but nothing new to save
    assert [m.kind for m in front_end.messages] == ["display", "display"]  # the widget and its saved view
    record.add_scalars(0, {"loss": 2.3})
    quiet_for(renderer.idle_s + 1)
    updated = [m for m in front_end.messages if m.kind == "update"]
    assert [WIDGET_MIME in m.bundle for m in updated] == [True, False]  # both outputs, once
    quiet_for(renderer.idle_s + 1)
    dashboard.finish()  # closing without a new step: the saved outputs show it already
    assert len([m for m in front_end.messages if m.kind == "update"]) == 2
