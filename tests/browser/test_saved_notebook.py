"""Issue 20: an executed notebook, saved and reopened in JupyterLab after its kernel is gone, shows the dashboard's
and the lab's pictures, not "Error displaying widget: model not found"; while the kernel lives, the widgets show and
their saved views stay empty."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.browser.notebooks import SETUP, TRAIN, write_notebook
from tests.browser.pages import (
    cell_errors,
    open_notebook,
    run_all_cells,
    save_notebook,
    screenshot,
    wait_all_cells_done,
    wait_for_figures,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # one notebook run, saved, its kernel shut down, reopened

NAME = "saved.ipynb"
TRAIN_SECONDS = 3
EVERY = 5
LAB = "lab = nbdiag.labs.init_lab(depth=4, width=64, n_samples=128)"
WIDGET_OUTPUTS = 2  # the dashboard and the lab
SAVED_VIEWS = ".nbdiag-saved-view img"
ERROR = "Error displaying widget"
# naturalWidth of each saved-view image that is laid out (0 while broken or hidden)
_SHOWN_WIDTHS = "(imgs) => imgs.map((img) => (img.complete && img.offsetParent !== null) ? img.naturalWidth : 0)"


def shut_down_kernels(lab_server) -> None:
    """Delete every session (and so its kernel) through the server's REST API, as "Shut Down All" does."""
    headers = {"Authorization": f"token {lab_server.token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{lab_server.url}/api/sessions", headers=headers)) as answer:
        sessions = json.load(answer)
    for session in sessions:
        request = urllib.request.Request(f"{lab_server.url}/api/sessions/{session['id']}", headers=headers)
        request.method = "DELETE"
        urllib.request.urlopen(request).close()


def check_saved_state(path) -> None:
    """The saved dashboard (its text, its PNG, its saved view's PNG) shows the last sampled step, not an earlier
    state: the final redraw reached the notebook."""
    import nbformat

    outputs = nbformat.read(path, as_version=4).cells[1].outputs
    trained = int(re.search(r"trained (\d+) steps", "".join(o.get("text", "") for o in outputs)).group(1))
    widget, saved_view = [o.data for o in outputs if o.output_type == "display_data"]
    shown = int(re.match(r"nbdiag dashboard: step (\d+)", widget["text/plain"]).group(1))
    assert trained - EVERY <= shown < trained, f"trained {trained} steps, the saved dashboard shows step {shown}"
    assert widget["image/png"].strip() in saved_view["application/javascript"], "the saved view's PNG is not the last"


def test_a_saved_notebook_reopened_without_its_kernel_shows_pictures_not_errors(page, lab_server, artifacts):
    write_notebook(lab_server.root / NAME, [SETUP, TRAIN.format(seconds=TRAIN_SECONDS, every=EVERY, stop=None), LAB])
    open_notebook(page, lab_server, NAME)
    run_all_cells(page)
    wait_all_cells_done(page, timeout_s=300)
    assert cell_errors(page) == []
    wait_for_figures(page, WIDGET_OUTPUTS, timeout_s=120)
    assert page.locator(SAVED_VIEWS).count() == 0, "a saved view shows while its widget is live"
    save_notebook(page)
    check_saved_state(lab_server.root / NAME)

    shut_down_kernels(lab_server)
    page.goto("about:blank")
    open_notebook(page, lab_server, NAME)  # a fresh kernel: none of the saved widget models exists in it
    page.wait_for_function(
        f"(n) => document.querySelectorAll({SAVED_VIEWS!r}).length >= n", arg=WIDGET_OUTPUTS, timeout=60_000
    )
    widths = page.locator(SAVED_VIEWS).evaluate_all(_SHOWN_WIDTHS)
    screenshot(page, artifacts / "saved-notebook-reopened.png")
    assert len(widths) == WIDGET_OUTPUTS and all(width > 100 for width in widths), widths
    shown_errors = page.locator(f".jp-OutputArea-output:visible:has-text({ERROR!r})")
    assert shown_errors.count() == 0, shown_errors.all_inner_texts()
