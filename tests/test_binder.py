"""binder/ builds a working environment: a fresh venv from binder/requirements.txt runs every notebook.

repo2docker itself needs Docker; this test does what it does with pip instead: install binder/requirements.txt into
a new virtual environment (PyTorch's CPU wheel index swapped for the local CPU wheel that pip's configuration
finds), run binder/postBuild, and execute every notebook with that environment's kernel. pip's cache is reused.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_notebooks import NOTEBOOKS, ROOT, execute_notebook, write_kernelspec

BINDER = ROOT / "binder"
TORCH_INDEX = "download.pytorch.org"
SETUP_TIMEOUT_S = 900
RUN_TIMEOUT_S = 1800  # setup, then six notebooks of about a minute each


def local_requirements(source: Path, target: Path) -> Path:
    """``source`` without PyTorch's index lines: the pinned CPU wheel then comes from pip's configured find-links."""
    lines = [line for line in source.read_text().splitlines() if TORCH_INDEX not in line]
    target.write_text("\n".join(lines) + "\n")
    return target


def runtime_python() -> str:
    """An interpreter of the version binder/runtime.txt names (this one when it matches)."""
    runtime = (BINDER / "runtime.txt").read_text().strip()  # e.g. "python-3.11"
    version = runtime.removeprefix("python-")
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    pytest.skip(f"binder/runtime.txt asks for {runtime}, this test runs on {sys.version.split()[0]}")


def run(command: list[str], timeout_s: float, **kwargs) -> None:
    """Run ``command``; on failure, fail the test with the tail of its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}")


def test_binder_files():
    requirements = (BINDER / "requirements.txt").read_text()
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    torch_pins = [line for line in requirements.splitlines() if line.startswith("torch")]
    assert torch_pins == ["torch==2.13.0+cpu"], "pin the CPU build: an unpinned torch pulls the multi-GB CUDA build"
    pins = [line for line in requirements.splitlines() if line and not line.startswith(("#", "-"))]
    assert all("==" in line for line in pins), f"unpinned: {[line for line in pins if '==' not in line]}"
    assert os.access(BINDER / "postBuild", os.X_OK)
    assert "pip install" in (BINDER / "postBuild").read_text()


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S)
def test_notebooks_run_in_a_fresh_binder_environment(tmp_path: Path):
    start = time.perf_counter()
    venv = tmp_path / "venv"
    try:
        env = build_environment(venv, tmp_path)
        setup_s = time.perf_counter() - start
        print(f"\nbinder environment built in {setup_s:.0f} s")
        jupyter_dir = write_kernelspec(venv / "bin" / "python", tmp_path / "jupyter")
        for path in NOTEBOOKS:
            _, seconds = execute_notebook(path, jupyter_dir, env=env)
            print(f"{path.name}: {seconds:.0f} s")
        print(f"total {time.perf_counter() - start:.0f} s")
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~1.5 GB


def build_environment(venv: Path, work: Path) -> dict[str, str]:
    """What repo2docker does, with pip: requirements.txt into a new venv, then postBuild. Returns the venv's env."""
    run([runtime_python(), "-m", "venv", str(venv)], 120)
    python = venv / "bin" / "python"
    requirements = local_requirements(BINDER / "requirements.txt", work / "requirements.txt")
    ipykernel = f"ipykernel=={importlib.metadata.version('ipykernel')}"  # Binder's base image provides a kernel
    run([str(python), "-m", "pip", "install", "-r", str(requirements), ipykernel], SETUP_TIMEOUT_S)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    run(["bash", str(BINDER / "postBuild")], SETUP_TIMEOUT_S, cwd=ROOT, env=env)
    run([str(python), "-c", "import nbdiag, torch; assert torch.version.cuda is None, torch.__version__"], 120)
    return env
