"""Writing a source's dashboard to files: a PNG (matplotlib) and a self-contained HTML report (plotly inline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from nbdiag.findings import findings_html
from nbdiag.views.dashboard import Dashboard
from nbdiag.views.figure import PanelFigure

REPORT_DIGITS = 4  # significant digits of the report's values (its hover labels show 3), as the inline path sends


def savefig(source: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write the dashboard's current state as a PNG.

    Args:
        source: a Monitor, a run reader, or anything with ``.record`` (and ``.findings()``, ``.predictions``).
        path: the file to write (the format follows the suffix, as in matplotlib).
        dpi: resolution.

    Returns:
        The path written.
    """
    dashboard = Dashboard(source)
    path = Path(path)
    dashboard.figure().savefig(path, dpi=dpi)
    return path


def to_html(source: Any, path: str | Path) -> Path:
    """Write a self-contained HTML report: the interactive panels (plotly.js inline, no network), the findings
    table and the text summary.

    Args:
        source: as for :func:`savefig`.
        path: the file to write.

    Returns:
        The path written.
    """
    dashboard = Dashboard(source)
    snap = dashboard.snapshot()
    figure = PanelFigure(dashboard.panels(), widget=False, digits=REPORT_DIGITS).figure
    plot = figure.to_html(full_html=False, include_plotlyjs=True)
    title = html.escape(dashboard.title() or "nbdiag report")
    page = _PAGE.format(
        title=title,
        plot=plot,
        findings=findings_html(dashboard.findings()),
        summary=html.escape(dashboard.text()),
        steps=len(snap.entries),
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1em 2em}} td,th{{padding:2px 6px;border-bottom:1px solid #ddd}}</style>
</head><body>
<h1>nbdiag report: {title}</h1>
<p>{steps} sampled steps. Hover a line for its layer's depth; drag to zoom.</p>
<h2>Health</h2>
{findings}
<h2>Dashboard</h2>
{plot}
<h2>Summary</h2>
<pre>{summary}</pre>
</body></html>
"""
