"""A forward pass that raises leaves nothing in the step: the StepBuffer (the one owner of a step's device state)
rolls back raw statistics and accumulated groups (per-unit counts, dynamic range) to the mark of that pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("planted")
        return x


def test_a_pass_that_raised_leaves_no_statistics_in_the_step():
    torch.manual_seed(0)
    boom = Boom()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), boom)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        boom.armed = True
        with pytest.raises(RuntimeError, match="planted"):
            model(x * 1e6)  # layers 0 and 1 ran and were measured, then the pass raised
        boom.armed = False
        out = model(x)
        loss = out.pow(2).mean()
        loss.backward()
        opt.step()
        mon.step(loss)
    stats = mon.frame("activation").query("step == 0 and layer == '0'").set_index("stat")["value"]
    assert stats["count"] == 16 * 8  # one pass's elements, not two
    amax = mon.frame("dynamic_range").query("layer == '0' and stat == 'amax'")["value"].iloc[0]
    assert amax < 1e3  # the raising pass's 1e6-scaled outputs were dropped
    units = mon.frame("units").query("layer == '1'").set_index("stat")["value"]
    assert units["units"] == 8 and np.isfinite(units["dead_units"])
    assert mon.errors == []
