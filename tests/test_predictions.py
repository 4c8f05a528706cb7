"""PredictionTracker: observing changes nothing, numbers equal a manual softmax, memory stays bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.labs.predictions import PredictionTracker
from nbdiag.monitor import NbdiagWarning


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g)


def test_recording_changes_nothing_and_matches_manual_softmax(batch):
    model = classifier().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}  # includes BN running stats
    tracker = nbdiag.track_predictions(model, batch, max_samples=32)
    rng = torch.get_rng_state()
    tracker.record(7)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        expected = torch.softmax(model.eval()(batch[0][:32]), dim=1).numpy()
    np.testing.assert_allclose(tracker.probabilities()[0], expected, rtol=1e-6)
    frame = tracker.frame()
    assert list(frame.columns) == ["step", "sample", "target", "pred", "p_true"]
    np.testing.assert_allclose(frame["p_true"], expected[np.arange(32), batch[1][:32].numpy()], rtol=1e-6)
    np.testing.assert_array_equal(frame["pred"], expected.argmax(1))
    assert tracker.task == "classification" and tracker.steps == [7]


def test_mixed_modes_are_restored(batch):
    model = classifier().train()
    model[3].eval()
    tracker = PredictionTracker(model, batch)
    tracker.record(0)
    assert model.training and model[1].training and not model[3].training


def test_predictions_follow_training(batch):
    model = classifier()
    tracker = nbdiag.track_predictions(model, batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(40):
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            tracker.record(step)
    p_true = tracker.p_true()
    assert p_true.shape == (8, 40)
    assert p_true[-1].mean() > p_true[0].mean()  # the model fits its batch: p(true class) rises


def test_capacity_thins_older_steps(batch):
    tracker = PredictionTracker(classifier(), batch, capacity=10)
    for step in range(100):
        tracker.record(step)
    assert len(tracker.steps) <= 10
    assert tracker.steps[0] == 0 and tracker.steps[-1] == 99 and tracker.steps == sorted(tracker.steps)
    tracker.record(99)  # the same step again replaces it
    assert tracker.steps.count(99) == 1


def test_regression_and_binary_tasks():
    x, y = torch.randn(20, 3), torch.randn(20)
    model = nn.Linear(3, 1)
    tracker = nbdiag.track_predictions(model, (x, y))
    tracker.record(1)
    assert tracker.task == "regression"
    frame = tracker.frame()
    with torch.no_grad():
        np.testing.assert_allclose(frame["pred"], model(x)[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(frame["target"], y.numpy())
    with pytest.raises(ValueError, match="regression"):
        tracker.probabilities()
    binary = nbdiag.track_predictions(model, (x, (y > 0).long()))
    binary.record(0)
    with torch.no_grad():
        positive = torch.sigmoid(model(x)[:, 0]).numpy()
    np.testing.assert_allclose(binary.probabilities()[0, :, 1], positive, rtol=1e-6)


def test_failures_warn_once_and_never_raise(batch):
    tracker = PredictionTracker(nn.Linear(5, 2), batch)  # wrong input size: the forward fails
    with pytest.warns(NbdiagWarning, match="prediction tracking failed"):
        tracker.record(0)
    tracker.record(1)  # no second warning (pytest's filterwarnings would turn it into an error)
    assert tracker.steps == [] and len(tracker.errors) == 2
    tracker.model = None  # the monitor does this on close
    tracker.record(2)
    assert len(tracker.errors) == 2


def test_bad_arguments(batch):
    with pytest.raises(ValueError, match="expected \\(inputs, targets\\)"):
        PredictionTracker(classifier(), batch[0])
    with pytest.raises(ValueError, match="task"):
        PredictionTracker(classifier(), batch, task="ranking")
    with pytest.raises(ValueError, match="capacity"):
        PredictionTracker(classifier(), batch, capacity=1)


def test_views_headless(tmp_path):
    images, labels = torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    tracker = nbdiag.track_predictions(model, (images, labels))
    assert tracker.images.shape == (12, 8, 8)
    tracker.record(0)
    tracker.widget  # noqa: B018 - build it
    with torch.no_grad():
        model[1].weight.add_(1.0)
    tracker.record(10)
    tracker.refresh()
    heat = tracker.view.figure_widget.data[0]
    np.testing.assert_allclose(np.asarray(heat.z), tracker.p_true().T)
    tracker.view.slider.value = 0
    labels_shown = [a.text for a in tracker.view.figure_widget.layout.annotations[2:]]
    expected = [f"{p}/{t}" for p, t in zip(tracker.predicted()[0], labels.numpy(), strict=True)]
    assert labels_shown == expected
    assert tracker.savefig(tmp_path / "pred.png").read_bytes()[:4] == b"\x89PNG"
    regression = nbdiag.track_predictions(nn.Linear(2, 1), (torch.randn(5, 2), torch.randn(5)))
    regression.record(0)
    regression.widget  # noqa: B018
    np.testing.assert_allclose(regression.view.figure_widget.data[2].y, regression.outputs()[0, :, 0])
