"""One front-end detector decides how views are shown: Colab and VS Code (simulated) get the inline path, other
Jupyter front ends the widget, scripts nothing; NBDIAG_DISPLAY and display= override; bad values are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import nbdiag
from nbdiag import environment
from nbdiag.environment import auto_display, front_end, in_kernel, resolve_display
from tests.fake_kernel import simulate_kernel

ROOT = Path(__file__).resolve().parents[1]
VALID_WORDS = ('"widget"', '"inline"', '"static"', "False", "True", "None")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv("VSCODE_PID", raising=False)
    monkeypatch.delenv("NBDIAG_DISPLAY", raising=False)


def test_a_script_is_no_kernel_and_shows_nothing(monkeypatch):
    monkeypatch.setenv("NBDIAG_DISPLAY", "inline")  # a machine-wide default does not make scripts display
    monkeypatch.setenv("VSCODE_PID", "1")  # nor does a script run from VS Code's terminal
    assert not in_kernel()
    assert front_end() is None
    assert resolve_display(None) is False
    assert resolve_display(True) == "static"  # asked to show anyway: the PNG and text


@pytest.mark.parametrize(("front", "expected"), [("colab", "inline"), ("vscode", "inline"), ("jupyter", "widget")])
def test_auto_chooses_by_front_end(monkeypatch, front, expected):
    simulate_kernel(monkeypatch, front)
    assert front_end() == front
    assert resolve_display(None) == expected
    assert resolve_display(True) == expected


def test_colab_wins_over_vscode(monkeypatch):
    """Colab opened from VS Code's Colab extension still renders like Colab."""
    simulate_kernel(monkeypatch, "colab")
    monkeypatch.setenv("VSCODE_PID", "1")
    assert front_end() == "colab"


def test_widget_packages_missing_falls_back_to_inline(monkeypatch):
    simulate_kernel(monkeypatch, "jupyter")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets would fail
    assert auto_display() == "inline"
    monkeypatch.setitem(sys.modules, "plotly", None)
    assert auto_display() == "static"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("static", "static"), ("Inline", "inline"), (" widget ", "widget"), ("off", False), ("0", False)]
    + [("auto", "widget")],
)
def test_nbdiag_display_sets_the_default(monkeypatch, value, expected):
    simulate_kernel(monkeypatch, "jupyter")
    monkeypatch.setenv("NBDIAG_DISPLAY", value)
    assert resolve_display(None) == expected


def test_display_argument_overrides_environment_and_front_end(monkeypatch):
    simulate_kernel(monkeypatch, "vscode")
    monkeypatch.setenv("NBDIAG_DISPLAY", "static")
    assert resolve_display("widget") == "widget"
    assert resolve_display(False) is False
    assert resolve_display(None) == "static"


@pytest.mark.parametrize("value", ["png", "Widget", 1, 0, "", ["inline"]])
def test_bad_display_values_list_the_valid_ones(value):
    with pytest.raises(ValueError, match="got display=") as raised:
        resolve_display(value)
    assert all(word in str(raised.value) for word in VALID_WORDS), str(raised.value)


def test_bad_environment_value_lists_the_valid_ones(monkeypatch):
    simulate_kernel(monkeypatch, "jupyter")
    monkeypatch.setenv("NBDIAG_DISPLAY", "plotly")
    expected = "NBDIAG_DISPLAY='plotly', expected widget, inline, static, marimo, off or auto; try"
    with pytest.raises(ValueError, match=expected):
        resolve_display(None)


def test_watch_rejects_a_bad_display_before_attaching_anything():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(ValueError, match="got display='inlined'"):
        nbdiag.watch(model, display="inlined")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with nbdiag.watch(model, display=False) as mon:  # the model can be watched right after
        model(torch.randn(2, 4)).sum().backward()
        mon.step()
    assert mon.layers


def test_labs_reject_bad_display_values():
    with pytest.raises(ValueError, match="got display='yes'"):
        nbdiag.labs.activations_lab(display="yes")


def test_detector_imports_only_the_standard_library():
    source = Path(environment.__file__).read_text(encoding="utf-8")
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "importlib.util", "os", "sys", "typing"}, imports


def test_marimo_is_a_front_end_never_imported_outside_it():
    """marimo is recognised only where its runtime runs a notebook; nbdiag never imports it elsewhere."""
    code = (
        "import sys, nbdiag\n"
        "from nbdiag import environment\n"
        "lab = nbdiag.labs.activations_lab(display=False)\n"
        "assert environment.front_end() is None and not environment.in_marimo()\n"
        "assert 'marimo' not in sys.modules, 'marimo was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_marimo_running_a_notebook_gets_its_own_path(monkeypatch):
    """Inside a marimo notebook (no IPython kernel) views are shown, along marimo's path; "widget" means it."""
    marimo = types.ModuleType("marimo")
    marimo.running_in_notebook = lambda: True
    monkeypatch.setitem(sys.modules, "marimo", marimo)
    assert not in_kernel()
    assert front_end() == "marimo"
    assert resolve_display(None) == "marimo"
    assert resolve_display("widget") == "marimo"
    assert resolve_display("inline") == "inline"
    marimo.running_in_notebook = lambda: False  # marimo imported by a script: not a notebook
    assert front_end() is None and resolve_display(None) is False
