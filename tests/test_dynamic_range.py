"""The ``dynamic_range`` kind: log2(max |x| / min non-zero |x|) of each layer's output, against numpy on the outputs
themselves (read by an independent forward hook)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.quantities.dynamic_range import STATS


def _zeroed(layer: nn.Linear) -> nn.Linear:
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    return layer


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dynamic_range_equals_numpy_on_the_outputs(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), _zeroed(nn.Linear(16, 8)), nn.Linear(8, 3)).to(dtype)
    seen: dict[str, list[np.ndarray]] = {}
    for name, module in model.named_children():
        module.register_forward_hook(
            lambda m, i, o, name=name: seen.setdefault(name, []).append(o.detach().float().numpy().copy())
        )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        x = torch.randn(32, 6, dtype=dtype) * torch.logspace(-3, 3, 32, dtype=torch.float32).to(dtype)[:, None]
        loss = model(x).float().pow(2).mean() + model(x[:4] * 1e4).float().pow(2).mean()  # two calls per layer
        loss.backward()
        opt.step()
        mon.step(loss)
    frame = mon.frame("dynamic_range").pivot(index="layer", columns="stat", values="value")
    for name, outputs in seen.items():
        magnitude = np.abs(np.concatenate([o.reshape(-1) for o in outputs]).astype(np.float64))
        assert frame.loc[name, "amax"] == magnitude.max()
        nonzero = magnitude[magnitude > 0]
        if len(nonzero) == 0:  # the zeroed layer: no non-zero magnitude, so no range (left out of the frame)
            assert np.isnan(frame.loc[name, "amin_nonzero"]) and np.isnan(frame.loc[name, "log2_range"])
            continue
        assert frame.loc[name, "amin_nonzero"] == nonzero.min()
        np.testing.assert_allclose(frame.loc[name, "log2_range"], np.log2(nonzero.max() / nonzero.min()), rtol=1e-12)
    assert frame.loc["1", "log2_range"] > 10  # inputs spread over 6 decades: a ReLU output spans > 2^10
    assert set(mon.frame("dynamic_range")["stat"]) == set(STATS)
    assert mon.record.first_nonfinite is None


def test_dynamic_range_reads_back_from_a_run_directory(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _zeroed(nn.Linear(8, 2)))
    with nbdiag.watch(model, every=1, run_dir=tmp_path / "run", display=False) as mon:
        loss = model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        mon.step(loss)
    live, read = mon.frame("dynamic_range"), nbdiag.open_run(tmp_path / "run").frame("dynamic_range")
    assert len(live) == len(read) == 3 * 3 - 2  # the zeroed layer has no amin_nonzero and no log2_range rows
    np.testing.assert_array_equal(live["value"].to_numpy(), read["value"].to_numpy())
