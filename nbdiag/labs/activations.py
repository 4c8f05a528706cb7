"""The activations lab: curves and derivatives, and what an input distribution does to each activation.

seeds/002 "Activation Functions": saturated sigmoid/tanh units kill the gradient, ReLU dies for x < 0, leaky
ReLU / ELU / SELU / GELU soften that. For x ~ N(mean, std^2) the lab shows the share saturated, the share of
outputs exactly zero (``zero_frac``; in nbdiag "dead" is a unit that never fires on any input, which one input
distribution cannot say) and the mean gradient that passes through.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from nbdiag.labs.functions import ACTIVATIONS, get_activation, saturated_mask
from nbdiag.labs.lab import Lab, present

QUADRATURE_HALF_WIDTH = 10.0  # integrate over mean +- 10 std: the Gaussian mass outside is below 2e-23
QUADRATURE_POINTS = 20_000  # midpoint rule, step 1e-3 std: a jump in the integrand costs at most 4e-4


def activation_curves(x: np.ndarray | None = None, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Each activation and its derivative on ``x``.

    Args:
        x: input values; default 401 points on [-5, 5].
        names: activations (keys of ``nbdiag.labs.functions.ACTIVATIONS``); default all.

    Returns:
        Long DataFrame: ``activation, x, value, grad``.

    Raises:
        ValueError: for an unknown activation name.
    """
    x_values = torch.as_tensor(np.linspace(-5, 5, 401) if x is None else np.asarray(x), dtype=torch.float64)
    frames = []
    for name in names or tuple(ACTIVATIONS):
        act = get_activation(name)
        frames.append(
            pd.DataFrame(
                {
                    "activation": name,
                    "x": x_values.numpy(),
                    "value": act.fn(x_values).numpy(),
                    "grad": act.grad(x_values).numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def activation_stats(mean: float = 0.0, std: float = 1.0, names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Expectations over x ~ N(mean, std^2), by numerical integration (deterministic, no sampling).

    Args:
        mean: mean of the input distribution.
        std: its standard deviation (> 0).
        names: activations; default all.

    Returns:
        One row per activation (index ``activation``): ``saturated`` = P(output within 1% of a bound where the
        function flattens, the rule of ``nbdiag.stats``), ``zero_frac`` = P(f(x) = 0) (ReLU: the inputs below 0,
        where f'(x) = 0 too), ``mean_grad`` = E[f'(x)],
        ``out_mean`` = E[f(x)], ``out_std`` = std of f(x).

    Raises:
        ValueError: for std <= 0 or an unknown name.
    """
    if not std > 0:
        raise ValueError(f"got std={std}, expected a positive number; try std=1.0")
    x, weight = _gaussian_quadrature(mean, std)
    rows = {}
    for name in names or tuple(ACTIVATIONS):
        act = get_activation(name)
        value, grad = act.fn(x), act.grad(x)
        out_mean = float(weight @ value)
        rows[name] = {
            "saturated": float(weight @ saturated_mask(value, act.bounds).double()),
            "zero_frac": float(weight @ (value == 0).double()),
            "mean_grad": float(weight @ grad),
            "out_mean": out_mean,
            "out_std": math.sqrt(max(float(weight @ (value - out_mean) ** 2), 0.0)),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "activation"
    frame.attrs.update(mean=mean, std=std)
    return frame


def _gaussian_quadrature(mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint nodes x and weights w (summing to 1) with sum(w * g(x)) ~ E[g(X)], X ~ N(mean, std^2)."""
    step = 2 * QUADRATURE_HALF_WIDTH / QUADRATURE_POINTS
    z = -QUADRATURE_HALF_WIDTH + step * (torch.arange(QUADRATURE_POINTS, dtype=torch.float64) + 0.5)
    weight = torch.exp(-0.5 * z**2)
    return mean + std * z, weight / weight.sum()


class ActivationsLab(Lab):
    """The activations lab: ``frame()`` (the curves, fixed), ``summary()`` (statistics for the current input
    distribution), ``update()``."""

    figsize = (15.0, 4.5)

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.curves = activation_curves()
        self.mean, self.std = mean, std
        self.stats = activation_stats(mean, std)

    def update(self, mean: float | None = None, std: float | None = None) -> pd.DataFrame:
        """Recompute ``stats`` for a new input distribution (the sliders call this)."""
        self.mean = self.mean if mean is None else mean
        self.std = self.std if std is None else std
        self.stats = activation_stats(self.mean, self.std)
        self._changed()
        return self.stats

    def frame(self) -> pd.DataFrame:
        """Every activation's f(x) and f'(x) on a grid (see :func:`activation_curves`)."""
        return self.curves

    def summary(self) -> pd.DataFrame:
        """Per activation, for the current input distribution (see :func:`activation_stats`)."""
        return self.stats

    def summary_text(self) -> str:
        head = f"activations lab: input x ~ N({self.mean:g}, {self.std:g}^2)"
        return head + "\n" + self.stats.to_string(float_format=lambda v: f"{v:.3f}")


def activations_lab(mean: float = 0.0, std: float = 1.0, display: bool | str | None = None) -> ActivationsLab:
    """Curves and derivatives of sigmoid, tanh, relu, leaky relu, elu, selu, gelu, with input-distribution sliders.

    Args:
        mean: starting mean of the input distribution.
        std: its starting std.
        display: how to show it: "widget", "inline" or "static" (no controls: a PNG), False for nothing;
            None (auto) as for ``nbdiag.watch``: chosen for the front end, nothing outside a notebook.

    Returns:
        The :class:`ActivationsLab` (``.curves``, ``.stats``, ``.widget``, ``.savefig(path)``).
    """
    return present(ActivationsLab(mean, std), display)
