"""Notebooks the browser tests open, generated with nbformat (no stale files in the repository)."""

from __future__ import annotations

from pathlib import Path

from tests.browser.jupyter import KERNEL_NAME

SETUP = """\
import os
import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

import nbdiag

torch.manual_seed(0)
torch.set_num_threads(1)
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8), values 0..16
x = (x - x.mean()) / x.std()
y = torch.tensor(digits.target)
model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)"""

TRAIN = """\
mon = nbdiag.watch(model, opt, every={every}, fixed_batch=(x[:32], y[:32]), num_classes=10)
deadline = time.perf_counter() + {seconds}  # no sleeping: as many steps as fit
stop = {stop!r}  # a file the test creates once it has seen what it waits for (None: train until the deadline)
with mon:
    while time.perf_counter() < deadline and not (stop and os.path.exists(stop)):
        idx = torch.randint(0, len(x), (64,))
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss=loss, acc=(logits.argmax(1) == y[idx]).float().mean())
print(f"trained {{mon.current_step}} steps")"""


def write_notebook(path: Path, sources: list[str]) -> Path:
    """Write a notebook of code cells whose kernel spec is already set (so no "Select Kernel" dialog)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.write(notebook, path)
    return path


def training_notebook(path: Path, seconds: float, every: int = 5, stop: Path | None = None) -> Path:
    """Train a small CNN on scikit-learn's digits under ``nbdiag.watch`` (dashboard shown) for ``seconds``, or
    until the file ``stop`` exists: a test that watches training grow creates it when it has seen enough, so a
    slow machine trains longer rather than failing (``seconds`` then only guards against a hang)."""
    stop_at = str(stop) if stop is not None else None
    return write_notebook(path, [SETUP, TRAIN.format(seconds=seconds, every=every, stop=stop_at)])


def lab_notebook(path: Path, call: str) -> Path:
    """One cell that calls a lab, e.g. ``nbdiag.labs.init_lab()`` (the lab shows its own widget)."""
    return write_notebook(path, [f"import nbdiag\n\nlab = {call}"])
