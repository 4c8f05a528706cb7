"""Live health rules: read a monitor's record, return findings. Never touches the model."""

from __future__ import annotations

from typing import Any

from nbdiag.findings import Finding, make_finding


def evaluate(monitor: Any) -> list[Finding]:
    """All live findings for ``monitor`` (anything with a ``record``)."""
    return _nonfinite(monitor.record)


def _nonfinite(record: Any) -> list[Finding]:
    found = record.first_nonfinite
    if found is None:
        return []
    return [
        make_finding(
            "train.nonfinite",
            "fail",
            f"{found.count:.0f} non-finite values in the {found.kind} of {found.layer} at step {found.step} "
            "(first tensor in forward order)",
            layer=found.layer,
            step=found.step,
            evidence={"count": found.count, "kind": found.kind},
        )
    ]
