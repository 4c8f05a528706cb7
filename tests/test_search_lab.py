"""Random vs grid search lab: the trainer against autograd, and the seeded expectation that random search tries
more distinct values of the hyperparameter that matters than a grid of the same size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nbdiag
from nbdiag.labs.search import (
    DECAY_RANGE,
    LR_RANGE,
    digits_split,
    grid_points,
    loss_and_gradient,
    random_points,
    random_vs_grid,
    search_summary,
)


def test_loss_and_gradient_match_autograd():
    rng = np.random.default_rng(0)
    x = np.hstack([rng.normal(size=(20, 5)), np.ones((20, 1))])
    y = rng.integers(0, 3, 20)
    w = rng.normal(size=(6, 3))
    loss, grad = loss_and_gradient(w.copy(), x, y, decay=0.1)
    wt = torch.tensor(w, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(torch.tensor(x) @ wt, torch.tensor(y)) + 0.05 * (wt[:-1] ** 2).sum()
    expected.backward()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-10)
    np.testing.assert_allclose(grad, wt.grad.numpy(), rtol=1e-9)


def test_grid_is_square_and_log_spaced_random_is_log_uniform_inside_the_ranges():
    grid = np.array(grid_points(16, LR_RANGE, DECAY_RANGE))
    assert len(grid) == 16 and len(np.unique(grid[:, 0])) == 4
    np.testing.assert_allclose(np.diff(np.log10(np.unique(grid[:, 0]))), 4 / 3)  # 1e-3 .. 1e1 in 3 steps
    points = np.array(random_points(2000, LR_RANGE, DECAY_RANGE, np.random.default_rng(0)))
    logs = np.log10(points[:, 0])
    assert LR_RANGE[0] <= points[:, 0].min() and points[:, 0].max() <= LR_RANGE[1]
    assert abs(np.median(logs) + 1.0) < 0.1  # log-uniform on [-3, 1]: the median exponent is -1
    assert abs(np.mean(logs < -1) - 0.5) < 0.05


def test_random_search_covers_more_learning_rates_than_a_grid_of_the_same_size():
    frame = random_vs_grid(budget=16, seed=0)
    assert len(frame) == 64 and set(frame["stage"]) == {"coarse", "fine"}
    coarse = frame[frame["stage"] == "coarse"]
    distinct = coarse.groupby("strategy")["lr"].nunique()
    assert distinct["grid"] == math.isqrt(16) and distinct["random"] == 16  # sqrt(budget) vs budget
    best = coarse.groupby("strategy")["val_acc"].max()
    assert best["random"] >= best["grid"]  # seed 0: random's coarse stage already finds the better learning rate
    summary = search_summary(frame)
    assert summary.loc["random", "distinct_lr"] > summary.loc["grid", "distinct_lr"]
    assert summary["best_val_acc"].min() > 0.9  # softmax regression on digits reaches ~96-97%


def test_fine_stage_searches_around_the_coarse_best():
    frame = random_vs_grid(budget=4, seed=1, steps=10)
    for strategy, group in frame.groupby("strategy"):
        coarse, fine = group[group["stage"] == "coarse"], group[group["stage"] == "fine"]
        best = coarse.loc[coarse["val_acc"].idxmax()]
        assert (np.abs(np.log10(fine["lr"] / best["lr"])) <= 0.5 + 1e-9).all(), strategy


def test_validation_accuracy_is_that_of_an_independent_training():
    data = digits_split(0)
    frame = random_vs_grid(budget=4, seed=0, steps=5)
    row = frame.iloc[0]
    w = torch.zeros(data.x_train.shape[1], 10, dtype=torch.float64, requires_grad=True)
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(x @ w, y) + 0.5 * row["weight_decay"] * (w[:-1] ** 2).sum()
        (grad,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= row["lr"] * grad
    accuracy = float(((torch.tensor(data.x_val) @ w).argmax(1).numpy() == data.y_val).mean())
    assert row["val_acc"] == pytest.approx(accuracy)


def test_bad_budget_is_a_clear_error_and_the_lab_is_headless():
    with pytest.raises(ValueError, match="budget"):
        random_vs_grid(budget=3)
    lab = nbdiag.labs.search_lab(budget=4, display=False)
    assert "random vs grid" in repr(lab) and lab.png()[:4] == b"\x89PNG"


def test_search_lab_widget_redraws_the_trials_when_a_control_moves():
    """The lab's widget is a figure of its trials (notebook 08 showed text only: the lab read a removed
    attribute), and moving the budget slider reruns both searches and redraws them."""
    lab = nbdiag.labs.search_lab(budget=4, display=False)
    assert type(lab.widget).__name__ == "VBox"
    (figure,) = lab.view.figures
    grid_coarse = figure.data[0]
    coarse = lab.frame().query("strategy == 'grid' and stage == 'coarse'")
    np.testing.assert_array_equal(grid_coarse.x, coarse["lr"].to_numpy())
    lab.view.controls["budget"].value = 9
    assert len(lab.frame()) == 4 * 9
    coarse = lab.frame().query("strategy == 'grid' and stage == 'coarse'")
    np.testing.assert_array_equal(figure.data[0].x, coarse["lr"].to_numpy())
    np.testing.assert_array_equal(figure.data[0].marker.color, coarse["val_acc"].to_numpy())
    assert f"{lab.summary().loc['random', 'best_val_acc']:.4g}" in lab.view.table.value


def test_search_lab_widget_shows_the_accuracies_found_with_nothing_over_the_points():
    """Issue 20 (seen in the browser): the third panel's y axis ran 0-1 over accuracies of 0.85-0.97, the colour
    bar stood over that panel, and the two long subplot titles ran into each other."""
    lab = nbdiag.labs.search_lab(budget=9, seed=0, display=False)
    lab.widget  # noqa: B018 - build it
    (figure,) = lab.view.figures
    accuracies = lab.frame()["val_acc"]
    low, high = figure.layout.yaxis3.range
    assert low <= accuracies.min() and accuracies.max() <= high
    assert high - low < 1.5 * (accuracies.max() - accuracies.min()) + 0.02  # the points fill the panel
    (bar,) = [trace.marker.colorbar for trace in figure.data if trace.marker.showscale]
    assert bar.orientation == "h" and bar.y < 0  # under the grid and random panels, not over the third
    assert bar.x + bar.len / 2 <= figure.layout.xaxis3.domain[0]
    best = lab.summary().loc["random", "best_val_acc"]
    assert [a.text.count("<br>") for a in figure.layout.annotations[:2]] == [1, 1]
    assert f"best {best:.1%}" in figure.layout.annotations[1].text


def test_the_png_colours_span_the_accuracies_found_and_labels_do_not_repeat():
    """Issue 20: a 0-1 colour scale over accuracies of 0.85-0.97 made every trial look alike; the colour bar's
    label sat on top of the third panel's "validation accuracy"."""
    lab = nbdiag.labs.search_lab(budget=9, seed=0, display=False)
    trials = lab.frame() if callable(lab.frame) else lab.frame
    fig = lab.figure()
    coloured = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None and len(c.get_array())]
    assert coloured
    for points in coloured:
        assert points.norm.vmin == pytest.approx(trials["val_acc"].min())
        assert points.norm.vmax == pytest.approx(trials["val_acc"].max())
    ylabels = [ax.get_ylabel() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
    assert ylabels.count("validation accuracy") == 1
