"""compare_inits: never touches the caller's model or RNG; statistics and recommendation follow lecture 5."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.labs.reinit import reinit_, residual_last_layers


def mlp(activation=nn.ReLU, depth=8, width=128, classes=10) -> nn.Sequential:
    layers, d = [], 32
    for _ in range(depth):
        layers += [nn.Linear(d, width), activation()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, classes))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 32, generator=g), torch.randint(0, 10, (256,), generator=g)


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.downsample = nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(self.downsample(x) + self.fc2(torch.relu(self.fc1(x))))


def test_the_model_and_rng_are_untouched(batch):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))
    model.train()
    model[1].eval()  # a mixed mode must survive too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = nbdiag.compare_inits(model, batch, schemes=("small", "xavier", "he", "orthogonal"))
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.training and not model[1].training and model[3].training
    assert all(p.grad is None for p in model.parameters())
    assert set(result.summary().index) == {"small", "xavier", "he", "orthogonal"}


def test_relu_net_prefers_he_and_explains_why(batch):
    result = nbdiag.compare_inits(mlp(), batch)
    assert result.best == "he"
    assert "'small' collapses" in result.recommendation and "'large' explodes" in result.recommendation
    summary = result.summary()
    # ReLU + Xavier halves the second moment per layer: over 8 layers the last hidden std is far below the first.
    assert summary.loc["xavier", "act_std_last"] < 0.2 * summary.loc["xavier", "act_std_first"]
    # Small init: logits ~ 0, so the initial loss is the chance loss ln(10) (seeds/001 "verify loss @ init").
    assert summary.loc["small", "chance_loss"] == pytest.approx(math.log(10))
    assert summary.loc["small", "initial_loss"] == pytest.approx(math.log(10), abs=1e-3)
    assert summary.loc["large", "initial_loss"] > 100


def test_frame_weight_std_follows_the_formula(batch):
    result = nbdiag.compare_inits(mlp(depth=2, width=256), batch, schemes=("he", "xavier", 0.05))
    frame = result.frame()
    linear = frame[frame["type"] == "Linear"]
    fans = {"0": 32, "2": 256, "4": 256}
    for _, row in linear.iterrows():
        expected = {"he": math.sqrt(2 / fans[row.layer]), "xavier": 1 / math.sqrt(fans[row.layer]), "0.05": 0.05}
        assert row.weight_std == pytest.approx(expected[row.scheme], rel=0.1)  # >= 2.5k draws per layer
    assert list(frame.columns[:4]) == ["scheme", "index", "layer", "type"]
    # Activation std of the first layer is checked against a manual forward of the same re-initialized copy.
    copy = reinit_(mlp(depth=2, width=256), "he", seed=0)
    with torch.no_grad():
        first = copy[0](batch[0])
    row = frame[(frame.scheme == "he") & (frame.layer == "0")].iloc[0]
    assert row.act_std == pytest.approx(first.std(correction=0).item(), rel=1e-5)
    assert row.act_mean == pytest.approx(first.mean().item(), abs=1e-6)


def test_factory_and_current_scheme(batch):
    calls = []

    def factory():
        calls.append(1)
        return mlp(depth=2)

    result = nbdiag.compare_inits(factory, batch, schemes=("current", "he"), seed=5)
    assert len(calls) == 2
    torch.manual_seed(5)
    reference = mlp(depth=2)
    current = result.frame().query("scheme == 'current' and layer == '0'").iloc[0]
    assert current.weight_std == pytest.approx(reference[0].weight.std(correction=0).item(), rel=1e-6)
    with pytest.raises(TypeError, match="expected an nn.Module"):
        nbdiag.compare_inits(lambda: 3, batch)
    with pytest.raises(ValueError, match="expected one of"):
        nbdiag.compare_inits(mlp(depth=1), batch, schemes=("tiny",))


def test_zero_init_residual_makes_blocks_start_as_identity():
    model = nn.Sequential(Block(16), Block(16))
    assert residual_last_layers(model) == [model[0].fc2, model[1].fc2]  # never the downsample path
    reinit_(model, "he", zero_init_residual=True)
    x = torch.randn(8, 16)
    with torch.no_grad():
        torch.testing.assert_close(model[0](x), torch.relu(model[0].downsample(x)))
    assert model[0].downsample.weight.abs().sum() > 0
    result = nbdiag.compare_inits(
        nn.Sequential(Block(16), nn.Linear(16, 3)),
        (torch.randn(32, 16), torch.randint(0, 3, (32,))),
        schemes=("he",),
        zero_init_residual=True,
    )
    fc2 = result.frame().query("layer == '0.fc2'").iloc[0]
    assert fc2.act_std == 0 and fc2.weight_std == 0
    with pytest.raises(ValueError, match="without a weight"):
        reinit_(nn.Sequential(Block(4)), "he", zero_init_residual=["0.nothing"])


def test_regression_and_unlabelled_batches():
    x, y = torch.randn(128, 8), torch.randn(128, 1) * 3 + 1
    result = nbdiag.compare_inits(mlp(depth=2, classes=1)[:], (x[:, :8].repeat(1, 4), y), schemes=("he", "small"))
    # Chance for regression: predicting the mean, MSE = Var(y).
    assert result.summary().loc["he", "chance_loss"] == pytest.approx(y.var(correction=0).item())
    small_loss = result.summary().loc["small", "initial_loss"]
    assert small_loss == pytest.approx((y**2).mean().item(), rel=1e-3)  # near-zero outputs: MSE = E[y^2]
    unlabelled = nbdiag.compare_inits(mlp(depth=2), torch.randn(64, 32), schemes=("he",))
    assert math.isnan(unlabelled.summary().loc["he", "initial_loss"])
    assert unlabelled.frame()["grad_std"].notna().all()


def test_views_headless(tmp_path, batch):
    result = nbdiag.compare_inits(mlp(depth=3), batch, schemes=("xavier", "he"))
    assert result.savefig(tmp_path / "inits.png").read_bytes()[:4] == b"\x89PNG"
    assert result.plot() is not None
    widget = result.widget
    assert type(widget).__name__ == "VBox"
    act_traces = [t for t in result.view.figure_widget.data if t.type == "scatter" and t.xaxis == "x"]
    he = result.frame().query("scheme == 'he'")
    np.testing.assert_allclose(next(t.y for t in act_traces if t.name == "he"), he["act_std"])
    assert "compare_inits" in repr(result) and result.recommendation in repr(result)


def test_the_recommendation_is_the_lowest_score_and_places_the_lectures_rule(batch):
    """The recommendation never contradicts the table: on a shallow tanh net He scores lower than Xavier (the
    lecture's rule for tanh), so He is recommended and the sentence says where Xavier stands and why."""
    torch.manual_seed(0)
    tanh = nn.Sequential(*(m for _ in range(3) for m in (nn.Linear(32, 32), nn.Tanh())), nn.Linear(32, 10))
    result = nbdiag.compare_inits(tanh, batch)
    summary = result.summary()
    assert result.best == summary["score"].idxmin() == "he" and result.nonlinearity == "Tanh"
    assert result.recommendation.startswith(f"Use 'he': it has the lowest score ({summary.loc['he', 'score']:.3g})")
    xavier = f"'xavier', the lecture's rule for Tanh, scores {summary.loc['xavier', 'score']:.3g} on this model: "
    assert xavier in result.recommendation
    assert "score = act_scale" in result.summary_text()


def test_the_lectures_rule_is_named_when_it_is_also_the_lowest_score(batch):
    result = nbdiag.compare_inits(mlp(), batch, schemes=("small", "xavier", "he"))
    assert result.best == "he" == result.summary()["score"].idxmin()
    assert "It is also the lecture's rule for ReLU." in result.recommendation
    only_xavier = nbdiag.compare_inits(mlp(), batch, schemes=("small", "xavier"))  # ReLU + Xavier: std halves
    assert only_xavier.best == "xavier" and "it has the lowest score" in only_xavier.recommendation
