"""The init and preprocessing labs render in JupyterLab, and the init lab's controls redraw its plots."""

from __future__ import annotations

import pytest

from nbdiag.labs.init_view import FLAT_LABEL
from tests.browser.notebooks import lab_notebook, write_notebook
from tests.browser.pages import (
    PLOTS,
    StuckFigure,
    cell_errors,
    figures,
    log_console,
    nudge_slider,
    open_notebook,
    run_all_cells,
    screenshot,
    select_option,
    type_number,
    wait_all_cells_done,
    wait_for_figures,
    wait_for_full_width,
    wait_for_trace_change,
)

pytestmark = pytest.mark.browser
# The open front-end race of docs/design.md, seen as a figure that does not follow its control: a known failure.
STUCK = pytest.mark.xfail(raises=StuckFigure, reason="a plotly view stopped receiving the kernel's edits", strict=False)

# histograms; mean, std; dLoss/dh std, dLoss/dW std; the share of flat local gradients
INIT_TRACES = ["bar", "scatter", "scatter", "scatter", "scatter", "bar"]
STD_TRACE = 2
TALL_VIEWPORT = {"width": 1400, "height": 1500}  # the whole preprocessing lab in one screenshot
PREPROCESSING_STAGES = 5  # original, zero-centered, normalized, decorrelated, whitened
IMAGE_PANELS = 5


def run_lab(page, lab_server, name: str, call: str, timeout_s: float = 90) -> None:
    """Write a one-cell notebook calling ``call``, open it, run it and wait for its output."""
    lab_notebook(lab_server.root / name, call)
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    wait_all_cells_done(page, timeout_s=timeout_s)
    assert not [text for text in cell_errors(page) if "Traceback" in text or "Error" in text], cell_errors(page)


@STUCK
def test_init_lab_renders_and_redraws(page, lab_server, artifacts):
    """init_lab(): one figure with its five traces; choosing ReLU redraws the histograms and curves."""
    run_lab(page, lab_server, "init_lab.ipynb", "nbdiag.labs.init_lab()")
    wait_for_figures(page, 1)
    (before,) = figures(page)
    assert [trace["type"] for trace in before] == INIT_TRACES
    assert all(trace["points"] > 0 for trace in before), before
    wait_for_full_width(page)
    screenshot(page, artifacts / "init-lab.png")

    select_option(page, "activation", "relu")
    wait_for_trace_change(page, 0, STD_TRACE, before[STD_TRACE]["values"])
    (after,) = figures(page)
    changed = [old["name"] for old, new in zip(before, after, strict=True) if old["values"] != new["values"]]
    assert changed == ["histogram", "mean", "std", "dLoss/dh std", "dLoss/dW std", FLAT_LABEL], changed
    assert "relu" in page.locator(".widget-html").first.inner_text()
    screenshot(page, artifacts / "init-lab-relu.png")


def test_preprocessing_lab_renders(page, lab_server, artifacts):
    """preprocessing_lab(): the stages figure (train/test clouds + a covariance heatmap each) and the image panels."""
    page.set_viewport_size(TALL_VIEWPORT)
    run_lab(page, lab_server, "preprocessing_lab.ipynb", "nbdiag.labs.preprocessing_lab()")
    wait_for_figures(page, 2)
    stages, images = figures(page)
    assert [trace["type"] for trace in stages] == ["scatter", "scatter", "heatmap"] * PREPROCESSING_STAGES
    assert [trace["type"] for trace in images] == ["heatmap"] * IMAGE_PANELS
    assert all(trace["points"] > 0 for trace in stages + images)
    wait_for_full_width(page)
    screenshot(page, artifacts / "preprocessing-lab.png")


PREDICTIONS_CELL = """import nbdiag
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(8, 3)
lab = nbdiag.track_predictions(model, (torch.randn(12, 8), torch.randint(0, 3, (12,))))
lab.record(0)
with torch.no_grad():
    model.weight.add_(0.5)
lab.record(10)
lab.show()"""


# lab -> (the call, how to move one of its controls, the figure and trace that control redraws)
LAB_CONTROLS = {
    "init": ("nbdiag.labs.init_lab(depth=6)", lambda page: select_option(page, "activation", "relu"), 0, STD_TRACE),
    "preprocessing": ("nbdiag.labs.preprocessing_lab()", lambda page: nudge_slider(page, "correlation"), 0, 0),
    "activations": ("nbdiag.labs.activations_lab()", lambda page: nudge_slider(page, "input mean"), 0, -1),
    "search": ("nbdiag.labs.search_lab(budget=4)", lambda page: type_number(page, "seed", 3), 0, 3),
    "predictions": (None, lambda page: nudge_slider(page, "step", presses=1), 0, 2),
}


@pytest.mark.slow  # five notebooks, each a kernel importing torch
@pytest.mark.timeout(900)
@STUCK
@pytest.mark.parametrize("name", list(LAB_CONTROLS))
def test_each_lab_control_redraws_its_figure_without_an_error(page, lab_server, artifacts, name):
    """Every lab with controls: moving one redraws the figure, and neither the browser console, the kernel (the
    server log) nor JupyterLab's log console (where a comm handler's traceback lands) reports an error, such as
    plotly's echo ValueError."""
    call, move, figure, trace = LAB_CONTROLS[name]
    console = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    log_start = len(lab_server.log_path.read_text(errors="replace"))
    if call is None:  # a tracker that recorded two steps, shown
        write_notebook(lab_server.root / f"{name}_lab.ipynb", [PREDICTIONS_CELL])
        open_notebook(page, lab_server, f"{name}_lab.ipynb")
        run_all_cells(page)
        wait_all_cells_done(page, timeout_s=600)
    else:
        run_lab(page, lab_server, f"{name}_lab.ipynb", call, timeout_s=600)
    wait_for_figures(page, figure + 1, timeout_s=300)
    page.wait_for_function(  # drawn with its data (a figure edited before its view existed came up empty)
        f"() => {{ const gd = document.querySelectorAll({PLOTS!r})[{figure}]; "
        "return gd && gd.data && gd.data.some((t) => (t.x || t.y || []).length > 0); }",
        timeout=120_000,
    )
    before = figures(page)[figure]
    trace = trace % len(before)
    move(page)
    wait_for_trace_change(page, figure, trace, before[trace]["values"], timeout_s=300)
    screenshot(page, artifacts / f"lab-control-{name}.png")
    page.wait_for_timeout(1000)  # the front end's echo of the redraw reaches the kernel
    log = lab_server.log_path.read_text(errors="replace")[log_start:]
    assert "Traceback" not in log and "ValueError" not in log, log[-3000:]
    assert not console, console
    assert log_console(page) == []
