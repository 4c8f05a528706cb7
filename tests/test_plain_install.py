"""``pip install nbdiag`` alone (no extra) is enough: a fresh virtual environment runs ``nbdiag demo``, a lab and
every import the notebooks make. Also the newcomer's ``make lab`` as root."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_notebooks import NOTEBOOKS, ROOT

TORCH = "torch==2.13.0"  # first, on its own: pip finds the local CPU wheel and never pulls a CUDA build
INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 300
IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)


def notebook_imports() -> set[str]:
    """Top-level modules the notebooks import outside ``try`` blocks (an optional import is guarded)."""
    modules = set()
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            if "try:" in source:
                source = source.split("try:")[0]
            modules |= set(IMPORT.findall(source))
    return modules - {"google"}  # the Colab install cell imports google.colab only on Colab


def run(command: list[str], timeout_s: float, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, **kwargs)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{output[-4000:]}")
    return output


def test_every_notebook_opens_in_colab_and_installs_nbdiag_only_there():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        link = f"https://colab.research.google.com/github/OWNER/nbdiag/blob/main/notebooks/{path.name}"
        assert link in readme, f"README has no Open in Colab link for {path.name}"
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        source = "".join(first["source"])
        assert first["cell_type"] == "code" and "import google.colab" in source and "pip" in source, path.name
        assert source.index("import google.colab") < source.index("pip"), f"{path.name} installs outside Colab"


def test_notebook_imports_are_known():
    assert {"torch", "nbdiag", "sklearn", "mlxtend"} <= notebook_imports()


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 3 * RUN_TIMEOUT_S)
def test_fresh_venv_with_only_pip_install_runs_demo_lab_and_notebook_imports(tmp_path: Path):
    venv = tmp_path / "venv"
    source = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info next to the sources
    skipped = shutil.ignore_patterns(".venv", ".git", "test-artifacts", "build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skipped)
    try:
        run([sys.executable, "-m", "venv", str(venv)], 120)
        python = str(venv / "bin" / "python")
        run([python, "-m", "pip", "install", "-q", TORCH], INSTALL_TIMEOUT_S)
        run([python, "-m", "pip", "install", "-q", str(source)], INSTALL_TIMEOUT_S)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NBDIAG_DISPLAY")}
        env.update(OMP_NUM_THREADS="1", MPLCONFIGDIR=str(tmp_path / "matplotlib"))
        out = run([str(venv / "bin" / "nbdiag"), "demo", "--steps", "40"], RUN_TIMEOUT_S, cwd=tmp_path, env=env)
        assert "validation accuracy after 40 steps" in out
        assert (tmp_path / "nbdiag-demo" / "dashboard.png").stat().st_size > 10_000
        lab = "import nbdiag; lab = nbdiag.labs.preprocessing_lab(display=False); print(lab.summary_text())"
        assert "zero" in run([python, "-c", lab], RUN_TIMEOUT_S, cwd=tmp_path, env=env).lower()
        imports = "; ".join(f"import {module}" for module in sorted(notebook_imports()))
        run([python, "-c", imports], RUN_TIMEOUT_S, cwd=tmp_path, env=env)
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def test_make_lab_works_as_root():
    """Jupyter refuses to run as root without --allow-root (containers, cloud boxes); make lab passes it then."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry_run = run(["make", "-n", "-W", "pyproject.toml", "lab"], 60, cwd=ROOT)
    lab_line = next(line for line in dry_run.splitlines() if "jupyter lab" in line)
    assert ("--allow-root" in lab_line) == (os.geteuid() == 0), lab_line
