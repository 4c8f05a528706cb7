"""Preflight under load (issue 25 part 5): the time budget may skip a check or cut it short, never change its verdict.

A fake clock plays the loaded machine: every reading of :func:`nbdiag.checks.budget.now` advances it by ``tick``
seconds, so a run is deterministic and the same for any real load. Each check gives, at every load, either the
verdict it gives without a budget or no verdict ('info' ``check.skipped`` / ``check.inconclusive`` saying what it
needs) - never a pass where there is a bug, never an alarm where there is none.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.checks import budget
from tests.bugzoo import models
from tests.bugzoo.datasets import digits

NO_VERDICT = ("check.skipped", "check.inconclusive")
TICKS = (0.0, 0.002, 0.01, 0.03, 0.1, 1.0)  # seconds per clock reading: from an idle machine to a crawling one


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


class FakeClock:
    """Advances ``tick`` seconds per reading; after ``readings`` readings, ``then`` seconds (the load rose)."""

    def __init__(self, tick: float, readings: int | None = None, then: float = 0.0) -> None:
        self.time, self.tick, self.readings, self.then = 0.0, tick, readings, then

    def __call__(self) -> float:
        if self.readings is not None:
            self.readings -= 1
            if self.readings < 0:
                self.tick = self.then
        self.time += self.tick
        return self.time


def _off_by_one() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Labels shifted by one sample against the inputs: no input predicts its own label (data.no_signal)."""
    x, y, _, _ = digits()
    x, y = x[:512], torch.roll(y[:512], 1)
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)]


def _report(monkeypatch, tick: float, data, check: str, rising: bool = False):
    monkeypatch.setattr(budget, "now", FakeClock(1e-4, readings=10, then=tick) if rising else FakeClock(tick))
    torch.manual_seed(0)
    model = models.mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return nbdiag.preflight(
        model, data, nn.CrossEntropyLoss(), optimizer=optimizer, checks=(check,), budget_s=2.0, progress=False
    )


def _verdict(monkeypatch, tick: float, data, check: str) -> set[tuple[str, str]]:
    """{(id, severity)} of ``check``'s findings, with the clock advancing ``tick`` per reading."""
    return {(f.id, f.severity) for f in _report(monkeypatch, tick, data, check).findings}


@pytest.mark.parametrize("planted", [True, False], ids=["labels_off_by_one", "clean"])
@pytest.mark.parametrize("check", ["overfit", "baseline", "lr_range"])
def test_load_never_changes_a_verdict_only_withholds_it(monkeypatch, planted, check):
    x, y, _, _ = digits()
    data = _off_by_one() if planted else [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)]
    unloaded = _verdict(monkeypatch, 0.0, data, check)
    if check == "baseline":
        assert (("data.no_signal", "warn") in unloaded) is planted  # the verdict with time to spare
    withheld = 0
    for tick, rising in [(tick, rising) for tick in TICKS[1:] for rising in (False, True)]:
        loaded = _report(monkeypatch, tick, data, check, rising).findings
        if {(f.id, f.severity) for f in loaded} == unloaded:
            continue
        assert loaded and all(f.id in NO_VERDICT and f.severity == "info" for f in loaded), (tick, rising, loaded)
        assert all("budget" in f.message for f in loaded), (tick, rising, loaded)
        withheld += 1
    assert withheld  # the slowest clocks did cut the check short (or skip it)


def test_a_check_cut_short_says_it_is_inconclusive_and_what_it_needs(monkeypatch):
    monkeypatch.setattr(budget, "now", FakeClock(1e-4, readings=10, then=0.05))  # the load rises after calibrating
    report = nbdiag.preflight(
        models.mlp(), _off_by_one(), nn.CrossEntropyLoss(), checks=("baseline",), budget_s=2.0, progress=False
    )
    (finding,) = report.findings
    assert (finding.id, finding.severity) == ("check.inconclusive", "info")
    assert "no verdict either way" in finding.message and "raise budget_s" in finding.message
    assert 0 < finding.evidence["done"] < finding.evidence["needed"]
