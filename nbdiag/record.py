"""The host-side record: bounded, thread-safe history of sampled steps and scalars; pandas views of it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nbdiag.errors import ErrorLog
from nbdiag.meta import RunMeta
from nbdiag.names import module_of
from nbdiag.stats import HIST_EDGES

MIN_CAPACITY = 4


@dataclass(frozen=True)
class Block:
    """Statistics of one kind at one step: ``values[i, j]`` is stat ``stats[j]`` of ``layers[i]``.

    ``optional`` names the stats where NaN means "does not apply to this layer" (saturation of an unbounded
    activation, dead units of a tanh): :meth:`Record.frame` leaves those cells out instead of showing a NaN value.
    """

    layers: tuple[str, ...]
    stats: tuple[str, ...]
    values: np.ndarray  # (n_layers, n_stats) float64
    hist: np.ndarray | None = None  # (n_layers, N_BINS) float32 counts, for activation and gradient
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepEntry:
    """Everything recorded at one sampled step, by kind."""

    step: int
    blocks: dict[str, Block]


@dataclass
class NonFinite:
    """Where NaN/Inf was first seen: first tensor in forward order at the first step that had one."""

    step: int
    layer: str
    kind: str
    count: float


def thin_older_half(items: list) -> list:
    """Halve the older half of ``items`` (keep every other one), so a full buffer keeps a decimated history."""
    half = len(items) // 2
    return items[:half:2] + items[half:]


def stat_matrix(
    entries: Sequence[StepEntry], kind: str, stat: str, names: Sequence[str], missing: float = np.nan
) -> np.ndarray:
    """``(len(entries), len(names))`` float64: ``stat`` of ``kind`` for each name at each entry, ``missing`` where
    not recorded (another value than NaN tells a gap from a recorded NaN). Entries whose blocks hold the same names
    in the same order are read in one go."""
    names = tuple(names)
    out = np.full((len(entries), len(names)), missing)
    blocks = [entry.blocks.get(kind) for entry in entries]
    alike: dict[tuple[tuple[str, ...], int], list[int]] = {}
    for row, block in enumerate(blocks):
        if block is not None and stat in block.stats:
            alike.setdefault((block.layers, block.stats.index(stat)), []).append(row)
    for (layers, column), rows in alike.items():
        position = {layer: i for i, layer in enumerate(layers)}
        index = np.array([position.get(name, -1) for name in names], dtype=np.int64)
        found = np.flatnonzero(index >= 0)
        values = np.stack([blocks[row].values[:, column] for row in rows])  # (len(rows), len(layers))
        out[np.ix_(rows, found)] = values[:, index[found]]
    return out


class Record:
    """Bounded history. Writers: the monitor (one thread). Readers: anyone, via snapshots under a lock.

    Memory stops growing at ``capacity`` sampled steps (and ``scalar_capacity`` scalar rows): when full, the
    older half is thinned to every other entry, so a long run keeps its whole span at decreasing resolution.
    """

    def __init__(self, capacity: int = 512, scalar_capacity: int = 20_000) -> None:
        for name, value in (("capacity", capacity), ("scalar_capacity", scalar_capacity)):
            if value < MIN_CAPACITY:
                raise ValueError(f"got {name}={value}, expected an int >= {MIN_CAPACITY}; try {name}=512")
        self.capacity = capacity
        self.scalar_capacity = scalar_capacity
        self._lock = threading.Lock()
        self._entries: list[StepEntry] = []
        self._scalars: dict[int, dict[str, float]] = {}
        self._scalar_names: dict[str, None] = {}  # every name ever logged, in first-logged order
        self._layer_order: dict[str, dict[str, None]] = {}
        self.first_nonfinite: NonFinite | None = None
        self.version = 0  # bumped on every write; renderers poll it
        self._meta = RunMeta()
        self.listeners: list[Callable[[str, Any], None]] = []  # called after each write: ("entry"|"scalars"|...)
        self.errors = ErrorLog()  # nbdiag's own failures around this record (see nbdiag.errors)

    def subscribe(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(event, payload)`` after every write: ("entry", StepEntry), ("scalars", (step, values)),
        ("nonfinite", NonFinite). A failing listener is logged in :attr:`errors` (source "listener") and never
        raises."""
        self.listeners.append(listener)

    def _notify(self, event: str, payload: Any) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, payload)
            except Exception as error:  # a writer must never break training
                self.errors.add("listener", error)

    @property
    def meta(self) -> RunMeta:
        """The run's facts (model, layer types, ...): a frozen :class:`~nbdiag.meta.RunMeta`, whole at any read."""
        return self._meta

    def update_meta(self, **changes: Any) -> None:
        """Change fields of :attr:`meta` (a new RunMeta, swapped in under the lock: readers on other threads, such as
        the run writer, see the old one or the new one, never a half-written one)."""
        with self._lock:
            self._meta = self._meta.replace(**changes)

    def replace_meta(self, meta: RunMeta) -> None:
        """Set :attr:`meta` whole (a run directory read back)."""
        with self._lock:
            self._meta = meta

    def layer_type(self, layer: str) -> str | None:
        """Class name of the module behind ``layer`` (``lstm/0`` -> the LSTM's), if known."""
        types = self._meta.layer_types
        return types.get(layer) or types.get(module_of(layer))

    # -- writing -------------------------------------------------------------------------------------------
    def append(self, entry: StepEntry) -> None:
        """Add one sampled step's statistics; blocks for the step held last are merged into it (same kind: replaced)."""
        with self._lock:
            if self._entries and self._entries[-1].step == entry.step:
                last = self._entries.pop()
                self._entries.append(StepEntry(entry.step, {**last.blocks, **entry.blocks}))
            else:
                self._entries.append(entry)
            if len(self._entries) > self.capacity:
                self._entries = thin_older_half(self._entries)
            for kind, block in entry.blocks.items():
                order = self._layer_order.setdefault(kind, {})
                for layer in block.layers:
                    order.setdefault(layer, None)
            self.version += 1
        self._notify("entry", entry)

    def add_scalars(self, step: int, values: dict[str, float]) -> None:
        """Add the scalars logged at ``step`` (loss, accuracy, ...); values for a step already held are merged."""
        if not values:
            return
        with self._lock:
            self._scalars.setdefault(step, {}).update(values)
            self._scalar_names.update(dict.fromkeys(values))
            if len(self._scalars) > self.scalar_capacity:
                kept = thin_older_half(list(self._scalars))
                self._scalars = {s: self._scalars[s] for s in kept}
            self.version += 1
        self._notify("scalars", (step, values))

    def note_nonfinite(self, found: NonFinite) -> None:
        """Keep the first non-finite sighting; later ones are ignored."""
        with self._lock:
            if self.first_nonfinite is not None:
                return
            self.first_nonfinite = found
            self.version += 1
        self._notify("nonfinite", found)

    # -- reading -------------------------------------------------------------------------------------------
    def entries(self) -> list[StepEntry]:
        """A snapshot of the sampled steps (entries are immutable)."""
        with self._lock:
            return list(self._entries)

    def layers(self, kind: str = "activation") -> list[str]:
        """Layer (or parameter) names of ``kind`` in first-seen order: forward order for activations."""
        with self._lock:
            return list(self._layer_order.get(kind, {}))

    def steps(self) -> list[int]:
        """The sampled steps held."""
        with self._lock:
            return [e.step for e in self._entries]

    def frame(
        self,
        kind: str | None = None,
        layers: list[str] | None = None,
        stats: list[str] | None = None,
    ) -> pd.DataFrame:
        """Long table ``step, layer, kind, stat, value``, optionally filtered."""
        parts = []
        for entry in self.entries():
            for block_kind, block in entry.blocks.items():
                if kind is None or block_kind == kind:
                    parts.append(_block_rows(entry.step, block_kind, block))
        if not parts:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _FRAME_DTYPES.items()})
        frame = pd.concat(parts, ignore_index=True)
        if layers is not None:
            frame = frame[frame["layer"].isin(layers)]
        if stats is not None:
            frame = frame[frame["stat"].isin(stats)]
        return frame.reset_index(drop=True)

    def histograms(self, kind: str = "activation") -> tuple[np.ndarray, pd.DataFrame]:
        """Bin edges and counts: a DataFrame indexed by (step, layer), one column per bin."""
        if kind not in ("activation", "gradient"):
            raise ValueError(f"histograms exist for 'activation' and 'gradient', got kind={kind!r}")
        rows, index = [], []
        for entry in self.entries():
            block = entry.blocks.get(kind)
            if block is None or block.hist is None:
                continue
            rows.append(block.hist)
            index.extend((entry.step, layer) for layer in block.layers)
        counts = np.concatenate(rows) if rows else np.zeros((0, len(HIST_EDGES) - 1), np.float32)
        frame = pd.DataFrame(
            counts,
            index=pd.MultiIndex.from_tuples(index, names=["step", "layer"]),
            columns=range(counts.shape[1]),
        )
        return HIST_EDGES.copy(), frame

    def scalar_series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one scalar as numpy arrays, only the steps that logged it (no DataFrame built)."""
        with self._lock:
            pairs = [(step, values[name]) for step, values in self._scalars.items() if name in values]
        if not pairs:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        steps, values = zip(*pairs, strict=True)
        return np.asarray(steps, np.int64), np.asarray(values, np.float64)

    def scalar_names(self) -> list[str]:
        """The names of every scalar logged, in first-logged order."""
        with self._lock:
            return list(self._scalar_names)

    def scalars(self) -> pd.DataFrame:
        """Logged scalars, one row per step, one column per name."""
        with self._lock:
            steps, values = list(self._scalars), list(self._scalars.values())
        return pd.DataFrame(values, index=pd.Index(steps, name="step", dtype="int64"))


_FRAME_DTYPES = {"step": "int64", "layer": "object", "kind": "object", "stat": "object", "value": "float64"}


def _block_rows(step: int, kind: str, block: Block) -> pd.DataFrame:
    n_layers, n_stats = block.values.shape
    rows = pd.DataFrame(
        {
            "step": np.full(n_layers * n_stats, step, dtype=np.int64),
            "layer": np.repeat(np.array(block.layers, dtype=object), n_stats),
            "kind": kind,
            "stat": np.tile(np.array(block.stats, dtype=object), n_layers),
            "value": block.values.reshape(-1),
        }
    )
    if block.optional:  # NaN there means "does not apply", not a NaN value
        rows = rows[~(rows["stat"].isin(block.optional) & rows["value"].isna())]
    return rows
