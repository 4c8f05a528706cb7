"""The host-side record: bounded, thread-safe history of sampled steps and scalars; pandas views of it."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nbdiag.errors import ErrorLog
from nbdiag.meta import RunMeta
from nbdiag.names import module_of
from nbdiag.stats import HIST_EDGES

MIN_CAPACITY = 4
# The most bytes of statistics the record holds by default (``Record.nbytes``): a full record of a deep model is thinned
# before it reaches it. 400 recorded layers x 512 sampled steps take ~250 MB (docs/design.md "Memory").
MAX_BYTES = 256 * 2**20
MAX_SHARED_NAMES = 256  # distinct lists of layer names the record shares across entries
ENTRY_OVERHEAD = 1024  # bytes of Python objects per entry and block besides the arrays (StepEntry, dict, Block)


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


def entry_nbytes(entry: StepEntry) -> int:
    """Bytes an entry holds: its blocks' arrays, the tuples of their layer names (the names are shared across
    entries, see :meth:`Record.append`) and :data:`ENTRY_OVERHEAD` per entry and per block."""
    total = ENTRY_OVERHEAD
    for block in entry.blocks.values():
        total += ENTRY_OVERHEAD + block.values.nbytes + (0 if block.hist is None else block.hist.nbytes)
    return total


class Record:
    """Bounded history. Writers: the monitor (one thread). Readers: anyone, via snapshots under a lock.

    Memory stops growing at ``capacity`` sampled steps, or at ``max_bytes`` bytes of statistics (:meth:`nbytes`),
    whichever comes first (and at ``scalar_capacity`` scalar rows): when full, the older half is thinned to every
    other entry, so a long run keeps its whole span at decreasing resolution. A deep model (more than ~400
    recorded layers at the default capacity) reaches ``max_bytes`` first and so keeps fewer sampled steps.
    """

    def __init__(self, capacity: int = 512, scalar_capacity: int = 20_000, max_bytes: int = MAX_BYTES) -> None:
        for name, value in (("capacity", capacity), ("scalar_capacity", scalar_capacity)):
            if value < MIN_CAPACITY:
                raise ValueError(f"got {name}={value}, expected an int >= {MIN_CAPACITY}; try {name}=512")
        if max_bytes <= 0:
            raise ValueError(f"got max_bytes={max_bytes}, expected a positive int; try max_bytes={MAX_BYTES}")
        self.capacity = capacity
        self.scalar_capacity = scalar_capacity
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: list[StepEntry] = []
        self._bytes = 0  # entry_nbytes summed over self._entries
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}  # one shared tuple per distinct list of layers
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
        """Add one sampled step's statistics; blocks for the step held last are merged into it (same kind: replaced).

        The entry's blocks are given the record's one tuple of their layer names (equal to theirs), so that the
        names of a layer are held once, not once per step."""
        with self._lock:
            for kind, block in list(entry.blocks.items()):
                shared = self._shared_names(block)
                if shared is not block:
                    entry.blocks[kind] = shared
            held = entry
            if self._entries and self._entries[-1].step == entry.step:
                last = self._entries.pop()
                self._bytes -= entry_nbytes(last)
                held = StepEntry(entry.step, {**last.blocks, **entry.blocks})
            self._entries.append(held)
            self._bytes += entry_nbytes(held)
            while len(self._entries) > self.capacity or (
                self._bytes > self.max_bytes and len(self._entries) > MIN_CAPACITY
            ):
                self._entries = thin_older_half(self._entries)
                self._bytes = sum(entry_nbytes(e) for e in self._entries)
            for kind, block in entry.blocks.items():
                order = self._layer_order.setdefault(kind, {})
                for layer in block.layers:
                    order.setdefault(layer, None)
            self.version += 1
        self._notify("entry", entry)

    def _shared_names(self, block: Block) -> Block:
        """``block`` with the record's one tuple of its layer names (every sampled step names the same layers: the
        names are then held once, not once per step)."""
        shared = self._names.get(block.layers)
        if shared is None:
            if len(self._names) >= MAX_SHARED_NAMES:  # layers that change at every step: nothing to share
                return block
            shared = self._names.setdefault(block.layers, tuple(sys.intern(name) for name in block.layers))
        return block if shared is block.layers else dataclasses.replace(block, layers=shared)

    def nbytes(self) -> int:
        """Bytes of the statistics held (:func:`entry_nbytes` summed over the entries; the layer names, the scalars
        and the run's facts are not counted): what ``max_bytes`` bounds."""
        with self._lock:
            return self._bytes

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
        layers: Collection[str] | None = None,
        stats: Collection[str] | None = None,
        steps: Collection[int] | None = None,
    ) -> pd.DataFrame:
        """Long table ``step, layer, kind, stat, value``: one row per (step, layer, stat), optionally filtered.

        Every filter is applied before any row is built, so a filtered frame costs only its own rows: on a large
        record (a deep model: 400 layers x 512 sampled steps make ~9 M rows, ~1 GB as a DataFrame) ask for what
        you need, e.g. ``frame("activation", stats=["std"], steps=range(1000, 2000))``.

        Args:
            kind: one kind ("activation", "gradient", "weight", "update", ...); None: all.
            layers: layer (or parameter) names to keep; None: all.
            stats: statistics to keep; None: all.
            steps: step numbers to keep (a ``range``, or any collection: ``record.steps()[-50:]``); None: all.
        """
        keep_layers = None if layers is None else {layers} if isinstance(layers, str) else set(layers)
        keep_stats = None if stats is None else {stats} if isinstance(stats, str) else set(stats)
        keep_steps = steps if steps is None or isinstance(steps, range) else set(steps)
        parts = [
            part
            for entry in self.entries()
            if keep_steps is None or entry.step in keep_steps
            for block_kind, block in entry.blocks.items()
            if kind is None or block_kind == kind
            if (part := _FramePart.of(entry.step, block_kind, block, keep_layers, keep_stats)) is not None
        ]
        total = sum(len(part.values) for part in parts)
        frame = pd.DataFrame(index=pd.RangeIndex(total))
        for column, dtype in _FRAME_DTYPES.items():  # one column at a time: a single column's temporary at a time
            values = np.empty(total, dtype=dtype)
            start = 0
            for part in parts:
                end = start + len(part.values)
                values[start:end] = part.column(column)
                start = end
            frame[column] = values
        return frame

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


@dataclass
class _FramePart:
    """The rows of one block in :meth:`Record.frame`: its values (a view when nothing is filtered out), the layer
    and stat names along them, and which of them are kept."""

    step: int
    kind: str
    layers: np.ndarray  # object, one per row of the block's selection
    stats: np.ndarray  # object, one per column of the block's selection
    values: np.ndarray  # (rows x columns,) float64, the kept cells only when ``kept`` is not None
    kept: np.ndarray | None  # bool over the selection's cells, when some optional NaN cells are left out

    @staticmethod
    def of(step: int, kind: str, block: Block, layers: set[str] | None, stats: set[str] | None) -> _FramePart | None:
        rows = None if layers is None else _positions(block.layers, layers)
        cols = None if stats is None else _positions(block.stats, stats)
        if (rows is not None and not len(rows)) or (cols is not None and not len(cols)):
            return None
        values = block.values
        if rows is not None:
            values = values[rows]
        if cols is not None:
            values = values[:, cols]
        names = np.array(block.layers, dtype=object)
        stat_names = np.array(block.stats, dtype=object)
        names = names if rows is None else names[rows]
        stat_names = stat_names if cols is None else stat_names[cols]
        values = values.reshape(-1)
        kept = None
        if block.optional:  # NaN there means "does not apply", not a NaN value
            optional = np.array([name in block.optional for name in stat_names])
            kept = ~(np.tile(optional, len(names)) & np.isnan(values))
            values = values[kept]
        return _FramePart(step, kind, names, stat_names, values, kept)

    def column(self, name: str) -> Any:
        """This part's cells of the frame's column ``name`` (a scalar when all its rows share it)."""
        if name == "step":
            return self.step
        if name == "kind":
            return self.kind
        if name == "value":
            return self.values
        cells = np.repeat(self.layers, len(self.stats)) if name == "layer" else np.tile(self.stats, len(self.layers))
        return cells if self.kept is None else cells[self.kept]


def _positions(names: tuple[str, ...], keep: set[str]) -> np.ndarray:
    return np.array([i for i, name in enumerate(names) if name in keep], dtype=np.int64)
