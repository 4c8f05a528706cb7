"""Turn what the user passes as ``data`` (a DataLoader, an ``(x, y)`` batch, any iterable of batches) into batches."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs (N, ...), targets (N, ...))

SAMPLE_BATCHES = 8  # batches read from a loader: enough for batch statistics, cheap for any dataset


def collect_batches(data: object, max_batches: int = SAMPLE_BATCHES) -> list[Batch]:
    """Read up to ``max_batches`` ``(x, y)`` batches from ``data``, detached and on the CPU.

    An iterable is read once from its start (a DataLoader starts a fresh pass, and the state of its own
    ``generator``, if any, is restored afterwards; a Python generator is consumed).

    Args:
        data: a ``torch.utils.data.DataLoader``, one ``(x, y)`` batch, or any iterable of ``(x, y)`` batches
            (extra items after ``y`` in a batch, such as sample indices, are ignored).
        max_batches: read at most this many batches.

    Returns:
        A non-empty list of ``(x, y)`` tensor pairs with the batch dimension first.

    Raises:
        TypeError: ``data`` is not a batch or an iterable of batches, or a batch is not an ``(x, y)`` pair of tensors.
        ValueError: ``data`` yields no batch.
    """
    if _is_batch(data):
        return [_as_batch(data, 0)]
    if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
        raise TypeError(
            f"got data of type {type(data).__name__}, expected a DataLoader, an (x, y) batch or an iterable "
            "of (x, y) batches; try nbdiag.preflight(model, (x, y), loss_fn)"
        )
    generator = getattr(data, "generator", None)  # a DataLoader's own shuffling RNG: restored after reading
    saved = generator.get_state() if isinstance(generator, torch.Generator) else None
    try:
        batches = [_as_batch(item, index) for index, item in enumerate(islice(data, max_batches))]
    finally:
        if saved is not None:
            generator.set_state(saved)
    if not batches:
        raise ValueError("got data that yields no batch, expected at least one (x, y) batch; is the dataset empty?")
    return batches


def _is_batch(data: object) -> bool:
    return isinstance(data, (tuple, list)) and len(data) >= 2 and isinstance(data[0], torch.Tensor)


def _as_batch(item: object, index: int) -> Batch:
    if not _is_batch(item):
        raise TypeError(
            f"batch {index} is a {type(item).__name__}, expected an (inputs, targets) pair of tensors; "
            "wrap the dataset so each item is (x, y)"
        )
    x, y = item[0], item[1]
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"batch {index} has targets of type {type(y).__name__}, expected a tensor")
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"batch {index} has inputs {tuple(x.shape)} and targets {tuple(y.shape)}, expected the same batch "
            "size N as the first dimension of both"
        )
    return x.detach().cpu(), y.detach().cpu()


def concat(batches: list[Batch]) -> Batch:
    """All samples of ``batches`` as one ``(x, y)`` batch."""
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` moved to ``device``."""
    return batch[0].to(device), batch[1].to(device)
