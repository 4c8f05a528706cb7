"""A 340-layer model in JupyterLab (issue 21): the 48-block GPT's dashboard is drawn by block and role, and its
"histograms" control switches the histogram panel to another role.

The screenshot ``test-artifacts/browser/dashboard-deep-gpt.png`` is the README's deep-model image
(``python docs/make_hero.py --browser`` runs this test and copies it to ``docs/img/dashboard-deep-gpt.png``).
Opt-in (``NBDIAG_DEEP_SCREENSHOT=1``): it takes about 2.5 minutes on a 2-core machine, training 340 hooked layers
in the kernel, more than the suite's budget for one test; the same views are unit-tested in
``tests/test_deep_views.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.notebooks import write_notebook
from tests.browser.pages import (
    cell_errors,
    dropdown,
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

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.environ.get("NBDIAG_DEEP_SCREENSHOT") != "1",
        reason="opt-in (NBDIAG_DEEP_SCREENSHOT=1, or python docs/make_hero.py --browser): ~2.5 min",
    ),
]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
VIEWPORT = {"width": 1400, "height": 1900}  # the controls and the 4-row dashboard in one screenshot
DASHBOARD = ".jp-OutputArea-output:has(.js-plotly-plot)"
SCREENSHOT = "dashboard-deep-gpt.png"
TRAIN = f"""\
import sys
import torch
import nbdiag

sys.path.insert(0, {str(BENCHMARKS)!r})
from overhead_models import GPT

torch.manual_seed(0)
torch.set_num_threads(1)
model = GPT(vocab=64, context=32, d=64, heads=4, layers=48)  # 340 hooked layers
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
mon = nbdiag.watch(model, opt, every=2)  # 20 sampled steps
with mon:
    for step in range(40):
        idx = torch.randint(0, 64, (4, 32))
        loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss=loss)"""
SELECT = 'mon.dashboard(layer="blocks.30.attn.qkv");'


def test_a_48_block_gpt_is_drawn_by_block_and_role(page, lab_server, artifacts):
    page.set_viewport_size(VIEWPORT)
    write_notebook(lab_server.root / "gpt.ipynb", [TRAIN, SELECT])
    open_notebook(page, lab_server, "gpt.ipynb")
    run_all_cells(page)
    wait_for_figures(page, 1, timeout_s=120)
    wait_all_cells_done(page, timeout_s=300)
    problems = [text for text in cell_errors(page) if "Traceback" in text or "NbdiagWarning" in text]
    assert not problems, problems
    (traces,) = figures(page)
    names = [trace["name"] for trace in traces]
    assert {"ln1", "attn.qkv", "mlp.1 · GELU", "log10 activation std", "log10 update / weight ratio"} <= set(names)
    assert "std" not in names and "gradient norm" not in names  # no per-layer sawtooth
    assert "stuck unit fraction" not in names  # GELUs: no empty "dead or saturated units over time" panel
    # the lines over time are one per role and the selected layer: no grey per-layer lines (340 of them)
    assert names.count("all layers") == 1  # the ridgelines' grey only
    assert {"blocks.30.attn.qkv · Linear", "blocks.30.attn.qkv.weight · Linear", "line names"} <= set(names)
    histogram = names.index("all layers")
    before = traces[histogram]["values"]
    assert dropdown(page, "histograms").input_value() == "the selected layer's role"
    select_option(page, "histograms", "role mlp.1")
    wait_for_trace_change(page, 0, histogram, before)
    wait_for_full_width(page)
    screenshot(page, artifacts / SCREENSHOT, element=DASHBOARD)
