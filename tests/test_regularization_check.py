"""model.over_regularized: batch norm over too few samples per channel, dropout that drowns the signal (issue 19,
class 4). Numbers against independent computations; usual setups stay quiet."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.checks.regularization import BN_MIN_SAMPLES, DROPOUT_NOISE, check_regularization

D = 20


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _batches(batch: int, count: int = 8, shape: tuple = (D,)) -> list:
    torch.manual_seed(1)
    return [(torch.randn(batch, *shape) * 3 + 1, torch.randint(0, 4, (batch,))) for _ in range(count)]


def _mlp(*extra) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 32), *extra, nn.ReLU(), nn.Linear(32, 4))


def test_batch_norm_over_two_samples_warns_with_the_measured_wiggle():
    model, batches = _mlp(nn.BatchNorm1d(32)), _batches(2)
    (finding,) = check_regularization(model, batches)
    assert finding.severity == "warn" and finding.layer == "1" and finding.evidence["samples_per_channel"] == 2
    with torch.no_grad():  # independent: the BN input's per-channel batch means, batch to batch
        inputs = [model[0](x) for x, _ in batches]
    means = torch.stack([h.mean(0) for h in inputs])
    spread = torch.stack([h.var(0, unbiased=False) for h in inputs]).mean(0) + means.var(0, unbiased=False)
    expected = float((means.std(0) / spread.sqrt()).median())
    assert finding.evidence["batch_mean_noise"] == pytest.approx(expected, rel=1e-4)
    assert expected > 1 / math.sqrt(2) / 2


@pytest.mark.parametrize(
    ("model", "batch", "shape"),
    [
        (lambda: _mlp(nn.BatchNorm1d(32)), 64, (D,)),  # the usual batch
        (lambda: _mlp(nn.BatchNorm1d(32)), BN_MIN_SAMPLES, (D,)),  # at the threshold
        (lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.LazyLinear(4)), 2, (3, 10, 10)),
        (lambda: _mlp(nn.BatchNorm1d(32)).eval(), 2, (D,)),  # statistics frozen: eval-mode batch norm
    ],
    ids=["batch64", "batch8", "bn2d_batch2_8x8_maps", "frozen_bn"],
)
def test_batch_norm_with_enough_samples_or_frozen_is_quiet(model, batch, shape):
    assert check_regularization(model(), _batches(batch, shape=shape)) == []


def test_dropout_p_09_warns_with_the_measured_noise_to_signal():
    model, batches = _mlp(nn.Dropout(0.9)), _batches(64)
    (finding,) = check_regularization(model, batches)
    assert finding.evidence["cause"] == "dropout" and finding.evidence["p"] == [0.9]
    x = batches[0][0]
    with torch.no_grad():  # independent: variance over masks against variance over samples
        clean = model.eval()(x)
        model.train()
        noisy = torch.stack([model(x) for _ in range(64)])
    ratio = float(noisy.var(0).mean() / clean.var(0).mean())
    assert ratio > DROPOUT_NOISE and finding.evidence["noise_to_signal"] == pytest.approx(ratio, rel=0.5)
    assert "p=0.1" in finding.message


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_usual_dropout_is_quiet_even_deep(p):
    torch.manual_seed(0)
    layers = [m for _ in range(4) for m in (nn.LazyLinear(64), nn.ReLU(), nn.Dropout(p))]
    assert check_regularization(nn.Sequential(*layers, nn.Linear(64, 4)), _batches(64)) == []


def test_preflight_leaves_the_model_and_its_modes_alone():
    model = _mlp(nn.BatchNorm1d(32), nn.Dropout(0.9))
    model[2].eval()  # the user froze the dropout layer
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = nbdiag.preflight(model, _batches(2), nn.CrossEntropyLoss(), checks=("regularization",), progress=False)
    assert [f.evidence["cause"] for f in report.findings if f.id == "model.over_regularized"] == ["batch_norm"]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training and not model[2].training
