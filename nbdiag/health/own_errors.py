"""nbdiag's own failures as a finding (monitor.hook_error): what failed, and how to report it.

Reads ``record.errors`` (see :mod:`nbdiag.errors`): hooks, flush, prediction probe, run writer and reader, renderer.
"""

from __future__ import annotations

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import Window


def own_errors(window: Window) -> list[Finding]:
    """monitor.hook_error (warn): one finding naming every part of nbdiag that failed, first failure first."""
    errors = getattr(window.record, "errors", None)
    reports = errors.reports() if errors is not None else []
    if not reports:
        return []
    first = reports[0]
    sources = list(dict.fromkeys(report.source for report in reports))
    off = " (capture switched off: later steps are not recorded)" if {"capture", "flush"} & set(sources) else ""
    return [
        make_finding(
            "monitor.hook_error",
            "warn",
            f"nbdiag's own {', '.join(sources)} failed {len(errors)} time(s){off}; training was not affected. First: "
            f"{first.message}. Please report it to nbdiag's maintainers with the traceback in .errors[0]",
            step=first.step,
            evidence={"errors": len(errors), "sources": ", ".join(sources), "first": first.message},
        )
    ]
