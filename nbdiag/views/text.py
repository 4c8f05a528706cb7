"""Plain-text and HTML renderings of a snapshot and its findings (the text/plain fallback, the findings table)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from nbdiag.findings import findings_text
from nbdiag.views import data
from nbdiag.views.data import Snapshot

SEVERITY_COLORS = {"fail": "#d62728", "warn": "#ff7f0e", "info": "#1f77b4"}
SEVERITY_ORDER = {"fail": 0, "warn": 1, "info": 2}


def summary_text(snap: Snapshot, findings: list[Any]) -> str:
    """A readable summary: last step and loss, per-layer activation std / dead fraction / gradient norm, findings."""
    if not snap.entries:
        return f"nbdiag dashboard: nothing recorded yet\n\nfindings:\n{findings_text(findings)}"
    latest = snap.entries[-1].step
    head = f"nbdiag dashboard: step {latest}, {len(snap.entries)} sampled steps, {len(snap.layers)} layers"
    if "loss" in snap.scalars.columns and snap.scalars["loss"].notna().any():
        head += f", loss {snap.scalars['loss'].dropna().iloc[-1]:.4g}"
    std = data.depth_profile(snap, "activation", "std", None)
    zero = data.depth_profile(snap, "activation", "zero_frac", None)
    norm = data.depth_profile(snap, "gradient", "norm", None)
    width = max((len(label) for label in snap.labels), default=5)
    rows = [f"{'layer':<{width}}  {'act std':>9}  {'zero':>6}  {'grad norm':>9}"]
    for label, s, z, g in zip(snap.labels, std, zero, norm, strict=True):
        rows.append(f"{label:<{width}}  {_number(s):>9}  {_number(z):>6}  {_number(g):>9}")
    return f"{head}\n" + "\n".join(rows) + f"\n\nfindings:\n{findings_text(findings)}"


def _number(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3g}"


def findings_html(findings: list[Any]) -> str:
    """Findings as an HTML table, most severe first, the severity cell coloured."""
    if not findings:
        return "<p style='color:#2ca02c'>no findings</p>"
    rows = []
    for finding in sorted(findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 3)):
        color = SEVERITY_COLORS.get(finding.severity, "#555")
        cells = [
            f"<td style='background:{color};color:white;font-weight:bold'>{html.escape(finding.severity)}</td>",
            f"<td><code>{html.escape(finding.id)}</code></td>",
            f"<td>{html.escape(str(finding.layer or ''))}</td>",
            f"<td>{'' if finding.step is None else finding.step}</td>",
            f"<td>{html.escape(finding.message)}</td>",
            f"<td>{html.escape(finding.advice)} <i>({html.escape(finding.ref)})</i></td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in ("severity", "id", "layer", "step", "what", "advice"))
    style = "border-collapse:collapse;font-size:12px;text-align:left"
    return f"<table class='nbdiag-findings' style='{style}'><tr>{head}</tr>{''.join(rows)}</table>"
