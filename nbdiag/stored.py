"""Read a module's tensors as stored, without running user code.

``module.weight`` is not always a stored tensor: on a parametrized module (``torch.nn.utils.parametrize``:
``parametrizations.spectral_norm``, ``weight_norm``, orthogonal, ...) reading it *runs* the parametrization, and
``spectral_norm`` in train mode then steps its power iteration and overwrites its ``_u``/``_v`` buffers, so the next
forward computes another weight (the loss changes). A property of a user's module may compute or have side effects
too. nbdiag reads what the module stores (``_parameters``, ``_buffers``, the parametrization's ``original``) and
never calls ``getattr`` on a module for a tensor.
"""

from __future__ import annotations

import torch
from torch import nn


def stored_tensor(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """The tensor that stores ``module.<name>``, found without running anything; None when there is none.

    - a parameter or buffer: itself;
    - a parametrized tensor: its unconstrained original (``parametrizations.<name>.original``; of several originals,
      as ``weight_norm``'s g and v, the largest: v has the weight's shape);
    - the hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm``: their stored ``<name>_v`` / ``<name>_orig``.
    """
    originals = _parametrization_originals(module, name)
    if originals:
        return max(originals, key=lambda t: t.numel())
    for key in (name, f"{name}_orig", f"{name}_v"):
        tensor = module._parameters.get(key)
        if tensor is None:
            tensor = module._buffers.get(key)
        if isinstance(tensor, torch.Tensor):
            return tensor
    return None


def _parametrization_originals(module: nn.Module, name: str) -> list[torch.Tensor]:
    """The stored originals of a ``torch.nn.utils.parametrize`` parametrization of ``name`` (none: [])."""
    container = module._modules.get("parametrizations")
    if container is None or name not in container._modules:
        return []
    parametrization = container._modules[name]
    stored = {**parametrization._buffers, **parametrization._parameters}  # a non-Parameter original is a buffer
    return [t for key, t in stored.items() if key.startswith("original") and isinstance(t, torch.Tensor)]
