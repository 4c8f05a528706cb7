"""One sampled step's statistics, gathered on the device and brought to the host in a single copy."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from nbdiag.stats import VECTOR_LEN, RawStats, finalize, merge_vectors

# Tests count calls of this function: one per device per sampled step.
TRANSFERS = {"count": 0}


def to_host(flat: torch.Tensor) -> np.ndarray:
    """The one device->host copy of a step (a no-op view on CPU), as float64 numpy."""
    TRANSFERS["count"] += 1
    if flat.device.type == "cpu":
        return flat.numpy()
    host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
    host.copy_(flat, non_blocking=True)
    torch.cuda.current_stream(flat.device).synchronize()
    return host.numpy()


class StepBuffer:
    """Collects (layer, kind) -> stats vectors and named groups of per-parameter scalars for one step.

    Vectors stay on the device until :meth:`flush`, which concatenates everything per device and copies once.
    Appends are atomic list operations, so gradient hooks on autograd's threads may add concurrently.
    """

    def __init__(self, max_vectors: int) -> None:
        self.max_vectors = max_vectors
        self.overflowed = False
        self._keys: list[tuple[str, str]] = []
        self._raw: list[RawStats] = []
        self._groups: dict[str, tuple[list[str], torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def add(self, layer: str, kind: str, raw: RawStats) -> None:
        """Add one tensor's raw statistics (several calls of one layer are merged on the host)."""
        if len(self._raw) >= self.max_vectors:
            self.overflowed = True
            return
        self._keys.append((layer, kind))
        self._raw.append(raw)

    def add_group(self, group: str, names: list[str], values: torch.Tensor) -> None:
        """Add a (len(names), k) tensor of per-parameter scalars; a later group of the same name replaces it."""
        self._groups[group] = (names, values)

    def flush(
        self,
    ) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, tuple[list[str], np.ndarray]]]:
        """Copy to the host and reset.

        Returns:
            ``(vectors, groups)``: vectors maps kind -> (layers in first-seen order, merged (n, VECTOR_LEN) array);
            groups maps group -> (names, (n, k) array).
        """
        raw = self._raw
        parts = [torch.stack([r.moments for r in raw]), torch.stack([r.counts for r in raw])] if raw else []
        parts += [values for _, values in self._groups.values()]
        host_parts = _copy_parts(parts)
        vectors = {}
        if raw:
            moments, counts = host_parts.pop(0), host_parts.pop(0)
            sizes = np.array([(r.n, r.m) for r in raw], dtype=np.float64)
            vectors = _merge_by_layer(self._keys, finalize(moments, counts, sizes[:, 0], sizes[:, 1]))
        groups = {
            group: (names, host) for (group, (names, _)), host in zip(self._groups.items(), host_parts, strict=True)
        }
        self._keys, self._raw, self._groups = [], [], {}
        self.overflowed = False
        return vectors, groups


def _copy_parts(parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Host copies of ``parts``, with one transfer per device (parts are flattened and concatenated)."""
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, part in enumerate(parts):
        by_device[part.device].append(i)
    host: list[np.ndarray | None] = [None] * len(parts)
    for indices in by_device.values():
        flat = torch.cat([parts[i].detach().double().reshape(-1) for i in indices])  # counts stay exact
        copied = to_host(flat)
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
