"""The dashboard is live wherever a notebook runs (issue 12), checked in a real browser.

- JupyterLab with the widget manager and anywidget disabled, as VS Code and Colab give plotly's FigureWidget in
  practice, and ``VSCODE_PID`` in the kernel's environment: ``watch()`` with no display argument takes the inline
  path; the plotly figure must change while the training cell still runs, and no "Error displaying widget" shows.
- Notebook 7 (``jupyter notebook``) with widgets: the widget path is live.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.browser.jupyter import WIDGET_EXTENSIONS, start_lab
from tests.browser.notebooks import training_notebook
from tests.browser.pages import (
    cell_errors,
    cell_prompt,
    figures,
    open_notebook,
    run_all_cells,
    screenshot,
    wait_all_cells_done,
    wait_for_figures,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]  # a hang guard: a loaded machine trains longer

TRAIN_CAP_S = 240  # a hang guard: training ends when the test has seen the figure change (the stop file)
GROWTH_TIMEOUT_S = 90.0  # a hang guard: the inline path refreshes every few seconds (its CPU budget; more on a
# loaded machine), and each wait ends as soon as the trace grew
TRAIN_CELL = 1
TALL_VIEWPORT = {"width": 1400, "height": 2200}
INLINE_OUTPUT = '.jp-OutputArea-output[data-mime-type="text/html"]:has(.nbdiag-inline)'
WIDGET_DASHBOARD = ".jp-OutputArea-output .nbdiag-dashboard"  # the ipywidgets VBox (its class name)


def loss_last_step(page) -> float:
    """The last step the loss trace reaches (-1 while not drawn)."""
    traces = [trace for figure in figures(page) for trace in figure if trace["name"] == "loss"]
    return max((trace["last_x"] for trace in traces if trace["last_x"] is not None), default=-1)


def wait_for_growth(page, step: float) -> float:
    """Wait until the loss trace reaches past ``step`` while the training cell still runs."""
    deadline = time.monotonic() + GROWTH_TIMEOUT_S
    while time.monotonic() < deadline:
        now = loss_last_step(page)
        assert cell_prompt(page, TRAIN_CELL) == "[*]:", "training ended before the dashboard changed"
        if now > step:
            return now
        time.sleep(0.5)
    raise AssertionError(f"the loss trace stayed at step {step} for {GROWTH_TIMEOUT_S:.0f} s of training")


def error_texts(page) -> list[str]:
    body = page.locator("body").inner_text()
    return [line for line in body.splitlines() if "Error displaying widget" in line or "Traceback" in line]


def train_and_watch(page, server, artifacts, name: str) -> list[float]:
    """Run the training notebook; return the loss trace's last step at two times while training runs."""
    page.set_viewport_size(TALL_VIEWPORT)
    stop = server.root / "stop-training"
    training_notebook(server.root / "train.ipynb", seconds=TRAIN_CAP_S, stop=stop)
    open_notebook(page, server, "train.ipynb")
    run_all_cells(page)
    wait_for_figures(page, 1, timeout_s=120)
    first = wait_for_growth(page, -1)
    screenshot(page, artifacts / f"{name}-early.png")
    second = wait_for_growth(page, first)
    screenshot(page, artifacts / f"{name}-training.png")
    stop.touch()
    wait_all_cells_done(page, timeout_s=120)
    screenshot(page, artifacts / f"{name}-done.png")
    return [first, second]


@pytest.fixture
def server(tmp_path_factory, request, artifacts):
    """A server per test: its front-end configuration is the test's subject (request it before ``page``, so the
    page's failure screenshot is taken while the server still runs)."""
    servers = []

    def start(**kwargs):
        servers.append(start_lab(tmp_path_factory.mktemp("frontend"), **kwargs))
        return servers[-1]

    yield start
    for running in servers:
        running.stop()
        if request.session.testsfailed:
            (artifacts / f"{request.node.name}.log").write_text(running.log_path.read_text(errors="replace"))


def test_inline_path_is_live_without_a_widget_manager(server, page, artifacts):
    lab = server(disabled_extensions=WIDGET_EXTENSIONS, kernel_env={"VSCODE_PID": "4242"})
    steps = train_and_watch(page, lab, artifacts, "inline-vscode-jupyterlab")
    assert steps[0] < steps[1]
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    assert set(WIDGET_EXTENSIONS) <= set(config.get("disabledExtensions", [])), config.get("disabledExtensions")
    assert page.locator(INLINE_OUTPUT).count() == 1  # one output, updated in place
    assert page.locator(WIDGET_DASHBOARD).count() == 0
    assert not error_texts(page), error_texts(page)
    problems = [text for text in cell_errors(page) if "Traceback" in text or "NbdiagWarning" in text]
    assert not problems, problems
    assert "mon.dashboard(layer=" in page.locator(INLINE_OUTPUT).inner_text()  # the controls, as arguments


def test_notebook7_widget_path_is_live(server, page, artifacts):
    notebook = server(app="notebook")
    steps = train_and_watch(page, notebook, artifacts, "widget-notebook7")
    assert steps[0] < steps[1]
    assert page.locator(WIDGET_DASHBOARD).count() == 1
    assert page.locator(f"{WIDGET_DASHBOARD} .widget-dropdown:visible").count() == 1  # the controls are live widgets
    assert not error_texts(page), error_texts(page)
