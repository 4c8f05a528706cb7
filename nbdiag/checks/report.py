"""The preflight report: findings, per-check timing, and their text and HTML renderings."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from nbdiag.checks.lr_range import LRRangeResult
from nbdiag.findings import SEVERITY_RANK, Finding, findings_frame, findings_html, findings_text


@dataclass(frozen=True)
class CheckTiming:
    """How one check went.

    Attributes:
        name: the check's name (see ``nbdiag.checks.CHECKS``).
        status: 'ran', 'skipped' (budget or a failed prerequisite) or 'error' (the check raised).
        seconds: wall time spent in it.
        findings: the number of findings it produced.
    """

    name: str
    status: str
    seconds: float
    findings: int


@dataclass
class Report:
    """What :func:`nbdiag.preflight` found.

    Attributes:
        findings: every finding, in check order.
        timings: one :class:`CheckTiming` per selected check.
        seconds: total wall time of the preflight.
        lr_range: the LR range test's result when it ran, else None.
    """

    findings: list[Finding] = field(default_factory=list)
    timings: list[CheckTiming] = field(default_factory=list)
    seconds: float = 0.0
    lr_range: LRRangeResult | None = None

    @property
    def ok(self) -> bool:
        """True when no finding is 'warn' or 'fail'."""
        return not any(f.severity in ("warn", "fail") for f in self.findings)

    def frame(self) -> Any:
        """The findings as a pandas DataFrame (see :func:`nbdiag.findings.findings_frame`)."""
        return findings_frame(self.findings)

    def timing_frame(self) -> Any:
        """Per-check status and seconds as a pandas DataFrame."""
        import pandas as pd

        rows = [vars(t) for t in self.timings]
        return pd.DataFrame(rows, columns=["name", "status", "seconds", "findings"])

    def ids(self, min_severity: str = "info") -> set[str]:
        """The finding ids at ``min_severity`` or worse ('info' < 'warn' < 'fail')."""
        return {f.id for f in self.findings if SEVERITY_RANK[f.severity] <= SEVERITY_RANK[min_severity]}

    def _counts(self) -> str:
        counts = {s: sum(f.severity == s for f in self.findings) for s in ("fail", "warn", "info")}
        verdict = "OK" if self.ok else "PROBLEMS FOUND"
        return f"preflight {verdict}: {counts['fail']} fail, {counts['warn']} warn, {counts['info']} info"

    def __repr__(self) -> str:
        return self.__str__()

    def __str__(self) -> str:
        timing = ", ".join(_timing_text(t) for t in self.timings)
        return f"{self._counts()} in {self.seconds:.1f}s\n{findings_text(self.findings)}\nchecks: {timing}"

    def _repr_html_(self) -> str:
        timing = "".join(
            f"<tr><td>{html.escape(t.name)}</td><td>{t.status}</td><td>{t.seconds:.2f} s</td><td>{t.findings}</td></tr>"
            for t in self.timings
        )
        return (
            f"<div><b>{html.escape(self._counts())}</b> in {self.seconds:.1f} s{findings_html(self.findings)}"
            "<details><summary>checks</summary><table>"
            f"<tr><th>check</th><th>status</th><th>time</th><th>findings</th></tr>{timing}</table></details></div>"
        )


def _timing_text(timing: CheckTiming) -> str:
    status = "" if timing.status == "ran" else f" ({timing.status})"
    return f"{timing.name} {timing.seconds:.2f}s{status}"
