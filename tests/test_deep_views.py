"""A deep model on the dashboard: no empty panel is laid out (issue 21: the 48-block GPT's "dead or saturated units
over time" panel was bare axes, 187.5-210)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nbdiag
from nbdiag.views import data, grid, static
from nbdiag.views.panels import Panel, ViewState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from overhead_models import GPT  # noqa: E402


def gpt_monitor(blocks: int, steps: int = 3) -> nbdiag.Monitor:
    """The issue's GPT layout (d = 64), ``blocks`` blocks, trained ``steps`` sampled steps on random tokens."""
    torch.manual_seed(0)
    model = GPT(vocab=64, context=16, d=64, heads=4, layers=blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        for _ in range(steps):
            idx = torch.randint(0, 64, (2, 16))
            loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    return mon


@pytest.fixture(scope="module")
def gpt() -> nbdiag.Monitor:
    return gpt_monitor(blocks=6)


def drawable(panel: Panel) -> bool:
    """Whether a panel with series has something to draw: a finite value in one of them."""
    values = [s.z if s.kind == "heatmap" else s.y for s in panel.series]
    return any(np.isfinite(np.asarray(v, dtype=np.float64)).any() for v in values if v is not None and len(v))


def test_no_panel_is_laid_out_empty_on_a_gpt(gpt):
    snap = data.snapshot(gpt)
    built = grid.build_panels(snap, ViewState())
    assert "units_time" not in [p.key for p in built]  # GELU units neither die nor saturate: nothing to draw, ever
    for panel in built:
        assert drawable(panel) or (not panel.series and panel.note), panel.key
    fig = static.figure(built, [], "gpt")
    for ax, panel in zip(fig.axes[1:], built, strict=True):  # axes 0 is the findings banner
        drawn = ax.lines or ax.collections or ax.patches or ax.images
        assert drawn or [t.get_text() for t in ax.texts] == [panel.note], panel.key


def test_the_units_time_panel_stays_for_a_model_with_relus_and_has_rows():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)  # every ReLU unit dead: the panel has something to draw
    with nbdiag.watch(model, every=1, display=False) as mon:
        for _ in range(2):
            model(torch.randn(8, 4)).sum().backward()
            mon.step()
    built = {p.key: p for p in grid.build_panels(data.snapshot(mon), ViewState())}
    (heatmap,) = built["units_time"].series
    assert np.asarray(heatmap.z).shape == (1, 2) and np.nanmax(heatmap.z) == 1.0  # one ReLU, two steps, all dead
