"""The live dashboard in JupyterLab: its plotly figure is drawn and grows while the training cell still runs."""

from __future__ import annotations

import time

import pytest

from tests.browser.notebooks import training_notebook
from tests.browser.pages import (
    cell_errors,
    cell_prompt,
    dropdown,
    figures,
    open_notebook,
    run_all_cells,
    save_notebook,
    screenshot,
    select_option,
    wait_all_cells_done,
    wait_for_figures,
    wait_for_full_width,
    wait_for_trace_change,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]  # a hang guard: a loaded machine trains longer

TRAIN_CAP_S = 240  # a hang guard: training ends when the test has seen the dashboard grow (the stop file)
GROWTH_TIMEOUT_S = 60.0  # a hang guard too: each wait ends as soon as the trace grew
FALLBACK_TIMEOUT_S = 30.0
TRAIN_CELL = 1
TALL_VIEWPORT = {"width": 1400, "height": 2200}  # both cells and the 4-row dashboard fit in one screenshot
DASHBOARD = ".jp-OutputArea-output:has(.js-plotly-plot)"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
EXPECTED_TRACES = {"loss", "all layers", "std", "mean", "gradient norm"}
LAYER_TRACES = {"std", "mean", "gradient norm"}  # one point per layer: the CNN has 7 leaf modules
OTHER_LAYER = "3 · ReLU"  # chosen in the layer dropdown: the "selected" lines move to it


def dashboard_importable() -> bool:
    """Whether ``nbdiag.views.dashboard`` exists yet (it is being built)."""
    try:
        import nbdiag.views.dashboard  # noqa: F401
    except ImportError:
        return False
    return True


def loss_last_step(page) -> float:
    """The last step the dashboard's loss trace reaches (-1 while it is not drawn). Not the number of points:
    long curves are thinned for display, so the count can drop while the curve grows."""
    traces = [trace for figure in figures(page) for trace in figure if trace["name"] == "loss"]
    return max((trace["last_x"] for trace in traces if trace["last_x"] is not None), default=-1)


def wait_for_growth(page, step: float) -> float:
    """Wait until the loss trace reaches past ``step`` while the training cell still runs."""
    deadline = time.monotonic() + GROWTH_TIMEOUT_S
    while time.monotonic() < deadline:
        now = loss_last_step(page)
        assert cell_prompt(page, TRAIN_CELL) == "[*]:", "training ended before the dashboard grew"  # read while [*]
        if now > step:
            return now
        time.sleep(0.5)
    raise AssertionError(f"the loss trace stayed at step {step} for {GROWTH_TIMEOUT_S:.0f} s of training")


@pytest.mark.skipif(not dashboard_importable(), reason="nbdiag.views.dashboard is not importable yet")
def test_dashboard_streams_while_training(page, lab_server, artifacts):
    """Run all cells; the loss trace grows on three reads while the training cell shows [*]; at the end every
    panel's trace exists, the per-layer ones hold points, the figure fills the output area's width, the layer
    dropdown moves the highlight, and a saved notebook keeps a PNG of the trained state."""
    page.set_viewport_size(TALL_VIEWPORT)
    stop = lab_server.root / "stop-training"
    training_notebook(lab_server.root / "train.ipynb", seconds=TRAIN_CAP_S, stop=stop)
    open_notebook(page, lab_server, "train.ipynb")
    run_all_cells(page)
    wait_for_figures(page, 1, timeout_s=90)

    first = wait_for_growth(page, -1)
    second = wait_for_growth(page, first)
    screenshot(page, artifacts / "dashboard-early.png")
    third = wait_for_growth(page, second)
    assert first < second < third
    stop.touch()

    wait_all_cells_done(page, timeout_s=120)
    problems = [text for text in cell_errors(page) if "Traceback" in text or "NbdiagWarning" in text]
    assert not problems, problems
    points = {trace["name"]: trace["points"] for figure in figures(page) for trace in figure}
    assert set(points) >= EXPECTED_TRACES, f"missing traces: {EXPECTED_TRACES - set(points)}"
    assert all(points[name] > 0 for name in LAYER_TRACES), f"per-layer traces are empty: {points}"
    assert loss_last_step(page) >= third
    wait_for_full_width(page)
    screenshot(page, artifacts / "dashboard-done.png")
    screenshot(page, artifacts / "dashboard-widget.png", element=DASHBOARD)
    check_layer_dropdown(page)
    wait_saved_fallback(page, lab_server.root / "train.ipynb")
    wait_for_full_width(page)  # the fallback refresh displays the widget again: the new view fills the width too


def check_layer_dropdown(page) -> None:
    """The dropdown shows the highlighted layer (the first); choosing another one moves the "selected" lines."""
    assert dropdown(page, "layer").input_value() == "0 · Conv2d"
    (traces,) = figures(page)
    index = [trace["name"] for trace in traces].index("selected")
    select_option(page, "layer", OTHER_LAYER)
    wait_for_trace_change(page, 0, index, traces[index]["values"])


def saved_dashboard_bundle(page, path) -> dict:
    """Save the notebook (Ctrl+S) and return the dashboard output's mime bundle as written to disk."""
    import nbformat

    save_notebook(page)
    outputs = [output for cell in nbformat.read(path, as_version=4).cells for output in cell.get("outputs", [])]
    (bundle,) = [output["data"] for output in outputs if WIDGET_MIME in output.get("data", {})]
    return bundle


def wait_saved_fallback(page, path) -> None:
    """Once training went quiet the dashboard refreshes its PNG/text: a notebook saved then shows the trained state."""
    deadline = time.monotonic() + FALLBACK_TIMEOUT_S
    while not (bundle := saved_dashboard_bundle(page, path))["text/plain"].startswith("nbdiag dashboard: step"):
        assert time.monotonic() < deadline, f"saved fallback after {FALLBACK_TIMEOUT_S:.0f} s: {bundle['text/plain']}"
        time.sleep(1.0)
    assert "image/png" in bundle
