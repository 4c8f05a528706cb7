"""The live dashboard and the labs in marimo (issue 26): ``marimo edit --headless`` on 127.0.0.1, a notebook
training a small CNN under ``nbdiag.watch``, driven by Playwright in Debian's Chromium.

marimo displays anywidgets natively; plotly's FigureWidget is one, so nbdiag's dashboard figure, updated from the
renderer thread, grows while the training cell still runs; the init lab's controls become marimo UI elements."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # a marimo server, torch in its kernel, 20 s of training
    pytest.mark.skipif(importlib.util.find_spec("marimo") is None, reason="marimo is not installed (the dev extra)"),
]

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SECONDS = 60  # the test stops waiting as soon as it saw the figure grow twice
PLOTS = ".js-plotly-plot"

NOTEBOOK = """
import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import time

    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    import nbdiag

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    return nbdiag, nn, time, torch, x, y


@app.cell
def _(nbdiag, nn, time, torch, x, y):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=5) as mon:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            idx = torch.randint(0, len(x), (64,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss=loss)
    return (mon,)


@app.cell
def _(nbdiag):
    lab = nbdiag.labs.init_lab(depth=6, width=128, n_samples=256)
    return (lab,)


if __name__ == "__main__":
    app.run()
"""

# A trace's values as JSON (typed arrays as plain arrays).
READ_VALUES = """
(gd, trace) => {
    const plain = (v) => (v && typeof v === "object" && typeof v.length === "number") ? Array.from(v, plain) : v;
    const data = gd.data && gd.data[trace];
    return data ? JSON.stringify(plain(data.y || [])) : null;
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def marimo_server(tmp_path, artifacts):
    """``marimo edit --headless`` on the notebook, on 127.0.0.1 without a token; its log kept in the artifacts."""
    notebook = tmp_path / "train.py"
    notebook.write_text(NOTEBOOK.replace("SECONDS", str(TRAIN_SECONDS)))
    port = free_port()
    log_path = artifacts / "marimo.log"
    config = tmp_path / "config" / "marimo" / "marimo.toml"  # run every cell when the notebook opens
    config.parent.mkdir(parents=True)
    config.write_text("[runtime]\nauto_instantiate = true\n")
    (tmp_path / ".marimo.toml").write_text(config.read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "XDG_CONFIG_HOME": str(config.parents[1])}
    command = [sys.executable, "-m", "marimo", "edit", "--headless", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-token", "--skip-update-check", str(notebook)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"marimo did not start:\n{log_path.read_text(errors='replace')[-3000:]}"
                    ) from None
                time.sleep(1)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


LATEST_STEP = """(gd) => Math.max(-1, ...(gd.data || []).filter((t) => t.name === "loss")
    .flatMap((t) => Array.from(t.x || [])).filter((x) => typeof x === "number" && Number.isFinite(x)))"""


def plots(page):
    """The plotly figures on the page (Playwright's locator pierces marimo's shadow DOM)."""
    return page.locator(PLOTS)


def test_marimo_dashboard_is_live_and_the_init_lab_controls_redraw(page, marimo_server, artifacts):
    """The dashboard's figure appears while the training cell runs and its loss trace grows; the init lab shows
    its figure, and choosing ReLU in its marimo dropdown redraws it; no "Model not found" in the console."""
    url, log_path = marimo_server
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.set_viewport_size({"width": 1400, "height": 1400})
    page.set_default_timeout(120_000)  # a page redrawing a live figure on a loaded 2-core machine answers slowly
    page.goto(url, timeout=120_000)
    page.locator(PLOTS).first.wait_for(timeout=240_000)  # the dashboard, shown when watch() starts
    latest_steps = []  # the latest step the loss trace shows: the point count shrinks when the history is thinned
    deadline = time.monotonic() + TRAIN_SECONDS
    while time.monotonic() < deadline:
        latest_steps.append(plots(page).first.evaluate(LATEST_STEP))
        if len(set(latest_steps)) >= 3:
            break
        time.sleep(2)
    page.screenshot(path=str(artifacts / "marimo-dashboard-training.png"), full_page=True)
    grew = len(set(latest_steps)) >= 3 and latest_steps == sorted(latest_steps)
    assert grew, f"the dashboard did not move on while training: latest step shown {latest_steps}"

    deadline = time.monotonic() + 240
    while plots(page).count() < 2:  # the lab's figure, once training ended
        assert time.monotonic() < deadline, "the init lab's figure never appeared"
        time.sleep(1)
    lab_figure = plots(page).nth(1)
    lab_figure.scroll_into_view_if_needed()
    before = lab_figure.evaluate(READ_VALUES, 2)
    page.screenshot(path=str(artifacts / "marimo-init-lab.png"), full_page=True)
    page.locator("select").filter(has=page.locator("option", has_text="relu")).first.select_option(label="relu")
    deadline = time.monotonic() + 120
    while lab_figure.evaluate(READ_VALUES, 2) == before:
        assert time.monotonic() < deadline, "the init lab's figure did not change after choosing relu"
        time.sleep(1)
    page.screenshot(path=str(artifacts / "marimo-init-lab-relu.png"), full_page=True)
    assert not [line for line in console if "Model not found" in line], console
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
