"""Per-unit statistics (nbdiag.units): dead and saturated units against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.health import evaluate
from nbdiag.stats import output_bounds
from nbdiag.units import UNIT_SATURATED_FRAC, UNIT_WINDOW, UnitSpec, unit_counts, unit_specs

RELU = UnitSpec(axis=1, dead=True, bounds=None)


def numpy_counts(x: np.ndarray, axis: int, bounds=None) -> np.ndarray:
    """(3, units): outputs > 0, within 1% of the range from a bound, and in all, per unit on ``axis``."""
    units = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)  # (units, everything else)
    saturated = np.zeros_like(units, dtype=bool)
    if bounds is not None:
        low, high = bounds
        margin = 0.01 * (high - low)
        saturated = (units <= low + margin) | (units >= high - margin)
    return np.stack([(units > 0).sum(1), saturated.sum(1), np.full(len(units), units.shape[1])])


def units_at(mon: nbdiag.Monitor, step: int, layer: str) -> dict[str, float]:
    frame = mon.frame("units", layers=[layer])
    rows = frame[frame.step == step]
    return dict(zip(rows.stat, rows.value, strict=True))


def train(model: nn.Module, batches: list[torch.Tensor], **watch) -> nbdiag.Monitor:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with nbdiag.watch(model, opt, every=1, display=False, **watch) as mon:
        for x in batches:
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
            mon.step()
    return mon


@pytest.mark.parametrize(
    ("shape", "spec", "axis"),
    [((64, 12), RELU, 1), ((8, 6, 5, 5), RELU, 1), ((4, 7, 9), UnitSpec(-1, True, None), 2)],
    ids=["features", "conv-channels", "sequence-features"],
)
def test_fired_counts_per_unit_equal_numpy(shape, spec, axis):
    x = torch.relu(torch.randn(shape))
    x.select(axis, 2).zero_()  # a planted dead unit
    counts = unit_counts(x, spec).numpy()
    np.testing.assert_array_equal(counts, numpy_counts(x.numpy(), axis))
    assert counts[0, 2] == 0 and (counts[0] > 0).sum() == shape[axis] - 1


@pytest.mark.parametrize("module", [nn.Tanh(), nn.Sigmoid(), nn.Hardtanh(-2.0, 2.0)])
def test_saturated_counts_per_unit_equal_numpy(module):
    x = module(torch.randn(256, 10) * torch.linspace(0.1, 8.0, 10))  # unit j has pre-activation std 0.1 ... 8
    bounds = output_bounds(module)
    counts = unit_counts(x, UnitSpec(1, False, bounds)).numpy()
    expected = numpy_counts(x.numpy(), 1, bounds)
    np.testing.assert_array_equal(counts[1:], expected[1:])
    np.testing.assert_array_equal(counts[0], expected[2])  # a tanh unit cannot die: "fired" = every output
    assert counts[1, -1] > 0 and counts[1, 0] == 0


def test_a_layer_with_k_planted_dead_units_reports_exactly_k_and_a_healthy_relu_none():
    torch.manual_seed(0)
    k = 20  # half of the layer: the warning threshold (a quarter quiet trains fine, issue 25)
    model = nn.Sequential(nn.Linear(16, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3))
    with torch.no_grad():
        model[0].bias[:k] = -1e3  # dead for every input: never fires again
    batches = [torch.randn(64, 16) for _ in range(UNIT_WINDOW + 2)]
    mon = train(model, batches)
    last = UNIT_WINDOW + 1
    planted, healthy = units_at(mon, last, "1"), units_at(mon, last, "3")
    assert (planted["dead_units"], planted["units"]) == (k, 40)
    assert planted["dead_unit_frac"] == k / 40 and planted["window_steps"] == UNIT_WINDOW
    zero_frac = mon.frame("activation", layers=["3"], stats=["zero_frac"]).value
    assert zero_frac.between(0.35, 0.65).all()  # half its outputs are zero ...
    assert healthy["dead_units"] == 0  # ... and none of its units is dead
    (finding,) = [f for f in evaluate(mon) if f.id == "act.dead_units"]
    assert (finding.layer, finding.severity) == ("1", "warn")
    assert finding.evidence["dead_units"] == k and finding.evidence["units"] == 40
    assert f"20 of 40 units (50%) never fired over steps 2-{last} ({UNIT_WINDOW} sampled steps)" in finding.message


def test_dead_means_never_fired_over_the_window():
    """A unit that fires at step 0 only is dead once step 0 leaves the window of UNIT_WINDOW sampled steps."""
    layer = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), layer)
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    fires = torch.tensor([[1.0, 1.0]])
    silent = torch.tensor([[-1.0, 1.0]])  # unit 0 off
    model.requires_grad_(False)
    model[0].bias.requires_grad_(True)
    mon = nbdiag.watch(model, every=1, display=False)
    for x in [fires] + [silent] * UNIT_WINDOW:
        model(x).sum().backward()
        model.zero_grad()
        mon.step()
    mon.close()
    dead = mon.frame("units", stats=["dead_units"]).set_index("step").value
    assert dead.loc[UNIT_WINDOW - 1] == 0  # step 0 still in the window
    assert dead.loc[UNIT_WINDOW] == 1


def test_repeated_calls_in_one_step_are_merged():
    """A ReLU used twice per forward: a unit is dead only if it fired in neither call (counts add)."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.relu = nn.Linear(4, 6), nn.ReLU()

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.relu(self.linear(a)).sum() + self.relu(-self.linear(b)).sum()

    model = Twice()
    with torch.no_grad():
        model.linear.weight[:3] = 0.0
        model.linear.bias[:3] = torch.tensor([1.0, -1.0, 0.0])  # fires in call 1 only, call 2 only, never
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    mon = nbdiag.watch(model, every=1, display=False)
    model(a, b).backward()
    mon.step()
    mon.close()
    with torch.no_grad():
        calls = [torch.relu(model.linear(a)).numpy(), torch.relu(-model.linear(b)).numpy()]
    fired = numpy_counts(calls[0], 1)[0] + numpy_counts(calls[1], 1)[0]
    row = units_at(mon, 0, "relu")
    assert row["dead_units"] == (fired == 0).sum() and fired[2] == 0 and fired[0] > 0 and fired[1] > 0


def test_saturated_units_of_a_large_init_tanh():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 2))
    with torch.no_grad():
        model[0].weight[:10] *= 50.0  # ten units with a huge pre-activation: pinned at +-1
    batches = [torch.randn(64, 20) for _ in range(4)]
    mon = train(model, batches)
    row = units_at(mon, 3, "1")
    with torch.no_grad():
        outputs = np.concatenate([torch.tanh(model[0](x)).numpy() for x in batches[-1:]])
    pinned_last_step = (np.abs(outputs) >= 0.98).mean(0) >= UNIT_SATURATED_FRAC
    assert row["saturated_units"] == 10 == pinned_last_step.sum()
    assert "dead_units" not in row  # a tanh unit cannot die
    (finding,) = [f for f in evaluate(mon) if f.id == "act.saturation"]
    assert finding.layer == "1" and finding.evidence["saturated_units"] == 10 and finding.severity == "warn"


def test_unit_axis_follows_the_module_before_an_activation():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Tanh())
    specs = unit_specs([(name, m) for name, m in model.named_children()])
    assert specs[id(model[1])].axis == 1 and specs[id(model[4])].axis == -1 and specs[id(model[5])].axis == -1
    assert id(model[0]) not in specs and id(model[3]) not in specs  # neither can die nor saturate


def test_summary_is_in_forward_order_names_types_and_says_what_is_not_recorded():
    torch.manual_seed(0)
    body = [nn.Linear(8, 8) if i % 2 == 0 else nn.ReLU() for i in range(12)]
    model = nn.Sequential(*body, nn.Flatten(), nn.Linear(8, 2))
    mon = train(model, [torch.randn(16, 8) for _ in range(3)])
    table = mon.summary()
    assert list(table.index) == [str(i) for i in (*range(12), 13)]  # "10" after "9", not after "1"
    assert list(table["type"].iloc[:2]) == ["Linear", "ReLU"]
    assert "saturated_frac" not in table.columns  # no bounded activation: no all-NaN column
    assert table.loc["1", "units"] == 8 and table.loc["1", "dead_units"] == units_at(mon, 2, "1")["dead_units"]
    assert table.attrs["not_recorded"] == {"12": "Flatten"}
    assert "not recorded (reshape only): 12 · Flatten" in repr(mon)
