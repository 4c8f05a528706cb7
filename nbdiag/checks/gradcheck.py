"""Gradient check for custom layers and losses: analytical against numerical gradients in float64."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nbdiag.checks.sandbox import CHECK_SEED
from nbdiag.rng import forked_rng

GRADCHECK_EPS = 1e-6  # central-difference step (float64)
GRADCHECK_ATOL = 1e-5
GRADCHECK_RTOL = 1e-3


@dataclass(frozen=True)
class GradcheckResult:
    """The outcome of :func:`gradcheck`.

    Attributes:
        passed: whether ``torch.autograd.gradcheck`` accepted the gradients.
        max_error: the largest |analytical - numerical| entry of the Jacobians over all inputs.
        worst_input: the position (in ``inputs``) of the input with that error, or None when no input needs grad.
        errors: the largest error per input position (floating inputs only).
        message: torch's explanation when the check failed, else "".
    """

    passed: bool
    max_error: float
    worst_input: int | None
    errors: dict[int, float]
    message: str

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        where = f" (input {self.worst_input})" if self.worst_input is not None else ""
        return f"gradcheck {verdict}: max |analytical - numerical| = {self.max_error:.3g}{where}"


def gradcheck(
    fn: Callable,
    *inputs: torch.Tensor,
    eps: float = GRADCHECK_EPS,
    atol: float = GRADCHECK_ATOL,
    rtol: float = GRADCHECK_RTOL,
) -> GradcheckResult:
    """Compare ``fn``'s autograd gradients with central differences, in float64 (``torch.autograd.gradcheck``).

    Use on a custom ``nn.Module`` layer, a custom ``autograd.Function`` or a hand-written loss, with small inputs
    (the cost grows with their size). A module is deep-copied and converted to float64; the caller's is untouched.
    Source: seeds/003 (37 reasons) 3.3 "check the custom loss", 3.7 "check custom layers".

    Args:
        fn: a callable or module taking ``inputs`` and returning a tensor (or a tuple of tensors).
        *inputs: example inputs; floating tensors are checked (as float64 copies), others are passed through.
        eps: the finite-difference step.
        atol: absolute tolerance.
        rtol: relative tolerance.

    Returns:
        A :class:`GradcheckResult`.

    Raises:
        TypeError: ``fn`` is not callable, or no input is a tensor.
    """
    if not callable(fn):
        raise TypeError(f"got fn of type {type(fn).__name__}, expected a callable or nn.Module")
    if not any(isinstance(t, torch.Tensor) for t in inputs):
        raise TypeError("got no tensor input, expected gradcheck(fn, tensor, ...); pass example inputs")
    fn64 = copy.deepcopy(fn).double() if isinstance(fn, nn.Module) else fn
    inputs64 = tuple(_as_float64(t) for t in inputs)
    with forked_rng(seed=CHECK_SEED):
        try:
            passed = torch.autograd.gradcheck(fn64, inputs64, eps=eps, atol=atol, rtol=rtol, raise_exception=True)
            message = ""
        except RuntimeError as error:
            passed, message = False, str(error)
        errors = _jacobian_errors(fn64, inputs64, eps)
    worst = max(errors, key=errors.get) if errors else None
    return GradcheckResult(bool(passed), errors.get(worst, 0.0), worst, errors, message)


def _as_float64(tensor: object) -> object:
    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
        return tensor.detach().double().requires_grad_(True)
    return tensor


def _outputs(fn: Callable, inputs: tuple) -> torch.Tensor:
    out = fn(*inputs)
    parts = out if isinstance(out, (tuple, list)) else (out,)
    return torch.cat([p.reshape(-1) for p in parts if isinstance(p, torch.Tensor)])


def _jacobian_errors(fn: Callable, inputs: tuple, eps: float) -> dict[int, float]:
    """Largest |analytical - numerical| Jacobian entry per floating input (central differences)."""
    outputs = _outputs(fn, inputs)  # (M,)
    errors = {}
    for position, tensor in enumerate(inputs):
        if not (isinstance(tensor, torch.Tensor) and tensor.requires_grad):
            continue
        analytical = torch.stack([_grad_row(value, tensor) for value in outputs])  # (M, numel)
        numerical = _numerical_jacobian(fn, inputs, position, eps)
        errors[position] = float((analytical - numerical).abs().max()) if analytical.numel() else 0.0
    return errors


def _grad_row(value: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    if not value.requires_grad:
        return torch.zeros(tensor.numel(), dtype=torch.float64)
    (grad,) = torch.autograd.grad(value, tensor, retain_graph=True, allow_unused=True)
    return torch.zeros(tensor.numel(), dtype=torch.float64) if grad is None else grad.reshape(-1)


@torch.no_grad()
def _numerical_jacobian(fn: Callable, inputs: tuple, position: int, eps: float) -> torch.Tensor:
    tensor = inputs[position]
    flat = tensor.detach().clone().reshape(-1)
    columns = []
    for k in range(flat.numel()):
        shifted = []
        for sign in (1.0, -1.0):
            probe = flat.clone()
            probe[k] += sign * eps
            args = list(inputs)
            args[position] = probe.reshape(tensor.shape)
            shifted.append(_outputs(fn, tuple(args)))
        columns.append((shifted[0] - shifted[1]) / (2 * eps))
    return torch.stack(columns, dim=1)  # (M, numel)
