"""Where no widget front end runs (nbconvert HTML opened offline), the dashboard's PNG must show instead."""

from __future__ import annotations

import copy

import pytest

from tests.browser.jupyter import write_kernel_spec
from tests.browser.notebooks import training_notebook

pytestmark = pytest.mark.browser

TRAIN_SECONDS = 4
PNG_MIME = "image/png"
OUTPUT_IMAGES = ".jp-OutputArea-output img"
# naturalWidth of every output image that finished loading (0 for a broken one)
_IMAGE_WIDTHS = "(imgs) => imgs.map((img) => img.complete ? img.naturalWidth : 0)"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The training notebook run headless with nbclient's defaults, as ``nbconvert --execute`` or papermill do."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    base = tmp_path_factory.mktemp("nbclient")
    write_kernel_spec(base / "jupyter" / "kernels" / "python3")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(base / "jupyter"))
        env.setenv("IPYTHONDIR", str(base / "ipython"))
        env.setenv("MPLCONFIGDIR", str(base / "matplotlib"))
        notebook = nbformat.read(training_notebook(base / "train.ipynb", seconds=TRAIN_SECONDS), as_version=4)
        nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3").execute(cwd=str(base))
    return notebook


def to_html(notebook, path):
    """Convert with nbconvert's HTMLExporter (default lab template) and write ``path``."""
    nbconvert = pytest.importorskip("nbconvert")
    body, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    path.write_text(body, encoding="utf-8")
    return path


def dashboard_outputs(notebook) -> list[dict]:
    """Outputs that carry the dashboard's widget view."""
    return [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]


def open_html(page, path, screenshot):
    """Open the HTML file, scroll to the first output image (if any), screenshot; return the images' widths."""
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    images = page.locator(OUTPUT_IMAGES)
    if images.count():
        images.first.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot))
    print(f"screenshot: {screenshot}")
    return images.evaluate_all(_IMAGE_WIDTHS)


def test_display_carries_png_and_text(executed):
    """The dashboard's display bundle: widget view + image/png + text/plain."""
    (output,) = dashboard_outputs(executed)
    assert set(output["data"]) >= {PNG_MIME, "text/plain"}


def test_saved_fallback_shows_trained_state(executed):
    """The saved text (and the PNG drawn with it) shows the record after training, not the empty one."""
    (output,) = dashboard_outputs(executed)
    assert "nothing recorded yet" not in output["data"]["text/plain"], (
        "the saved text/PNG fallback still shows the state at display time (before training):\n"
        + output["data"]["text/plain"]
    )


def test_png_fallback_in_html(executed, page, tmp_path, artifacts):
    """Without saved widget state (JupyterLab's default when saving), the HTML shows the PNG, > 300 px wide."""
    notebook = copy.deepcopy(executed)
    notebook.metadata.pop("widgets", None)
    widths = open_html(page, to_html(notebook, tmp_path / "train.html"), artifacts / "notebook-html-fallback.png")
    assert widths, "no <img> in the converted notebook's outputs"
    assert max(widths) > 300, f"output images are {widths} px wide"


@pytest.mark.xfail(
    reason="nbclient stores the widget state by default and nbconvert then prefers the widget view over image/png; "
    "offline (no unpkg.com) the dashboard is blank in the HTML",
    strict=False,
)
def test_png_fallback_in_html_with_widget_state(executed, page, tmp_path, artifacts):
    """With nbclient's saved widget state, the HTML should still show the dashboard offline."""
    path = to_html(executed, tmp_path / "train-widget-state.html")
    widths = open_html(page, path, artifacts / "notebook-html-widget-state.png")
    assert widths and max(widths) > 300, "the dashboard is not visible: no output image"
