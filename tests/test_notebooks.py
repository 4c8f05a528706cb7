"""The notebooks run top to bottom on CPU without errors, show what they promise, and are committed clean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
COURSE = [path for path in NOTEBOOKS if "01" <= path.name[:2] <= "06"]  # the ones that teach the source texts
NOTEBOOK_TIMEOUT_S = 180  # each notebook takes about a minute on a 2-core CPU
KERNEL_NAME = "nbdiag-test"
# Bugs that notebook 02 plants and nbdiag.preflight must report.
PREFLIGHT_IDS = (
    "data.no_signal",
    "loss.probabilities_to_ce",
    "data.unnormalized",
    "model.frozen",
    "loss.batch_coupling",
)
# Bugs of the training loop that notebook 02 plants and the live health rules must report.
LIVE_IDS = ("train.grad_accumulation", "train.update_ratio", "act.dead_units")
# What notebook 08 plants (overfitting, a label leak, a ReLU before the loss, constant-init filters) and must show.
RECIPE_IDS = ("train.overfitting", "data.target_leak", "loss.output_activation", "model.first_layer_filters")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
SOURCE_CITATION = re.compile(r"37 reasons|Karpathy's recipe|CS231n")


def write_kernelspec(python: str | Path, directory: Path, name: str = KERNEL_NAME) -> Path:
    """A Jupyter data directory holding one kernelspec that runs ``python -m ipykernel_launcher``.

    Returns:
        The directory, to put first on ``JUPYTER_PATH``.
    """
    spec_dir = directory / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"nbdiag tests ({python})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return directory


def execute_notebook(
    path: Path, jupyter_dir: Path, env: dict[str, str] | None = None, timeout_s: int = NOTEBOOK_TIMEOUT_S
) -> tuple[dict, float]:
    """Run ``path`` in a fresh kernel of the kernelspec under ``jupyter_dir``, in the notebooks folder.

    The kernel runs with ``env`` (default: this process's) and one intra-op thread: the notebooks' models are tiny,
    and on a shared 2-core machine more threads only contend. The first failing cell fails the test with the
    notebook's name, the cell and its traceback.

    Returns:
        The executed notebook and the seconds it took.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    specs = KernelSpecManager(kernel_dirs=[str(jupyter_dir / "kernels")])
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=timeout_s,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute(env={**(os.environ if env is None else env), "OMP_NUM_THREADS": "1"}, cleanup_kc=True)
    except CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{ANSI_ESCAPE.sub('', str(error))[-6000:]}", pytrace=False)
    return notebook, time.perf_counter() - start


def output_text(notebook: dict) -> str:
    """Everything the code cells printed or displayed as text (stream, text/plain, text/html), joined."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                parts.extend(str(output.data.get(mime, "")) for mime in ("text/plain", "text/html"))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def jupyter_dir(tmp_path_factory) -> Path:
    return write_kernelspec(sys.executable, tmp_path_factory.mktemp("jupyter"))


@cache
def _executed(name: str, jupyter_dir: Path) -> tuple[dict, float]:
    return execute_notebook(NOTEBOOK_DIR / name, jupyter_dir)


@pytest.fixture
def executed(jupyter_dir):
    """``executed(name)``: the notebook run once per session, and the seconds it took."""
    return lambda name: _executed(name, jupyter_dir)


def test_notebooks_01_to_06_exist():
    assert [path.name[:2] for path in COURSE] == [f"0{i}" for i in range(1, 7)], [path.name for path in NOTEBOOKS]


def committed_text(path: Path) -> str:
    """The notebook as git's index holds it (what the next commit records), not the working file that a running
    JupyterLab autosaves with outputs; the working file where ``path`` is not in a git index (an sdist)."""
    relative = path.relative_to(ROOT).as_posix()
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f":{relative}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_clean(path: Path):
    notebook = nbformat.reads(committed_text(path), as_version=4)
    nbformat.validate(notebook)
    assert "widgets" not in notebook.metadata, "widget state in metadata: remove metadata.widgets"
    for index, cell in enumerate(notebook.cells):
        where = f"{path.name} cell {index}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{where} has outputs: jupyter nbconvert --clear-output --inplace {path.name}"
            assert cell.execution_count is None, f"{where} has an execution count"
            assert "from tests" not in cell.source and "import tests" not in cell.source, f"{where} imports tests/"
        assert "execution" not in cell.metadata, f"{where} keeps execution timings in its metadata"


@pytest.mark.parametrize("path", COURSE, ids=lambda path: path.stem)
def test_notebook_cites_its_sources(path: Path):
    notebook = nbformat.read(path, as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert SOURCE_CITATION.search(text), f"{path.name} cites none of the source texts"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path: Path, executed):
    notebook, seconds = executed(path.name)
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    print(f"{path.name}: {seconds:.1f} s")


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
def test_quickstart_trains_and_reports(executed):
    text = output_text(executed("01_quickstart.ipynb")[0])
    assert "preflight OK" in text
    accuracy = float(re.search(r"validation accuracy: ([\d.]+)%", text).group(1))
    assert accuracy > 90


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
def test_37_reasons_preflight_finds_every_planted_bug(executed):
    text = output_text(executed("02_37_reasons_live.ipynb")[0])
    missing = [finding_id for finding_id in PREFLIGHT_IDS if finding_id not in text]
    assert not missing, f"notebook 02 shows no {missing}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
def test_37_reasons_live_rules_find_the_training_loop_bugs(executed):
    text = output_text(executed("02_37_reasons_live.ipynb")[0])
    missing = [finding_id for finding_id in LIVE_IDS if finding_id not in text]
    assert not missing, f"notebook 02 shows no {missing}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
def test_karpathy_recipe_names_the_strangling_dropout(executed):
    text = output_text(executed("05_karpathy_recipe.ipynb")[0])
    assert "WARN model.over_regularized" in text and "p=0.1" in text


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
def test_learning_rates_runs_the_range_test(executed):
    text = output_text(executed("06_learning_rates.ipynb")[0])
    assert "LR range test over" in text
    assert "starting lr" in text


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
def test_hyperparameter_search_notebook_shows_each_recipe_finding(executed):
    text = output_text(executed("08_hyperparameter_search.ipynb")[0])
    missing = [i for i in RECIPE_IDS if i not in text]
    assert not missing, f"notebook 08 shows no {missing}"
    assert re.search(r"grid\s+4\nrandom\s+16", text), "the coarse stage's distinct learning rates are not printed"


LAB_CALL = re.compile(r"nbdiag\.labs\.\w+_lab\(")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.mark.timeout(3 * NOTEBOOK_TIMEOUT_S + 60)
@pytest.mark.parametrize(
    "name", ["03_weight_initialization.ipynb", "04_data_preprocessing.ipynb", "08_hyperparameter_search.ipynb"]
)
def test_every_lab_in_a_notebook_shows_its_widget_not_the_text_fallback(executed, name):
    """A kernel driven like JupyterLab shows each lab as a widget (with PNG and text beside it for a saved
    notebook); a lab that failed to build its widget falls back to text (notebook 08's search lab did)."""
    notebook = executed(name)[0]
    lab_cells = [cell for cell in notebook.cells if cell.cell_type == "code" and LAB_CALL.search(cell.source)]
    assert lab_cells, f"{name} calls no lab"
    for cell in lab_cells:
        shown = [output.data for output in cell.outputs if output.output_type in ("display_data", "execute_result")]
        assert any(WIDGET_MIME in data for data in shown), f"{name}: {cell.source!r} shows no widget: {shown!r:.300}"
        assert all("image/png" in data and "text/plain" in data for data in shown if WIDGET_MIME in data)


@pytest.mark.timeout(3 * NOTEBOOK_TIMEOUT_S + 60)
def test_too_good_stays_silent_on_the_notebooks_healthy_runs(executed):
    """Issue 20: digits are easy; a note that fires on every easy task teaches students to ignore the banner. The
    quickstart's CNN, notebook 07's script and notebook 08's healthy runs log training accuracy near 100% early."""
    for name in ("01_quickstart.ipynb", "07_follow_a_run.ipynb", "08_hyperparameter_search.ipynb"):
        text = output_text(executed(name)[0])
        assert "too_good" not in text, f"{name} shows train.too_good"
    assert "no findings" in output_text(executed("01_quickstart.ipynb")[0])  # the dashboard's banner, as printed
