"""Random vs grid search lab: many tiny trainings on the 8x8 digits under both strategies with the same budget.

CS231n training recipes, "Choosing hyperparameters" (grid search vs random search; coarse grid, then refine) and
CS231n lecture 5, hyperparameter optimization (coarse to fine, sample in log space; random search finds more
because with few important hyperparameters a grid tries only sqrt(budget) distinct values of each). The model is
softmax regression with L2 weight decay, trained by full-batch gradient descent in numpy: a trial takes about a
few milliseconds (tens under load), so both searches together take seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nbdiag.labs.lab import Lab, present

LR_RANGE = (1e-3, 10.0)  # log10 range of the learning rate: the hyperparameter that matters
DECAY_RANGE = (1e-6, 1e-2)  # weight decay: on digits it barely matters inside this range
STEPS = 60  # full-batch gradient steps per trial
FINE_DECADES = 0.5  # the fine stage searches +-0.5 decade around the coarse stage's best point
TRAIN_SAMPLES = 1200


@dataclass(frozen=True)
class Digits:
    """Standardized digits (train statistics only) with a constant 1 column appended (the bias input)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def digits_split(seed: int = 0) -> Digits:
    """sklearn's digits, shuffled with ``seed``, standardized with the training mean/std."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    x, y = bunch.data[order].astype(np.float64), bunch.target[order]
    mean, std = x[:TRAIN_SAMPLES].mean(0), x[:TRAIN_SAMPLES].std(0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    x = np.hstack([x, np.ones((len(x), 1))])
    return Digits(x[:TRAIN_SAMPLES], y[:TRAIN_SAMPLES], x[TRAIN_SAMPLES:], y[TRAIN_SAMPLES:])


def loss_and_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray, decay: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(x @ w) plus ``decay/2 * ||w[:-1]||^2`` (the last row is the bias, not decayed),
    and its gradient. x: (N, F + 1) with a constant last column; w: (F + 1, C)."""
    logits = x @ w
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y] + 1e-300).mean() + 0.5 * decay * float((w[:-1] ** 2).sum())
    p[np.arange(n), y] -= 1.0
    grad = x.T @ p / n
    grad[:-1] += decay * w[:-1]
    return float(loss), grad


def train_trial(data: Digits, lr: float, decay: float, steps: int = STEPS) -> tuple[float, float]:
    """Train softmax regression from zero weights; return (validation accuracy, final training loss)."""
    w = np.zeros((data.x_train.shape[1], 10))
    loss = math.nan
    for _ in range(steps):
        loss, grad = loss_and_gradient(w, data.x_train, data.y_train, decay)
        if not math.isfinite(loss):
            break
        w -= lr * grad
    logits = data.x_val @ w
    accuracy = float((logits.argmax(axis=1) == data.y_val).mean()) if np.isfinite(logits).all() else 0.0
    return accuracy, loss


def grid_points(budget: int, lr_range: tuple, decay_range: tuple) -> list[tuple[float, float]]:
    """A k x k grid (k = floor(sqrt(budget))), log-spaced in both hyperparameters."""
    k = max(1, math.isqrt(budget))
    lrs = np.geomspace(*lr_range, k)
    decays = np.geomspace(*decay_range, k)
    return [(float(lr), float(decay)) for lr in lrs for decay in decays]


def random_points(budget: int, lr_range: tuple, decay_range: tuple, rng: np.random.Generator) -> list:
    """``budget`` points, log-uniform in both hyperparameters."""
    lrs = 10 ** rng.uniform(*np.log10(lr_range), budget)
    decays = 10 ** rng.uniform(*np.log10(decay_range), budget)
    return [(float(lr), float(decay)) for lr, decay in zip(lrs, decays, strict=True)]


def random_vs_grid(budget: int = 16, seed: int = 0, steps: int = STEPS) -> pd.DataFrame:
    """Coarse-to-fine search of learning rate and weight decay, by grid and by random search, same budget.

    Each strategy runs a coarse stage over ``LR_RANGE`` x ``DECAY_RANGE`` and a fine stage over +-``FINE_DECADES``
    around its own best coarse point (log space). The grid uses floor(sqrt(budget))^2 trials per stage (a square
    grid), random search the same number.

    Args:
        budget: trials per stage and strategy (at least 4).
        seed: seeds the data split and the random search.
        steps: gradient steps per trial.

    Returns:
        One row per trial: strategy ('grid' | 'random'), stage ('coarse' | 'fine'), trial, lr, weight_decay,
        val_acc, train_loss.

    Raises:
        ValueError: ``budget`` < 4 or ``steps`` < 1.
    """
    if not isinstance(budget, int) or budget < 4:
        raise ValueError(f"got budget={budget!r}, expected an int >= 4 (trials per stage), e.g. budget=16")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"got steps={steps!r}, expected a positive int of gradient steps per trial")
    data = digits_split(seed)
    rng = np.random.default_rng(seed)
    trials = math.isqrt(budget) ** 2  # the grid's size; random search gets exactly as many
    rows = []
    for strategy in ("grid", "random"):
        lr_range, decay_range = LR_RANGE, DECAY_RANGE
        for stage in ("coarse", "fine"):
            points = (
                grid_points(trials, lr_range, decay_range)
                if strategy == "grid"
                else random_points(trials, lr_range, decay_range, rng)
            )
            stage_rows = []
            for trial, (lr, decay) in enumerate(points):
                accuracy, loss = train_trial(data, lr, decay, steps)
                stage_rows.append(
                    {
                        "strategy": strategy,
                        "stage": stage,
                        "trial": trial,
                        "lr": lr,
                        "weight_decay": decay,
                        "val_acc": accuracy,
                        "train_loss": loss,
                    }
                )
            rows += stage_rows
            best = max(stage_rows, key=lambda row: row["val_acc"])
            lr_range = _around(best["lr"])
            decay_range = _around(best["weight_decay"])
    return pd.DataFrame(rows)


def _around(value: float) -> tuple[float, float]:
    return value * 10**-FINE_DECADES, value * 10**FINE_DECADES


def search_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: distinct learning rates tried, the best validation accuracy and where it was found."""
    rows = []
    for strategy, group in frame.groupby("strategy", sort=False):
        best = group.loc[group["val_acc"].idxmax()]
        rows.append(
            {
                "strategy": strategy,
                "trials": len(group),
                "distinct_lr": group["lr"].round(12).nunique(),
                "best_val_acc": best["val_acc"],
                "best_lr": best["lr"],
                "best_weight_decay": best["weight_decay"],
                "best_stage": best["stage"],
            }
        )
    return pd.DataFrame(rows).set_index("strategy")


class SearchLab(Lab):
    """The random vs grid search lab: ``frame()`` (every trial), ``summary()``, ``update(budget=, seed=)``."""

    figsize = (14.0, 5.0)

    def __init__(self, budget: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.budget, self.seed = budget, seed
        self.trials = random_vs_grid(budget, seed)

    def update(self, budget: int | None = None, seed: int | None = None) -> pd.DataFrame:
        """Rerun both searches with a new budget or seed (the widget's controls call this)."""
        self.budget = self.budget if budget is None else budget
        self.seed = self.seed if seed is None else seed
        self.trials = random_vs_grid(self.budget, self.seed)
        self._changed()
        return self.trials

    def frame(self) -> pd.DataFrame:
        """Every trial (see :func:`random_vs_grid`)."""
        return self.trials

    def summary(self) -> pd.DataFrame:
        """See :func:`search_summary`."""
        return search_summary(self.trials)

    def summary_text(self) -> str:
        head = f"random vs grid search on digits: {self.budget} trials per stage, coarse then fine, seed {self.seed}"
        return head + "\n" + self.summary().to_string(float_format=lambda v: f"{v:.4g}")


def search_lab(budget: int = 16, seed: int = 0, display: bool | str | None = None) -> SearchLab:
    """Random vs grid search of learning rate and weight decay on digits, with budget and seed controls.

    Args:
        budget: trials per stage and strategy.
        seed: seeds the split and the random search.
        display: how to show it: "widget", "inline" or "static", False for nothing; None (auto) as for
            ``nbdiag.watch``.

    Returns:
        The :class:`SearchLab` (``.frame()``, ``.summary()``, ``.widget``, ``.savefig(path)``).
    """
    return present(SearchLab(budget, seed), display)
