"""Notebooks 01 and 02 run top to bottom in JupyterLab; every dashboard they show is screenshotted into
test-artifacts/browser/ (the clean quickstart, a forgotten zero_grad, lr=50, dead ReLUs), and the dead-ReLU
dashboard shows its dead units in the banner and in the units panel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.pages import figures, run_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # each notebook runs for minutes in JupyterLab

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DASHBOARD = ".jp-OutputArea-output:has(.nbdiag-dashboard)"
NOTEBOOK_02 = ("nb02-zero-grad.png", "nb02-lr50.png", "nb02-dead-relu.png")  # its displayed dashboards, in order


def shoot_dashboards(page, artifacts: Path, names: tuple[str, ...]) -> list[str]:
    """Screenshot each dashboard output (scrolled into view) as ``names``; return their texts."""
    dashboards = page.locator(DASHBOARD)
    assert dashboards.count() == len(names)
    texts = []
    for i, name in enumerate(names):
        dashboard = dashboards.nth(i)
        dashboard.scroll_into_view_if_needed()
        dashboard.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for(state="attached", timeout=120_000)
        page.wait_for_timeout(3000)  # the figure is fitted to the output area's width after its first draw
        dashboard.screenshot(path=str(artifacts / name))
        texts.append(dashboard.inner_text())
    return texts


def test_quickstart_dashboard_is_clean_with_the_findings_on_top(page, lab_server, artifacts):
    run_notebook(page, lab_server, NOTEBOOKS / "01_quickstart.ipynb", timeout_s=420)
    (text,) = shoot_dashboards(page, artifacts, ("nb01-quickstart.png",))
    assert "fail" not in text.split("\n")[:6]
    screenshot(page, artifacts / "nb01-quickstart-page.png")


def test_bugs_notebook_dashboards_show_their_bugs(page, lab_server, artifacts):
    run_notebook(page, lab_server, NOTEBOOKS / "02_37_reasons_live.ipynb", timeout_s=600)
    zero_grad, lr50, dead = shoot_dashboards(page, artifacts, NOTEBOOK_02)
    assert "train.grad_accumulation" in zero_grad
    assert "train.update_ratio" in lr50
    assert "act.dead_units" in dead and "64 of 64 units (100.0%) never fired" in dead
    dead_units = [t for t in figures(page)[2] if t["name"] == "dead units"]
    assert max(v for v in json.loads(dead_units[0]["values"]) if v is not None) == 1.0  # the hidden ReLU: all dead
