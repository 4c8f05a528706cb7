"""The plain-text rendering of a snapshot and its findings (the text/plain fallback); findings render in
:mod:`nbdiag.findings`."""

from __future__ import annotations

from typing import Any

import numpy as np

from nbdiag.findings import findings_text
from nbdiag.views import data
from nbdiag.views.data import Snapshot


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
