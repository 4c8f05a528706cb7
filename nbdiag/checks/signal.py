"""Inputs squashed to nothing, judged against the first layer's init rather than a fixed floor (issue 19, class 5).

PyTorch initializes a ``Linear`` / ``ConvNd`` layer for unit-variance inputs (seeds/004, CS231n lecture 5, weight
initialization: "unit variance in, unit variance out"; 37 reasons 2.1 "standardize the inputs"): its weights give
outputs of std ~0.58 for such inputs, its bias a spread of ~0.58/sqrt(fan_in). Inputs scaled far below unit size
(pixels divided by 255 twice: RMS 0.0019) pass a fixed RMS floor of 1e-3, yet the first layer then outputs
almost nothing but its bias: its units cannot tell one sample from another until the weights grow ~100x. This
check runs the first layer that has a weight and a bias on the first batch (a copy; a forward pre-hook reads its
input) and compares the spread the inputs cause, std over samples of ``W x`` (bias left out), with the spread of
the bias over units: below ``SIGNAL_TO_BIAS`` of it (the bias is 10x louder), the inputs are squashed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nbdiag.checks.batches import Batch, to_device
from nbdiag.checks.calls import run_model
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

SIGNAL_TO_BIAS = 0.1  # the input-driven spread of the first layer below a tenth of its bias spread
FIRST_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class _Stop(Exception):
    """Raised by the pre-hook once the first layer's input is read: the rest of the forward is not needed."""


def check_input_signal(model: nn.Module, batches: list[Batch]) -> list[Finding]:
    """Inputs so small that the first layer sees mostly its bias (``data.unnormalized``, warn).

    Args:
        model: the model (a copy runs, in eval mode, until its first layer).
        batches: the sampled batches; the first is used.

    Returns:
        At most one finding; none when the first layer has no bias, or the inputs are not floating point.
    """
    with forked_rng(seed=CHECK_SEED), torch.no_grad():
        clone = model_copy(model, train=False)
        first = _first_layer_input(clone, to_device(batches[0], model_device(clone))[0])
    if first is None:
        return []
    name, layer, x = first
    signal = _input_spread(layer, x)
    bias = float(layer.bias.detach().double().std()) if layer.bias.numel() > 1 else 0.0
    if not bias > 0 or signal >= SIGNAL_TO_BIAS * bias:
        return []
    rms = float(x.double().square().mean().sqrt())
    message = (
        f"the inputs reach layer {name} ({type(layer).__name__}) at root mean square {rms:.3g}: the spread they "
        f"cause there (std of W x over samples, {signal:.3g}) is {signal / bias:.1%} of its bias's ({bias:.3g}), "
        f"so its units see almost only their bias. Its init expects unit-variance inputs: scale or standardize "
        "the inputs (divided by 255 twice?)"
    )
    evidence = {"layer": name, "rms": rms, "input_spread": signal, "bias_spread": bias, "ratio": signal / bias}
    return [make_finding("data.unnormalized", "warn", message, evidence=evidence)]


def _first_layer_input(model: nn.Module, x: object) -> tuple[str, nn.Module, torch.Tensor] | None:
    """(name, module, its input) of the first Linear/ConvNd with a bias that the forward calls on ``x``."""
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []

    def hook(name: str, module: nn.Module, args: tuple) -> None:
        if module.bias is not None and args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            seen.append((name, module, args[0].detach()))
        raise _Stop

    handles = [
        module.register_forward_pre_hook(lambda m, a, name=name: hook(name, m, a))
        for name, module in model.named_modules()
        if isinstance(module, FIRST_LAYER_TYPES)
    ]
    try:
        run_model(model, x)
    except _Stop:
        pass
    except Exception:  # noqa: BLE001 - the model raised; the setup check reports it
        return None
    finally:
        for handle in handles:
            handle.remove()
    return seen[0] if seen else None


def _input_spread(layer: nn.Module, x: torch.Tensor) -> float:
    """The median over output units of the std over samples (and positions) of the layer's output without bias."""
    weight, linear = layer.weight.detach(), isinstance(layer, nn.Linear)
    # a convolution keeps its own padding, stride, dilation and groups
    out = F.linear(x, weight) if linear else layer._conv_forward(x, weight, None)
    axis = -1 if linear else 1
    units = out.shape[axis]
    per_unit = out.movedim(axis, 0).reshape(units, -1).double()
    return float(per_unit.std(dim=1).median()) if per_unit.shape[1] > 1 else 0.0
