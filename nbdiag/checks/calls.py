"""How the checks call the model and the loss: structured inputs (a tuple for a two-input model, a dict as Hugging
Face batches come) and structured outputs (``ModelOutput``, anything with ``.logits``, tuples, dicts).

``preflight(..., forward_fn=..., output_fn=...)`` overrides both for one run (a context variable holds them, so
every check calls the model the same way without passing them down).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nbdiag.checks.losskind import loss_kind
from nbdiag.probe import first_tensor

Inputs = torch.Tensor | tuple | list | dict  # a tensor, or a tuple/list/dict of tensors, batch dimension first
MAIN_KEYS = ("input_ids", "pixel_values", "input_values", "inputs_embeds", "x", "input", "inputs")
LABEL_KEYS = ("labels", "label", "targets", "target", "y")


@dataclass(frozen=True)
class Calls:
    """The user's ways to call the model and to pick the tensor the loss judges (None: nbdiag's defaults)."""

    forward_fn: Callable[[nn.Module, Any], Any] | None = None
    output_fn: Callable[[Any], torch.Tensor] | None = None


_DEFAULT = Calls()
_CALLS: ContextVar[Calls | None] = ContextVar("nbdiag_calls", default=None)


def _calls() -> Calls:
    return _CALLS.get() or _DEFAULT


@contextmanager
def using(calls: Calls) -> Iterator[None]:
    """Make ``calls`` the way every check calls the model inside the block."""
    token = _CALLS.set(calls)
    try:
        yield
    finally:
        _CALLS.reset(token)


def run_model(model: nn.Module, x: Inputs) -> Any:
    """``forward_fn(model, x)`` if given, else ``model(**x)`` for a dict, ``model(*x)`` for a tuple/list, else
    ``model(x)``."""
    forward_fn = _calls().forward_fn
    if forward_fn is not None:
        return forward_fn(model, x)
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def prediction(output: Any) -> torch.Tensor:
    """The tensor a loss judges: ``output_fn(output)`` if given; else the output itself, its ``.logits`` (Hugging
    Face ``ModelOutput``) or ``['logits']``, else the first floating tensor inside (``probe.first_tensor``).

    Raises:
        TypeError: no tensor found, with what to pass instead.
    """
    output_fn = _calls().output_fn
    if output_fn is not None:
        output = output_fn(output)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"output_fn returned {type(output).__name__}, expected a tensor (the model's prediction)")
        return output
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    try:
        return first_tensor(output)
    except TypeError:
        raise TypeError(
            f"got model output of type {type(output).__name__}, expected a tensor, a tuple/dict/dataclass holding "
            "one or an object with .logits; pass nbdiag.preflight(..., output_fn=lambda output: output.<prediction>)"
        ) from None


def loss_of(loss_fn: Callable, output: Any, y: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` on the model's output: a torch loss (or any loss, once ``output_fn`` is given) gets
    :func:`prediction`; an unknown callable gets the output as the model gave it (a VAE's ``(recon, mu, logvar)``)."""
    if isinstance(output, torch.Tensor):
        return loss_fn(output, y)
    if _calls().output_fn is not None or loss_kind(loss_fn).task != "other":
        return loss_fn(prediction(output), y)
    return loss_fn(output, y)


def tensors(x: Inputs) -> list[torch.Tensor]:
    """Every tensor of ``x``, in order."""
    if isinstance(x, torch.Tensor):
        return [x]
    values = x.values() if isinstance(x, dict) else x
    return [value for value in values if isinstance(value, torch.Tensor)]


def map_inputs(x: Inputs, fn: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
    """``x`` with ``fn`` applied to each of its tensors, structure kept (non-tensor entries unchanged)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {key: fn(value) if isinstance(value, torch.Tensor) else value for key, value in x.items()}
    return type(x)(fn(value) if isinstance(value, torch.Tensor) else value for value in x)


def features(x: Inputs) -> torch.Tensor:
    """The tensor the data checks read: ``x`` itself; a dict's main input (``input_ids``, ``pixel_values``, ...);
    a tuple's tensors side by side as (N, D) when they share a dtype (a two-input model), else the first."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, dict):
        for key in MAIN_KEYS:
            if isinstance(x.get(key), torch.Tensor):
                return x[key]
    parts = tensors(x)
    if len({part.dtype for part in parts}) == 1 and len(parts) > 1:
        return torch.cat([part.reshape(len(part), -1) for part in parts], dim=1)
    return parts[0]
