"""The bug zoo under nbdiag.watch: each live bug is reported by the health rules, clean setups raise no warn/fail."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pytest
import torch

import nbdiag
from nbdiag.findings import SEVERITY_RANK, Finding, findings_text
from tests.bugzoo import CASES, Case, cases, run_training
from tests.bugzoo.cases import accuracy, validate

LIVE_CASES = cases("live")
CLEAN_CASES = cases("both")
STEPS = 200  # about 9 epochs of the digits' 1400 training samples at batch 64
EVERY = 10  # sampled: steps 0-9, then every 10th
POLL = 25  # the findings are read this often during training, as a dashboard would
VAL_EVERY = 20  # setups with validation data are validated this often (mon.validate)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@dataclass(frozen=True)
class LiveRun:
    """The findings at the end of a watched run, and the step at which each id first reached warn."""

    findings: list[Finding]
    first_seen: dict[str, int]

    def ids(self) -> set[str]:
        """Ids at warn or fail at the end."""
        return {f.id for f in self.findings if SEVERITY_RANK[f.severity] <= SEVERITY_RANK["warn"]}


@cache
def _run(name: str) -> LiveRun:
    case = next(case for case in CASES if case.name == name)
    setup = case.build()
    first_seen: dict[str, int] = {}
    with nbdiag.watch(setup.model, setup.optimizer, every=EVERY, num_classes=setup.num_classes, display=False) as mon:

        def on_step(step: int, loss: torch.Tensor, output: torch.Tensor, target: torch.Tensor) -> None:
            acc = accuracy(output, target)
            mon.step(loss=loss, **({} if acc is None else {"acc": acc}))
            if setup.val_data is not None and step % VAL_EVERY == VAL_EVERY - 1:
                validate(setup, mon.validate)
            if step % POLL == 0:
                for finding in mon.findings():
                    if finding.severity != "info":
                        first_seen.setdefault(finding.id, step)

        run_training(setup, STEPS, on_step)
        assert mon.errors == []
    return LiveRun(mon.findings(), first_seen)


@pytest.mark.parametrize("case", LIVE_CASES, ids=lambda case: case.name)
def test_live_rules_report_the_planted_bug(case: Case):
    run = _run(case.name)
    missing = set(case.expected) - run.ids()
    assert not missing, f"{case.name} ({case.bug}): {sorted(missing)} not reported\n{findings_text(run.findings)}"


@pytest.mark.parametrize("case", CLEAN_CASES, ids=lambda case: case.name)
def test_live_rules_are_quiet_on_clean_setups(case: Case):
    run = _run(case.name)
    assert not run.ids() and not run.first_seen, f"false alarm on {case.name}:\n{run.findings}"


def test_live_detection_summary():
    lines, detected, false_alarms = [], 0, 0
    for case in (*LIVE_CASES, *CLEAN_CASES):
        run = _run(case.name)
        found = run.ids()
        hit = set(case.expected) <= found if case.expected else not found and not run.first_seen
        extra = sorted(found - set(case.expected))
        detected += bool(case.expected) and hit
        false_alarms += case.clean and not hit
        seen = {finding_id: run.first_seen.get(finding_id) for finding_id in case.expected}
        lines.append(f"{'ok  ' if hit else 'MISS'} {case.name:20} expected {seen} (first step seen) also {extra}")
    print("\n".join(["", *lines, f"detected {detected}/{len(LIVE_CASES)}, false alarms {false_alarms}"]))
    assert detected == len(LIVE_CASES) and false_alarms == 0
