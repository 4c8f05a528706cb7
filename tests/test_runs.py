"""Run directories: exact roundtrip, following a run another process writes, SIGKILL crash-safety, damage, CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from nbdiag.cli import main as cli_main
from nbdiag.runs.files import MANIFEST, SEGMENTS, segment_files
from nbdiag.runs.run import SegmentWarning
from nbdiag.runs.writer import RunWriter

REPO = Path(nbdiag.__file__).parents[1]  # the checkout under test, for the writer subprocess
HANG_S = 240.0  # waits on the writer process only guard against a hang (pytest's timeout is 300 s)

# A training script for another process: argv = run_dir, steps, seconds to sleep per step, path to save at the end,
# then optional gates: after each gate's number of steps it waits until the file "<saved>.go<gate>" exists.
WRITER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, torch
    from torch import nn
    from torch.nn import functional as F
    import nbdiag

    run_dir, steps, pause, saved = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    gates = {int(gate) for gate in sys.argv[5:]}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with nbdiag.watch(model, opt, every=1, run_dir=run_dir) as mon:
        mon._writer.segment_steps = 3
        for step in range(steps):
            loss = F.cross_entropy(model(x), y)
            loss.backward(); opt.step(); opt.zero_grad()
            mon.step(loss=loss)
            time.sleep(pause)
            while step + 1 in gates and not os.path.exists(f"{saved}.go{step + 1}"):
                time.sleep(0.01)
    mon.save(saved)
    """
)


def train(run_dir=None, steps=40, every=2, nan_at=None):  # 22 sampled steps: >= 3 segments of 10
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    batch = (x[:6], y[:6])  # predictions on it are a record block like any other: written and read back
    with nbdiag.watch(model, opt, every=every, dense=4, run_dir=run_dir, num_classes=10, fixed_batch=batch) as mon:
        for step in range(steps):
            loss = F.cross_entropy(model(x * float("nan") if step == nan_at else x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            validation = {"val_loss": 1.0 / (step + 1)} if step % 5 == 0 else {}  # logged at some steps only
            mon.step(loss=loss, acc=float("nan") if step % 2 else 0.5, lr=torch.tensor(0.1), **validation)
    return mon


def assert_same_record(run, mon):
    pd.testing.assert_frame_equal(run.frame(), mon.frame())
    pd.testing.assert_frame_equal(run.scalars(), mon.scalars())
    for kind in ("activation", "gradient"):
        edges, counts = run.histograms(kind)
        live_edges, live_counts = mon.histograms(kind)
        np.testing.assert_array_equal(edges, live_edges)
        pd.testing.assert_frame_equal(counts, live_counts)
    assert run.layers == mon.layers
    assert (run.predictions is None) == (mon.predictions is None)
    if mon.predictions is not None:
        pd.testing.assert_frame_equal(run.predictions.frame(), mon.predictions.frame())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A monitor that wrote a run directory as it trained, and that directory (read-only for the tests)."""
    run_dir = tmp_path_factory.mktemp("live") / "run"
    return train(run_dir), run_dir


def start_writer(tmp_path, steps, pause, gates=()):
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, str(script), str(tmp_path / "run"), str(steps), str(pause), str(tmp_path / "saved")]
    args += [str(gate) for gate in gates]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, writer=None, timeout=HANG_S):
    """Wait until ``condition()``; fail at once if ``writer`` (a process) exited first, else only after ``timeout``
    seconds, a hang guard: on a starved CI core the writer's start alone (torch, nbdiag) can take a minute."""
    deadline = time.monotonic() + timeout
    while not condition():
        if writer is not None and writer.poll() is not None and not condition():
            raise AssertionError(f"the writer exited ({writer.returncode}) first: {writer.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(0.05)


# -- roundtrip -------------------------------------------------------------------------------------------------
def test_live_run_dir_roundtrips_exactly(live):
    mon, run_dir = live
    run = nbdiag.open_run(run_dir)
    assert len(segment_files(run_dir)) > 1  # written as it went, not only on close
    assert_same_record(run, mon)
    assert run.finished and run.model_name == "Sequential" and run.num_classes == 10
    assert mon.errors == []


def test_predictions_are_a_record_block_equal_to_the_model_output(live):
    mon, run_dir = live
    predictions = nbdiag.open_run(run_dir).predictions
    assert predictions.steps == mon.record.steps() and predictions.task == "classification"
    torch.manual_seed(0)  # the monitor released its model: train a copy to the last sampled step independently
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10), nn.ReLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(predictions.steps[-1] + 1):  # predictions of a step are taken after its update
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        expected = torch.softmax(model(x[:6]), dim=1).numpy()
    np.testing.assert_allclose(predictions.probabilities()[-1], expected, rtol=1e-6)
    np.testing.assert_array_equal(predictions.targets, y[:6].numpy())
    frame = mon.frame(kind="prediction")
    assert set(frame["layer"]) == {str(i) for i in range(6)} and "p/9" in set(frame["stat"])


def test_save_after_the_fact_roundtrips_exactly_and_replaces_an_earlier_run(live, tmp_path):
    mon, _ = live
    mon.save(tmp_path / "saved")
    mon.save(tmp_path / "saved")  # writing again replaces the run
    run = nbdiag.open_run(tmp_path / "saved")
    assert_same_record(run, mon)
    for name in ("acc", "val_loss"):  # NaN logged stays, names not logged stay absent
        np.testing.assert_array_equal(run.record.scalar_series(name), mon.record.scalar_series(name))
    assert len(segment_files(tmp_path / "saved")) == 1


def test_manifest_describes_the_run(live):
    manifest = json.loads((live[1] / MANIFEST).read_text())
    assert manifest["format"] == "nbdiag-run" and manifest["schema_version"] == 1
    assert manifest["nbdiag_version"] == nbdiag.__version__ and manifest["status"] == "closed"
    assert manifest["meta"]["layer_types"]["2"] == "Tanh"
    assert manifest["layers"]["activation"] == ["1", "2", "3", "4"]  # the Flatten (0) only reshapes
    assert len(manifest["hist_edges"]) == manifest["n_bins"] - 1
    np.testing.assert_array_equal(np.float32(manifest["hist_edges"]), nbdiag.stats.HIST_EDGES[1:-1])


def test_segments_read_directly_with_pandas_and_duckdb(live):
    mon, run_dir = live
    rows = pd.read_parquet(run_dir / SEGMENTS)
    stats = rows[(rows.kind != "scalar") & (rows.stat != "hist")].dropna(subset=["value"])
    live = mon.frame().dropna(subset=["value"])
    assert len(stats) == len(live)
    loss = rows[(rows.kind == "scalar") & (rows.stat == "loss")].set_index("step")["value"]
    pd.testing.assert_series_equal(loss, mon.scalars()["loss"], check_names=False)
    duckdb = pytest.importorskip("duckdb")
    glob = str(run_dir / SEGMENTS / "*.parquet")
    steps = duckdb.sql(f"SELECT DISTINCT step FROM read_parquet('{glob}') WHERE stat = 'hist' ORDER BY step").df()
    assert steps["step"].tolist() == mon.record.steps()


def test_findings_from_a_run_match_the_monitor(tmp_path):
    mon = train(tmp_path / "run", nan_at=6)
    run = nbdiag.open_run(tmp_path / "run")
    assert run.record.first_nonfinite == mon.record.first_nonfinite
    assert [f.id for f in run.findings()] == [f.id for f in mon.findings()]
    assert "train.nonfinite" in [f.id for f in run.findings()]


# -- another process writes ------------------------------------------------------------------------------------
@pytest.mark.timeout(3 * HANG_S)  # a hang guard per wait, several waits
def test_follow_picks_up_segments_while_another_process_writes(tmp_path):
    """The writer waits at 6 and 15 steps (2 and 5 segments of 3) until the follower has seen them: the run is seen
    growing whatever the machine's load."""
    writer = start_writer(tmp_path, steps=24, pause=0.0, gates=(6, 15))
    try:
        wait_for(lambda: (tmp_path / "run" / MANIFEST).is_file(), writer)
        run = nbdiag.open_run(tmp_path / "run", follow=True, interval=0.05)
        for gate in (6, 15):
            wait_for(lambda gate=gate: len(run.record.steps()) >= gate, writer)
            assert run.record.steps() == list(range(gate)) and not run.finished  # the writer waits here
            (tmp_path / f"saved.go{gate}").touch()
        assert writer.wait(timeout=HANG_S) == 0, writer.stderr.read()
        wait_for(lambda: not run.following)
    finally:
        writer.kill()
        writer.wait()
    assert run.finished and run.record.steps() == list(range(24))
    assert_same_record(run, nbdiag.open_run(tmp_path / "saved"))


@pytest.mark.timeout(3 * HANG_S)  # a hang guard per wait, several waits
def test_a_killed_writer_leaves_a_readable_run(tmp_path):
    writer = start_writer(tmp_path, steps=10_000, pause=0.01)
    try:
        wait_for(lambda: len(segment_files(tmp_path / "run")) >= 3, writer)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    (tmp_path / "run" / SEGMENTS / ".seg-000999.parquet.half.tmp").write_bytes(b"PAR1 half written")
    run = nbdiag.open_run(tmp_path / "run")
    steps = run.record.steps()
    assert not run.finished and len(steps) >= 9
    assert steps == list(range(len(steps)))  # a prefix of the run, nothing torn
    assert list(run.scalars().index[: len(steps)]) == steps


def test_a_damaged_segment_is_skipped_with_a_warning(live, tmp_path):
    mon = live[0]
    shutil.copytree(live[1], tmp_path / "run")
    segments = segment_files(tmp_path / "run")
    damaged = segments[1]
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.warns(SegmentWarning, match=damaged.name):
        run = nbdiag.open_run(tmp_path / "run")
    assert 0 < len(run.record.steps()) < len(mon.record.steps())
    assert run.refresh() == 0  # not tried again, not warned again, while the file is unchanged
    assert run.errors and damaged.name in run.errors[0].message


def test_run_dir_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an nbdiag run"):
        RunWriter(tmp_path, nbdiag.record.Record())
    with pytest.raises(FileNotFoundError, match="holds no manifest.json"):
        nbdiag.open_run(tmp_path)


# -- command line ----------------------------------------------------------------------------------------------
def test_cli_report(live, tmp_path, capsys):
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    status = cli_main(["report", str(live[1]), "--out", str(tmp_path / "report.html")])
    out, err = capsys.readouterr()
    assert "findings:" in out
    if importlib.util.find_spec("nbdiag.views.export") is None:
        assert status == 3 and "nbdiag.views.export.to_html" in err
    else:
        assert status == 0 and (tmp_path / "report.html").stat().st_size > 0
