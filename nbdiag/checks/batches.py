"""Turn what the user passes as ``data`` (a DataLoader, an ``(x, y)`` batch, any iterable of batches) into batches."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch

from nbdiag.checks.calls import LABEL_KEYS, Inputs, map_inputs, tensors

Batch = tuple[Inputs, torch.Tensor]  # (inputs: a tensor, or a tuple/dict of tensors, (N, ...); targets (N, ...))

SAMPLE_BATCHES = 8  # batches read from a loader: enough for batch statistics, cheap for any dataset


def collect_batches(data: object, max_batches: int = SAMPLE_BATCHES) -> list[Batch]:
    """Read up to ``max_batches`` ``(x, y)`` batches from ``data``, detached and on the CPU.

    An iterable is read once from its start (a DataLoader starts a fresh pass, and the state of its own
    ``generator``, if any, is restored afterwards; a Python generator is consumed).

    Args:
        data: a ``torch.utils.data.DataLoader``, one ``(x, y)`` batch, or any iterable of ``(x, y)`` batches
            (extra items after ``y`` in a batch, such as sample indices, are ignored). ``x`` may be a tuple of
            tensors (a two-input model, called ``model(*x)``) or a dict (``model(**x)``); a dict batch as Hugging
            Face datasets give it (``{"input_ids", "attention_mask", "labels"}``) is split into inputs and labels.
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
    if isinstance(data, dict):
        return any(isinstance(data.get(key), torch.Tensor) for key in LABEL_KEYS)
    pair = isinstance(data, (tuple, list)) and len(data) >= 2
    return pair and isinstance(data[1], torch.Tensor) and _is_inputs(data[0])


def _is_inputs(x: object) -> bool:
    if isinstance(x, torch.Tensor):
        return True
    values = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
    return bool(values) and all(isinstance(value, torch.Tensor) for value in values)


def _as_batch(item: object, index: int) -> Batch:
    if not _is_batch(item):
        raise TypeError(
            f"batch {index} is a {type(item).__name__}, expected an (inputs, targets) pair (inputs a tensor or a "
            "tuple/dict of tensors) or a dict with 'labels'; wrap the dataset so each item is (x, y)"
        )
    if isinstance(item, dict):
        label_key = next(key for key in LABEL_KEYS if isinstance(item.get(key), torch.Tensor))
        x, y = {key: value for key, value in item.items() if key != label_key}, item[label_key]
    else:
        x, y = item[0], item[1]
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"batch {index} has targets of type {type(y).__name__}, expected a tensor")
    sizes = {int(t.shape[0]) if t.ndim else -1 for t in tensors(x)}
    if y.ndim == 0 or sizes != {y.shape[0]}:
        shapes = [tuple(t.shape) for t in tensors(x)]
        raise ValueError(
            f"batch {index} has inputs {shapes[0] if len(shapes) == 1 else shapes} and targets {tuple(y.shape)}, "
            "expected the same batch size N as the first dimension of every tensor"
        )
    return map_inputs(x, lambda t: t.detach().cpu()), y.detach().cpu()


def concat(batches: list[Batch]) -> Batch:
    """All samples of ``batches`` as one ``(x, y)`` batch (inputs of the same structure, tensor by tensor)."""
    first = batches[0][0]
    if isinstance(first, torch.Tensor):
        x = torch.cat([x for x, _ in batches])
    elif isinstance(first, dict):
        x = {key: torch.cat([x[key] for x, _ in batches]) for key in first}
    else:
        x = type(first)(torch.cat(parts) for parts in zip(*(x for x, _ in batches), strict=True))
    return x, torch.cat([y for _, y in batches])


def select(x: Inputs, rows: slice | torch.Tensor) -> Inputs:
    """The samples ``rows`` of every tensor of ``x``."""
    return map_inputs(x, lambda t: t[rows])


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` moved to ``device``."""
    return map_inputs(batch[0], lambda t: t.to(device)), batch[1].to(device)
