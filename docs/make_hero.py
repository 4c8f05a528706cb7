"""Regenerate the README's dashboard images from the quickstart notebook itself (not from another run).

- ``docs/img/dashboard.png``: ``notebooks/01_quickstart.ipynb`` executed top to bottom in a fresh kernel, then
  ``mon.savefig`` on its monitor (the static matplotlib view: findings banner on top, then the panels).
- ``docs/img/dashboard-jupyterlab.png`` (with ``--browser``): the quickstart run in JupyterLab by the browser test
  ``tests/browser/test_notebook_screens.py``; its dashboard screenshot is copied here (needs Chromium).
- ``docs/img/dashboard-deep-gpt.png`` (with ``--browser``): the 48-block GPT (340 layers) in JupyterLab, from
  ``tests/browser/test_deep_dashboard.py`` (opt-in there, run here).

Usage: ``python docs/make_hero.py [--browser]`` from the repository root, or ``make hero``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "notebooks" / "01_quickstart.ipynb"
STATIC = ROOT / "docs" / "img" / "dashboard.png"
JUPYTERLAB = ROOT / "docs" / "img" / "dashboard-jupyterlab.png"
SCREENSHOT = ROOT / "test-artifacts" / "browser" / "nb01-quickstart.png"
DEEP = ROOT / "docs" / "img" / "dashboard-deep-gpt.png"
DEEP_SCREENSHOT = ROOT / "test-artifacts" / "browser" / "dashboard-deep-gpt.png"
TIMEOUT_S = 600


def static_png(out: Path = STATIC) -> Path:
    """Execute the quickstart with one extra cell, ``mon.savefig(out)``, and return ``out``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(QUICKSTART, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(f"mon.savefig({str(out)!r})"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("NBDIAG_DISPLAY", "static")  # no widget front end here: the monitor draws a PNG
    client = NotebookClient(
        notebook, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(QUICKSTART.parent)}}
    )
    client.execute()
    return out


def jupyterlab_png(out: Path = JUPYTERLAB) -> Path:
    """Run the quickstart's browser test and copy its dashboard screenshot to ``out``."""
    test = "tests/browser/test_notebook_screens.py::test_quickstart_dashboard_is_clean_with_the_findings_on_top"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "browser", test], cwd=ROOT, check=True)
    return Path(shutil.copy(SCREENSHOT, out))


def deep_png(out: Path = DEEP) -> Path:
    """Run the 48-block GPT's browser test (opt-in: ``NBDIAG_DEEP_SCREENSHOT=1``, about 2.5 minutes) and copy its
    dashboard screenshot to ``out``."""
    test = "tests/browser/test_deep_dashboard.py"
    env = {**os.environ, "NBDIAG_DEEP_SCREENSHOT": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "browser", test], cwd=ROOT, check=True, env=env)
    return Path(shutil.copy(DEEP_SCREENSHOT, out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", action="store_true", help="also the JupyterLab screenshot (needs Chromium)")
    args = parser.parse_args()
    print(f"wrote {static_png()}")
    if args.browser:
        print(f"wrote {jupyterlab_png()}")
        print(f"wrote {deep_png()}")


if __name__ == "__main__":
    main()
