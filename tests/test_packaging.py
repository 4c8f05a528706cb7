"""Packaging truth: the core trains, records and writes a run with every notebook package made unimportable, and
the public API (lazy names included) is what ``dir(nbdiag)`` and ``__all__`` say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nbdiag

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_PACKAGES = ("ipywidgets", "plotly", "matplotlib", "anywidget", "IPython")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = set(sys.argv[2].split(","))


    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked by the test")
            return None


    sys.meta_path.insert(0, Blocker())

    import torch

    import nbdiag

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    with nbdiag.watch(model, opt, every=2, dense=2, display=False, run_dir=sys.argv[1]) as mon:
        for _ in range(6):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            mon.step(loss=loss)
    run = nbdiag.open_run(sys.argv[1])
    imported = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    try:
        import plotly
        blocker_works = False
    except ImportError:
        blocker_works = True
    print(json.dumps({
        "blocker_works": blocker_works,
        "steps": sorted(set(mon.frame()["step"])),
        "run_steps": sorted(set(run.frame()["step"])),
        "layers": run.layers,
        "summary_rows": len(mon.summary()),
        "errors": [str(error) for error in mon.errors],
        "imported": imported,
        "nbdiag_modules": sorted(m for m in sys.modules if m.startswith("nbdiag.")),
    }))
    """
)


@pytest.mark.slow  # a fresh interpreter imports torch: ~25 s on a loaded 2-core machine
def test_core_runs_with_notebook_packages_blocked(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run"), ",".join(NOTEBOOK_PACKAGES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["blocker_works"]
    assert out["imported"] == []  # not one notebook or plotting module was loaded
    assert out["errors"] == []
    assert out["steps"] == [0, 1, 2, 4] and out["run_steps"] == out["steps"]  # dense 2, then every 2nd of 6
    assert out["layers"] == ["0", "1", "2"] and out["summary_rows"] == 3
    assert not [m for m in out["nbdiag_modules"] if m.startswith(("nbdiag.views", "nbdiag.labs"))]


def test_lazy_public_names_are_listed_and_resolve():
    names = dir(nbdiag)
    assert names == sorted(nbdiag.__all__)
    assert {"Run", "Dashboard", "PredictionTracker", "open_run", "watch", "NbdiagWarning"} <= set(names)
    from nbdiag.labs.predictions import PredictionTracker
    from nbdiag.runs.run import Run
    from nbdiag.views.dashboard import Dashboard

    assert (nbdiag.Run, nbdiag.Dashboard, nbdiag.PredictionTracker) == (Run, Dashboard, PredictionTracker)
    for name in names:
        getattr(nbdiag, name)  # every listed name exists


def test_warning_class_keeps_its_old_import_paths():
    from nbdiag.errors import NbdiagWarning
    from nbdiag.monitor import NbdiagWarning as via_monitor

    assert nbdiag.NbdiagWarning is NbdiagWarning is via_monitor
