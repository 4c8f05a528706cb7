"""A dashboard displayed before the record has data (``open_run(run_dir, follow=True).dashboard()`` in notebook 07,
a ``watch`` dashboard shown before the first step) ends, after data arrived and the dashboard was displayed again,
with the browser's plotly.js figure equal to the kernel's figure: every trace's name and x, and the units-by-depth
panel's category axis holding exactly the layer labels (it once also held bare categories "0"…"4", with the
trace names gone: the front end's echo had removed them from the kernel's figure; see
:func:`nbdiag.views.plotly_widget.figure_widget_class`)."""

from __future__ import annotations

import json
import time

import pytest

from tests.browser.notebooks import write_notebook
from tests.browser.pages import PLOTS, cell_errors, cell_prompt, open_notebook, run_cell, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]  # ~40 s; the rest is a hang guard

WAIT_S = 60.0  # a hang guard: each wait ends as soon as the page shows what it waits for
DASHBOARD = ".jp-OutputArea-output:has(.js-plotly-plot)"
TALL_VIEWPORT = {"width": 1400, "height": 2200}

SETUP = """\
import json

import torch
from torch import nn
from torch.nn import functional as F

import nbdiag

torch.manual_seed(0)
torch.set_num_threads(1)
x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
mon = nbdiag.watch(model, opt, every=1, num_classes=10, display=False)


def train(steps):
    for _ in range(steps):
        index = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss=loss)


dashboard = mon.dashboard(display="widget")
dashboard.renderer.budget = 1.0  # each refresh drawn at once (by default it waits 125x its cost)
dashboard  # shown before the first step: empty panels"""

TRAIN = "train({steps})"

# Closing the monitor draws the final state and displays the widget again (a new view, from the kernel's figure).
FINISH = """\
mon.close()
number = lambda e: e if isinstance(e, str) else None if e != e else float(e)  # NaN (a gap) as null
plain = lambda v: None if v is None else [number(e) for e in v]
figure = mon.dashboard().plot
print("EXPECTED", json.dumps([{"name": t.name, "x": plain(t.x)} for t in figure.data]))"""

# Each drawn trace's name and x as plotly.js holds them, and the category axis of the units-by-depth panel.
READ_FIGURE = """
(gd) => {
    const plain = (v) => (v && typeof v === "object" && typeof v.length === "number") ? Array.from(v, plain)
        : (typeof v === "number" && isNaN(v)) ? null : v;
    const traces = gd.data.map((t) => ({name: t.name === undefined ? null : t.name, x: t.x ? plain(t.x) : null}));
    const zero = gd.data.find((t) => t.name === "zero fraction of outputs");
    const axis = zero ? gd._fullLayout[(zero.xaxis || "x").replace("x", "xaxis")] : null;
    return {traces, categories: axis ? Array.from(axis._categories || []) : null, fresh: !gd.dataset.old};
}
"""

LAST_LOSS_STEP = """
(gd) => {
    const loss = gd.data.find((t) => t.name === "loss");
    return loss && loss.x && loss.x.length ? Number(loss.x[loss.x.length - 1]) : -1;
}
"""


def wait_cell(page, index: int) -> None:
    """Wait until code cell ``index`` has run (a number in its prompt)."""
    deadline = time.monotonic() + WAIT_S
    while not cell_prompt(page, index)[1:-2].isdigit():
        assert time.monotonic() < deadline, f"cell {index} still shows {cell_prompt(page, index)}"
        time.sleep(0.25)


def wait_loss_step(page, step: int) -> None:
    """Wait until the displayed figure's loss trace reaches ``step`` (the refresh was drawn, its echo sent)."""
    deadline = time.monotonic() + WAIT_S
    while page.locator(PLOTS).first.evaluate(LAST_LOSS_STEP) < step:
        assert time.monotonic() < deadline, f"the loss trace did not reach step {step} in {WAIT_S:.0f} s"
        time.sleep(0.25)


def test_dashboard_displayed_before_data_ends_equal_to_the_kernel_figure(page, lab_server, artifacts):
    page.set_viewport_size(TALL_VIEWPORT)
    write_notebook(lab_server.root / "before.ipynb", [SETUP, TRAIN.format(steps=3), TRAIN.format(steps=3), FINISH])
    open_notebook(page, lab_server, "before.ipynb")
    run_cell(page, 0)
    page.locator(PLOTS).first.wait_for(timeout=WAIT_S * 1000)
    run_cell(page, 1)  # data arrives: the panels change, the figure is laid out anew in the same widget
    wait_loss_step(page, 2)
    run_cell(page, 2)  # more data: an update in place
    wait_loss_step(page, 5)
    page.locator(PLOTS).first.evaluate("(gd) => { gd.dataset.old = '1'; }")
    run_cell(page, 3)
    wait_cell(page, 3)
    assert not [text for text in cell_errors(page) if "Traceback" in text]
    (line,) = [ln for ln in page.locator(".jp-OutputArea-output").all_inner_texts() if ln.startswith("EXPECTED")]
    expected = json.loads(line.removeprefix("EXPECTED "))

    deadline = time.monotonic() + WAIT_S
    while not (shown := page.locator(PLOTS).first.evaluate(READ_FIGURE))["fresh"] or len(shown["traces"]) < len(
        expected
    ):
        assert time.monotonic() < deadline, "the dashboard was not displayed again after close()"
        time.sleep(0.25)
    page.wait_for_timeout(1000)  # the new view fits its width
    screenshot(page, artifacts / "dashboard-before-data.png", element=DASHBOARD)
    shown = page.locator(PLOTS).first.evaluate(READ_FIGURE)

    assert [t["name"] for t in shown["traces"]] == [t["name"] for t in expected]
    pairs = zip(shown["traces"], expected, strict=True)
    wrong_x = [(t["name"], drawn["x"], t["x"]) for drawn, t in pairs if drawn["x"] != t["x"]]
    assert not wrong_x, f"(trace, x in the browser, x in the kernel): {wrong_x}"
    (zero,) = [t for t in expected if t["name"] == "zero fraction of outputs"]
    assert shown["categories"] == zero["x"] == ["0 · Linear", "1 · ReLU", "2 · Linear", "3 · Tanh", "4 · Linear"]
