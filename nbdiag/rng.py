"""Forked random state: what runs inside draws from a copy, so observing or checking never shifts the user's RNG."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


@contextmanager
def forked_rng(*structures: Any, seed: int | None = None) -> Iterator[None]:
    """Run the body on a copy of every global random state and restore the caller's states on exit.

    Forks torch's CPU generator and the CUDA generators of the devices the tensors in ``structures`` live on (plus
    the current device once CUDA is initialized), Python's ``random`` and numpy's global state.

    Args:
        structures: tensors, or tuples/lists/dicts of them, that the body will use (their CUDA devices are forked).
        seed: if given, the body starts from ``torch.manual_seed(seed)`` (reproducible checks).
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=_cuda_devices(structures)):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _cuda_devices(structures: tuple) -> list[int]:
    devices = {torch.cuda.current_device()} if torch.cuda.is_initialized() else set()
    stack = list(structures)
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor) and item.is_cuda:
            devices.add(item.device.index)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
    return sorted(devices)
