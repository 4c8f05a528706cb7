"""The init and preprocessing labs render in JupyterLab, and the init lab's controls redraw its plots."""

from __future__ import annotations

import pytest

from tests.browser.notebooks import lab_notebook
from tests.browser.pages import (
    cell_errors,
    figures,
    open_notebook,
    run_all_cells,
    screenshot,
    select_option,
    wait_all_cells_done,
    wait_for_figures,
    wait_for_full_width,
    wait_for_trace_change,
)

pytestmark = pytest.mark.browser

INIT_TRACES = ["bar", "scatter", "scatter", "scatter", "scatter"]  # histograms; mean, std; dLoss/dh, dLoss/dW std
STD_TRACE = 2
TALL_VIEWPORT = {"width": 1400, "height": 1500}  # the whole preprocessing lab in one screenshot
PREPROCESSING_STAGES = 5  # original, zero-centered, normalized, decorrelated, whitened
IMAGE_PANELS = 5


def run_lab(page, lab_server, name: str, call: str) -> None:
    """Write a one-cell notebook calling ``call``, open it, run it and wait for its output."""
    lab_notebook(lab_server.root / name, call)
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    wait_all_cells_done(page, timeout_s=90)
    assert not [text for text in cell_errors(page) if "Traceback" in text or "Error" in text], cell_errors(page)


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
    assert changed == ["histogram", "mean", "std", "dLoss/dh std", "dLoss/dW std"], changed
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
