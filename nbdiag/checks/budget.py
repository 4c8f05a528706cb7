"""The preflight's time budget: one clock, and the finding of a check that the budget cut short.

The budget may skip a check or stop it early; it must never change a check's verdict (issue 25: under load a bug
was found in one run and missed in another). So a check stopped by the budget gives no verdict at all: an 'info'
``check.inconclusive`` finding that says how far it got and what it needs. Every deadline in :mod:`nbdiag.checks`
is read from :func:`now`, which tests replace with a fake clock to play a loaded machine.
"""

from __future__ import annotations

import time

from nbdiag.findings import Finding, make_finding


def now() -> float:
    """Seconds on the preflight's clock (``time.perf_counter``); deadlines are values of this clock."""
    return time.perf_counter()


def past(deadline: float | None) -> bool:
    """Whether ``deadline`` (a :func:`now` value, or None for none) has passed."""
    return deadline is not None and now() > deadline


def inconclusive(check: str, done: int, needed: int, what: str, evidence: dict | None = None) -> Finding:
    """``check.inconclusive`` (info): ``check`` ran ``done`` of the ``needed`` steps before the budget ran out."""
    message = (
        f"{check} was cut short by the time budget after {done} of up to {needed} steps ({what}): no verdict either "
        "way. It needs the rest of its steps: raise budget_s, or run it alone (checks=...)"
    )
    return make_finding(
        "check.inconclusive", "info", message, evidence={"done": done, "needed": needed, **(evidence or {})}
    )
