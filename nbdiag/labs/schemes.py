"""Weight-initialization schemes of CS231n lecture 5 (small, large, Xavier, He, orthogonal, a given std).

The formulas (seeds/004, seeds/002 "Weight Initialization"): keeping Var(y) = Var(x) through ``y = W x`` needs
Var(w) = 1 / fan_in (Xavier, the lecture's form); ReLU zeroes half its inputs, so He doubles it: 2 / fan_in.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEMES = ("small", "large", "xavier", "he", "orthogonal")
SMALL_STD = 0.01  # "small random numbers": N(0, 0.01^2)
LARGE_STD = 1.0  # "large random numbers": N(0, 1)
_ALIASES = {"kaiming": "he", "msra": "he", "glorot": "xavier"}


def canonical_scheme(scheme: str | float) -> str | float:
    """``scheme`` as a name in :data:`SCHEMES`, or a float std for a custom N(0, std^2).

    Args:
        scheme: a name, an alias (kaiming, msra, glorot), a std as float, or a std as a string ("0.05").

    Returns:
        The canonical name, or the std.

    Raises:
        ValueError: for an unknown name or a non-positive std.
    """
    if isinstance(scheme, str):
        name = _ALIASES.get(scheme.lower(), scheme.lower())
        if name in SCHEMES:
            return name
        try:
            scheme = float(scheme)
        except ValueError:
            raise ValueError(
                f"got init scheme {scheme!r}, expected one of {SCHEMES} or a std such as '0.05'; try 'xavier'"
            ) from None
    std = float(scheme)
    if not std > 0 or not math.isfinite(std):
        raise ValueError(f"got init std {std}, expected a positive finite number; try 0.05")
    return std


def fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output unit: ``in_features`` for Linear, ``in_channels/groups * k*k`` for Conv."""
    if weight.dim() < 2:
        raise ValueError(f"got a weight of shape {tuple(weight.shape)}, expected at least 2 dimensions")
    return weight[0].numel()


def scheme_std(scheme: str | float, fan_in: int) -> float:
    """The weight std that ``scheme`` draws from for a layer with ``fan_in`` inputs (orthogonal: 1/sqrt(fan_in)).

    Args:
        scheme: see :func:`canonical_scheme`.
        fan_in: inputs per output unit.

    Returns:
        The std of N(0, std^2): small 0.01, large 1, xavier 1/sqrt(fan_in), he sqrt(2/fan_in), or the given std.
    """
    scheme = canonical_scheme(scheme)
    if isinstance(scheme, float):
        return scheme
    return {
        "small": SMALL_STD,
        "large": LARGE_STD,
        "xavier": 1 / math.sqrt(fan_in),
        "orthogonal": 1 / math.sqrt(fan_in),  # an orthogonal (fan_out x fan_in) matrix's entries have this rms
        "he": math.sqrt(2 / fan_in),
    }[scheme]


@torch.no_grad()
def init_weight_(weight: torch.Tensor, scheme: str | float, generator: torch.Generator) -> torch.Tensor:
    """Fill ``weight`` (out, in, ...) in place by ``scheme``, drawing only from ``generator``.

    Orthogonal uses gain 1 (a norm-preserving map, the analogue of Xavier); the others draw N(0, std^2) with
    :func:`scheme_std`.

    Returns:
        ``weight``.
    """
    if canonical_scheme(scheme) == "orthogonal":
        return nn.init.orthogonal_(weight, gain=1.0, generator=generator)
    std = scheme_std(scheme, fan_in(weight))
    return weight.normal_(0.0, std, generator=generator)
