"""One sampled step's statistics, gathered on the device and brought to the host in a single copy."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from nbdiag.stats import VECTOR_LEN, RawStats, finalize, merge_raw, merge_vectors

# Tests count calls of this function: one per device per sampled step.
TRANSFERS = {"count": 0}

# A (layer, kind) holds at most this many raw statistics; the next call merges them on the device (exactly), so an
# RNN cell called per time step, or a policy-gradient loop, keeps bounded memory whatever the number of calls.
MERGE_AT = 16


def to_host(flat: torch.Tensor) -> np.ndarray:
    """The one device->host copy of a step (a no-op view on CPU), as numpy of ``flat``'s dtype.

    CUDA: a non-blocking copy into pinned memory, then a wait on the current stream only. Other accelerators
    (MPS, XPU, ...): a plain blocking ``.cpu()``, which every backend has.
    """
    TRANSFERS["count"] += 1
    if flat.device.type == "cpu":
        return flat.numpy()
    if flat.device.type != "cuda":
        return flat.cpu().numpy()
    host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
    host.copy_(flat, non_blocking=True)
    torch.cuda.current_stream(flat.device).synchronize()
    return host.numpy()


def host_dtype(device: torch.device) -> torch.dtype:
    """The dtype a device's parts travel in: float64 (exact counts up to 2^53), float32 where the device has no
    float64 (MPS: counts exact up to 2^24 per tensor, moments were computed in fp32 anyway)."""
    return torch.float32 if device.type == "mps" else torch.float64


Mark = tuple[dict[tuple[str, str], list[RawStats]], dict[str, tuple[list[str], torch.Tensor]]]
Groups = dict[str, tuple[list[str], np.ndarray]]


class StepBuffer:
    """The one owner of a sampled step's device state: (layer, kind) -> raw statistics, and named groups of rows.

    Statistics stay on the device until :meth:`flush`, which concatenates everything per device and copies once.
    Each (layer, kind) keeps a short list of raw statistics; past :data:`MERGE_AT` they are merged on the device.
    Groups come three ways: set whole (:meth:`add_group`, the latest wins), row by row (:meth:`set_row`), or
    accumulated over the step's passes (:meth:`accumulate`, e.g. per-unit counts). Raw statistics and accumulated
    groups are what a pass adds, so they are what :meth:`mark`/:meth:`rollback` restore when a pass raised.
    A lock makes each addition atomic, so gradient hooks on autograd's device threads may add concurrently.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], list[RawStats]] = {}
        self._groups: dict[str, tuple[list[str], torch.Tensor]] = {}
        self._rows: dict[str, dict[str, torch.Tensor]] = {}
        self._accumulated: dict[str, tuple[list[str], torch.Tensor]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Raw statistics held (at most :data:`MERGE_AT` per layer and kind)."""
        return sum(len(raws) for raws in self._pending.values())

    def add(self, layer: str, kind: str, raw: RawStats) -> None:
        """Add one tensor's raw statistics (several calls of one layer merge into one vector)."""
        with self._lock:
            raws = self._pending.setdefault((layer, kind), [])
            raws.append(raw)
            if len(raws) > MERGE_AT:
                raws[:] = [merge_raw(raws)]

    def mark(self) -> Mark:
        """A snapshot to :meth:`rollback` to: the raw statistics and accumulated groups held now (not copies of the
        tensors, which are never changed in place; a merge or a sum makes a new one)."""
        with self._lock:
            return {key: list(raws) for key, raws in self._pending.items()}, dict(self._accumulated)

    def rollback(self, mark: Mark) -> None:
        """Forget the statistics and accumulations added since ``mark`` (those of a pass that raised)."""
        pending, accumulated = mark
        with self._lock:
            self._pending = {key: list(raws) for key, raws in pending.items()}
            self._accumulated = dict(accumulated)

    def add_group(self, group: str, names: list[str], values: torch.Tensor) -> None:
        """Add a (len(names), k) tensor of per-parameter scalars; a later group of the same name replaces it."""
        with self._lock:
            self._groups[group] = (names, values)

    def clear(self) -> None:
        """Forget everything held (a step that was not flushed)."""
        with self._lock:
            self._pending, self._groups, self._rows, self._accumulated = {}, {}, {}, {}

    def set_row(self, group: str, name: str, row: torch.Tensor) -> None:
        """Set the row ``name`` of ``group`` (rows of one group have one shape; flushed in first-set order)."""
        with self._lock:
            self._rows.setdefault(group, {})[name] = row

    def accumulate(self, group: str, names: list[str], values: torch.Tensor, merge: Callable) -> None:
        """Merge ``values`` into ``group``: ``merge(held, values)`` when the group is held (e.g. a sum of counts
        over a layer's calls), else ``values``."""
        with self._lock:
            held = self._accumulated.get(group)
            self._accumulated[group] = (names, values if held is None else merge(held[1], values))

    def held(self, group: str) -> bool:
        """Whether ``group`` holds anything this step (set, row by row or accumulated)."""
        return group in self._groups or group in self._rows or group in self._accumulated

    def flush(
        self,
    ) -> tuple[dict[str, tuple[list[str], np.ndarray]], Groups]:
        """Copy to the host and reset.

        Returns:
            ``(vectors, groups)``: vectors maps kind -> (layers in first-seen order, merged (n, VECTOR_LEN) array);
            groups maps group -> (names, (n, k) array).
        """
        with self._lock:
            pending, groups = self._pending, {**self._accumulated, **self._groups}
            for group, rows in self._rows.items():
                groups[group] = (list(rows), torch.stack(list(rows.values())))
            self._pending, self._groups, self._rows, self._accumulated = {}, {}, {}, {}
        keys = [key for key, raws in pending.items() for _ in raws]
        raw = [r for raws in pending.values() for r in raws]
        parts = [torch.stack([r.moments for r in raw]), torch.stack([r.counts for r in raw])] if raw else []
        parts += [values for _, values in groups.values()]
        host_parts = _copy_parts(parts)
        vectors = {}
        if raw:
            moments, counts = host_parts.pop(0), host_parts.pop(0)
            sizes = np.array([(r.n, r.m) for r in raw], dtype=np.float64)
            vectors = _merge_by_layer(keys, finalize(moments, counts, sizes[:, 0], sizes[:, 1]))
        by_group = {group: (names, host) for (group, (names, _)), host in zip(groups.items(), host_parts, strict=True)}
        return vectors, by_group


def _copy_parts(parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Host copies of ``parts``, with one transfer per device (parts are flattened and concatenated)."""
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, part in enumerate(parts):
        by_device[part.device].append(i)
    host: list[np.ndarray | None] = [None] * len(parts)
    for device, indices in by_device.items():
        dtype = host_dtype(device)
        flat = torch.cat([parts[i].detach().to(dtype).reshape(-1) for i in indices])  # counts stay exact
        copied = to_host(flat).astype(np.float64, copy=False)
        offset = 0
        for i in indices:
            size = parts[i].numel()
            host[i] = copied[offset : offset + size].reshape(parts[i].shape).copy()  # own memory: the record keeps it
            offset += size
    return host  # type: ignore[return-value]


def _merge_by_layer(keys: list[tuple[str, str]], stacked: np.ndarray) -> dict[str, tuple[list[str], np.ndarray]]:
    rows: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        rows.setdefault(key, []).append(i)
    by_kind: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    for (layer, kind), indices in rows.items():
        layers, merged = by_kind.setdefault(kind, ([], []))
        layers.append(layer)
        merged.append(merge_vectors(stacked[indices]) if len(indices) > 1 else stacked[indices[0]])
    return {kind: (layers, np.stack(merged).reshape(-1, VECTOR_LEN)) for kind, (layers, merged) in by_kind.items()}
