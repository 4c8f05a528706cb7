"""The activation functions the labs teach: each one's value, closed-form derivative and output bounds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nbdiag.stats import saturated_mask as stats_saturated_mask

LEAKY_SLOPE = 0.01  # CS231n's leaky ReLU: max(0.01 x, x)
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


@dataclass(frozen=True)
class Activation:
    """One activation: ``fn(x)``, its derivative ``grad(x)`` in closed form, and the bounds of its range.

    ``bounds`` is (low, high) with None for an open side, in the form :func:`nbdiag.stats.tensor_stats` takes:
    a side is given only where the function flattens out towards it (an asymptote that stalls learning).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]
    bounds: tuple[float | None, float | None] | None
    dies_below_zero: bool = False  # the gradient is exactly 0 for x < 0 (ReLU's dead region)


def _sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _gelu_grad(x: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_grad, (0.0, 1.0)),
    "tanh": Activation("tanh", torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, (-1.0, 1.0)),
    "relu": Activation("relu", torch.relu, lambda x: (x > 0).to(x.dtype), None, dies_below_zero=True),
    "leaky_relu": Activation(
        "leaky_relu",
        lambda x: F.leaky_relu(x, LEAKY_SLOPE),
        lambda x: torch.where(x > 0, 1.0, LEAKY_SLOPE).to(x.dtype),
        None,
    ),
    "elu": Activation("elu", F.elu, lambda x: torch.where(x > 0, 1.0, torch.exp(x)).to(x.dtype), (-1.0, None)),
    "selu": Activation(
        "selu",
        F.selu,
        lambda x: SELU_SCALE * torch.where(x > 0, 1.0, SELU_ALPHA * torch.exp(x)).to(x.dtype),
        (-SELU_SCALE * SELU_ALPHA, None),
    ),
    "gelu": Activation("gelu", F.gelu, _gelu_grad, None),
}


def get_activation(name: str, allowed: tuple[str, ...] | None = None) -> Activation:
    """The :class:`Activation` called ``name``.

    Args:
        name: a key of :data:`ACTIVATIONS`.
        allowed: restrict to these names (a lab may offer a subset).

    Returns:
        The activation.

    Raises:
        ValueError: for an unknown name.
    """
    names = allowed if allowed is not None else tuple(ACTIVATIONS)
    if name not in names:
        raise ValueError(f"got activation={name!r}, expected one of {names}; try activation='tanh'")
    return ACTIVATIONS[name]


def saturated_mask(values: torch.Tensor, bounds: tuple[float | None, float | None] | None) -> torch.Tensor:
    """Where ``values`` lie within the saturation margin of a bound (:func:`nbdiag.stats.saturated_mask`), or nowhere
    for an unbounded activation."""
    if bounds is None:
        return torch.zeros_like(values, dtype=torch.bool)
    return stats_saturated_mask(values, bounds)
