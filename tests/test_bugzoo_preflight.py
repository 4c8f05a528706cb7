"""The bug zoo against nbdiag.preflight: each planted bug is reported, clean setups raise no warn/fail."""

from __future__ import annotations

from functools import cache

import pytest

import nbdiag
from nbdiag.checks.report import Report
from tests.bugzoo import CASES, Case, cases

PREFLIGHT_CASES = cases("preflight")
CLEAN_CASES = cases("both")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@cache
def _report(name: str) -> Report:
    case = next(case for case in CASES if case.name == name)
    setup = case.build()
    return nbdiag.preflight(
        setup.model,
        setup.data,
        setup.loss_fn,
        optimizer=setup.optimizer,
        num_classes=setup.num_classes,
        val_data=setup.val_data,
        progress=False,
    )


def test_zoo_covers_the_required_bugs():
    names = {case.name for case in PREFLIGHT_CASES}
    assert len(CLEAN_CASES) >= 5 and all(case.clean for case in CLEAN_CASES)
    assert {"shuffled_labels", "softmax_before_ce", "raw_pixels", "frozen_layer", "batch_mixing"} <= names
    assert {case.detector for case in CASES} == {"preflight", "live", "both"}
    assert all(case.expected for case in CASES if case.detector != "both")


@pytest.mark.parametrize("case", PREFLIGHT_CASES, ids=lambda case: case.name)
def test_preflight_reports_the_planted_bug(case: Case):
    report = _report(case.name)
    missing = set(case.expected) - report.ids("warn")
    assert not missing, f"{case.name} ({case.bug}): {sorted(missing)} not reported\n{report}"
    assert not report.ok


@pytest.mark.parametrize("case", CLEAN_CASES, ids=lambda case: case.name)
def test_preflight_is_quiet_on_clean_setups(case: Case):
    report = _report(case.name)
    assert report.ok, f"false alarm on {case.name}:\n{report}"
    assert not any(timing.status != "ran" for timing in report.timings), report.timing_frame()


def test_detection_summary():
    lines, detected, false_alarms = [], 0, 0
    for case in (*PREFLIGHT_CASES, *CLEAN_CASES):
        found = _report(case.name).ids("warn")
        hit = set(case.expected) <= found if case.expected else not found
        extra = sorted(found - set(case.expected))
        detected += bool(case.expected) and hit
        false_alarms += case.clean and bool(found)
        lines.append(f"{'ok  ' if hit else 'MISS'} {case.name:26} expected {list(case.expected)} also {extra}")
    print("\n".join(["", *lines, f"detected {detected}/{len(PREFLIGHT_CASES)}, false alarms {false_alarms}"]))
    assert detected == len(PREFLIGHT_CASES) and false_alarms == 0
