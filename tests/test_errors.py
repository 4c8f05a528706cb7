"""One error channel: every failure inside nbdiag lands in .errors with its traceback and as a monitor.hook_error
finding, and training is never changed by it."""

from __future__ import annotations

import errno
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from nbdiag.errors import ErrorLog, NbdiagWarning


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def train(steps: int = 12, watched: bool = True, **watch_kwargs):
    """Losses of a tiny run and its monitor (None when not ``watched``)."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    mon = nbdiag.watch(model, opt, every=1, display=False, **watch_kwargs) if watched else None
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if mon is not None:
            mon.step(loss=loss)
        losses.append(loss.detach())
    return torch.stack(losses), mon


def hook_error(source) -> list:
    return [f for f in source.findings() if f.id == "monitor.hook_error"]


def test_a_full_disk_is_logged_with_its_traceback_and_training_is_unchanged(tmp_path, monkeypatch):
    unwatched, _ = train(watched=False)

    def disk_full(table, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nbdiag.runs.writer.write_segment", disk_full)
    with pytest.warns(NbdiagWarning) as caught:
        losses, mon = train(run_dir=tmp_path / "run")
        mon.close()
    assert torch.equal(losses, unwatched)  # bitwise: the failing writer changed nothing
    messages = [str(w.message) for w in caught]  # once on the training thread, once when close() could not finish
    assert len(messages) == 2 and messages[0].startswith("nbdiag's writer failed") and "could not finish" in messages[1]
    writer = [e for e in mon.errors if e.source == "writer"]
    assert writer and "No space left on device" in writer[0].message
    assert "disk_full" in writer[0].traceback and writer[0].thread == "nbdiag-run-writer"
    assert mon.record.steps() == list(range(12))  # the record itself is complete
    assert nbdiag.open_run(tmp_path / "run").record.steps() == []  # the run directory stays readable
    (finding,) = hook_error(mon)
    assert "writer" in finding.message and "report" in finding.message and finding.severity == "warn"


def test_a_failing_hook_is_a_finding_with_its_traceback(monkeypatch):
    unwatched, _ = train(watched=False)

    def broken(*args, **kwargs):
        raise RuntimeError("planted stats bug")

    monkeypatch.setattr("nbdiag.quantities.activation.raw_stats", broken)
    with pytest.warns(NbdiagWarning, match="switched monitoring off"):
        losses, mon = train()
    mon.close()
    assert torch.equal(losses, unwatched)
    (report,) = mon.errors  # capture switched itself off after the first failure
    assert report.source == "capture" and report.step == 0 and "planted stats bug" in report.message
    assert "broken" in report.traceback
    (finding,) = hook_error(mon)
    assert "capture switched off" in finding.message and finding.step == 0
    assert finding.evidence["first"] == report.message


def test_a_failing_prediction_probe_skips_only_its_block():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    wrong = (torch.randn(4, 5), torch.randint(0, 3, (4,)))  # 5 features for a 6-feature model: the probe fails
    mon = nbdiag.watch(model, opt, every=1, fixed_batch=wrong, display=False)
    with pytest.warns(NbdiagWarning, match="prediction failed"):
        for _ in range(3):
            F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
            opt.step()
            opt.zero_grad()
            mon.step()
    mon.close()
    assert [e.source for e in mon.errors] == ["prediction"] * 3
    assert mon.predictions.steps == [] and mon.record.steps() == [0, 1, 2]  # everything else is recorded
    assert hook_error(mon)


def test_a_failing_renderer_is_logged_and_keeps_polling():
    pytest.importorskip("ipywidgets")
    from nbdiag.views.dashboard import Dashboard

    class PlantedBug(Dashboard):
        def refresh(self) -> None:
            raise ValueError("planted renderer bug")

    _, mon = train(steps=3)
    dashboard = PlantedBug(mon, max_hz=50)
    dashboard.renderer.start()
    deadline = time.monotonic() + 60  # a hang guard: one failure a second, and the loop ends at the second
    while len(mon.record.errors) < 2 and time.monotonic() < deadline:  # it goes on polling after a failure
        time.sleep(0.05)
    dashboard.renderer.stop()
    mon.close()
    assert len(mon.errors) >= 2 and {r.source for r in mon.errors} == {"renderer"}
    assert "planted renderer bug" in mon.errors[0].message and mon.errors[0].thread == "nbdiag-renderer"
    assert "in refresh" in mon.errors[0].traceback
    assert "nbdiag error" in dashboard._status(dashboard.snapshot())  # the status line shows it
    (finding,) = hook_error(mon)
    assert "renderer" in finding.message


def test_a_failing_follow_poll_is_logged_not_silent(tmp_path, monkeypatch):
    _, mon = train(run_dir=tmp_path / "run", steps=3)
    mon.close()
    run = nbdiag.open_run(tmp_path / "run")

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("nbdiag.runs.run.read_manifest", unreadable)
    run.follow(interval=0.01)
    run._thread.join(timeout=10)
    assert not run.following
    (report,) = run.errors
    assert report.source == "reader" and "stopped following" in report.message and "Permission denied" in report.message
    assert "unreadable" in report.traceback and report.thread == "nbdiag-follow"
    (finding,) = hook_error(run)
    assert "reader" in finding.message


def test_a_failing_dashboard_never_breaks_show(monkeypatch, capsys):
    import nbdiag.display

    _, mon = train(steps=2)

    def broken_backend():
        raise KeyError("planted dashboard bug")

    monkeypatch.setattr("nbdiag.record_reader.display_backend", broken_backend)
    monkeypatch.setattr(nbdiag.display, "display_backend", broken_backend)
    with pytest.warns(NbdiagWarning, match="the dashboard failed"):
        mon.show()
    assert "nbdiag.Monitor" in capsys.readouterr().out  # the text summary instead
    assert mon.errors[0].source == "dashboard" and "planted dashboard bug" in mon.errors[0].message
    mon.close()


def test_correct_runs_log_nothing_and_raise_no_finding(tmp_path):
    _, mon = train(run_dir=tmp_path / "run", fixed_batch=(torch.randn(4, 6), torch.randint(0, 3, (4,))))
    mon.close()
    run = nbdiag.open_run(tmp_path / "run")
    assert mon.errors == [] and run.errors == []
    assert hook_error(mon) == [] and hook_error(run) == []


def test_the_log_is_bounded_and_counts_everything():
    log = ErrorLog(max_reports=3)
    for i in range(10):
        try:
            raise ValueError(i)
        except ValueError as error:
            log.add("writer", error, step=i)
    assert len(log) == 10 and [r.step for r in log.reports()] == [0, 1, 2]
    assert "raise ValueError(i)" in log.reports()[0].traceback
