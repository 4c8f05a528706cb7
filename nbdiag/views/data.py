"""Pure functions from a record to plot-ready numpy arrays; nothing here imports a plotting library."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nbdiag.names import owning_layer
from nbdiag.record import Block, StepEntry
from nbdiag.stats import HIST_EDGES

MAX_SCALAR_POINTS = 2_000  # scalar curves are thinned to about this many points per series
MISSING = -np.inf  # fill for "not recorded", so a recorded NaN/Inf stays apart from a gap (values here are >= 0)
MAX_TIMELINE = 256  # sampled steps drawn on per-layer time axes (bounds the widget's saved state)


@dataclass(frozen=True)
class Snapshot:
    """One consistent reading of a source (anything with ``.record``): what every panel of one refresh draws."""

    version: int
    entries: list[StepEntry]
    layers: list[str]  # activation layers in forward order: the depth axis
    labels: list[str]  # "3 · Conv2d", one per layer
    scalars: pd.DataFrame  # one row per step
    num_classes: int | None
    predictions: Any = None  # a frozen nbdiag.predictions.PredictionHistory, or None
    record: Any = field(default=None, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per snapshot under ``key`` (indexes and structure that several panels read)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def label(self, name: str) -> str:
        """Readable name of a layer or parameter (see :func:`layer_label`)."""
        return layer_label(self.record, name) if self.record is not None else name

    @property
    def timeline(self) -> list[StepEntry]:
        """The entries drawn on per-layer time axes: every k-th, at most ``MAX_TIMELINE``, the latest always."""
        stride = max(1, math.ceil(len(self.entries) / MAX_TIMELINE))
        return self.entries[::-1][::stride][::-1]

    @property
    def steps(self) -> np.ndarray:
        """(S,) the steps of :attr:`timeline`."""
        return np.array([entry.step for entry in self.timeline], dtype=np.int64)


def snapshot(source: Any) -> Snapshot:
    """Read ``source.record`` (and ``source.predictions`` when present) once.

    Args:
        source: a Monitor, a run reader, or anything exposing ``.record``.

    Returns:
        The :class:`Snapshot`; its entries are immutable, so it stays consistent while training goes on.
    """
    record = source.record
    version = record.version
    layers = record.layers("activation")
    return Snapshot(
        version=version,
        entries=record.entries(),
        layers=layers,
        labels=[layer_label(record, layer) for layer in layers],
        scalars=record.scalars(),
        num_classes=record.meta.num_classes,
        predictions=_predictions(source),
        record=record,
    )


def _predictions(source: Any) -> Any:
    """The source's prediction history, frozen so that every panel of one refresh reads the same steps."""
    history = getattr(source, "predictions", None)
    return history.frozen() if history is not None else None


def layer_label(record: Any, name: str) -> str:
    """A readable name: ``"3 · Conv2d"`` for layer ``3``, ``"3.weight · Conv2d"`` for its parameter."""
    kind = record.layer_type(name) or record.layer_type(owning_layer(name))
    return f"{name} · {kind}" if kind else name


def step_index(snap: Snapshot, index: int | None) -> int | None:
    """Clamp a step-slider index to the entries held; None (or out of range) means the latest."""
    if not snap.entries:
        return None
    if index is None or not 0 <= index < len(snap.entries):
        return len(snap.entries) - 1
    return index


def _row_index(snap: Snapshot, block: Block, names: tuple[str, ...]) -> np.ndarray:
    """For each name, its row in ``block`` (-1 when absent); cached per distinct layer tuple."""

    def rows() -> np.ndarray:
        position = {layer: i for i, layer in enumerate(block.layers)}
        return np.array([position.get(name, -1) for name in names], dtype=np.int64)

    return snap.cached((block.layers, names), rows)


def block_column(
    snap: Snapshot, block: Block | None, stat: str, names: list[str], missing: float = np.nan
) -> np.ndarray:
    """(len(names),) values of ``stat`` in ``block`` for ``names`` in that order; ``missing`` where not recorded."""
    out = np.full(len(names), missing)
    if block is None or stat not in block.stats:
        return out
    rows = _row_index(snap, block, tuple(names))
    found = rows >= 0
    out[found] = block.values[rows[found], block.stats.index(stat)]
    return out


def depth_profile(
    snap: Snapshot,
    kind: str,
    stat: str,
    index: int | None,
    missing: float = np.nan,
    layers: list[str] | None = None,
) -> np.ndarray:
    """(L,) ``stat`` of ``kind`` per activation layer (forward order; or per one of ``layers``) at entry ``index``
    (None: latest)."""
    layers = snap.layers if layers is None else layers
    index = step_index(snap, index)
    if index is None:
        return np.full(len(layers), missing)
    return block_column(snap, snap.entries[index].blocks.get(kind), stat, layers, missing)


def histograms_at(snap: Snapshot, kind: str, index: int | None, layers: list[str] | None = None) -> np.ndarray:
    """(L, B) histogram counts per activation layer (or per one of ``layers``) at entry ``index``; zeros where a
    layer has none."""
    layers = snap.layers if layers is None else layers
    counts = np.zeros((len(layers), len(HIST_EDGES) - 1))
    index = step_index(snap, index)
    block = None if index is None else snap.entries[index].blocks.get(kind)
    if block is None or block.hist is None:
        return counts
    rows = _row_index(snap, block, tuple(layers))
    found = rows >= 0
    counts[found] = block.hist[rows[found]]
    return counts


def histogram_over_time(snap: Snapshot, kind: str, layer: str) -> np.ndarray:
    """(B, S) histogram counts of one layer per timeline step (zeros where not recorded)."""
    columns = []
    for entry in snap.timeline:
        block = entry.blocks.get(kind)
        column = np.zeros(len(HIST_EDGES) - 1)
        if block is not None and block.hist is not None and layer in block.layers:
            column = block.hist[block.layers.index(layer)].astype(np.float64)
        columns.append(column)
    return np.stack(columns, axis=1) if columns else np.zeros((len(HIST_EDGES) - 1, 0))


def occupied_bins(counts: np.ndarray, margin: int = 1) -> slice:
    """The bin range holding any count in (..., B) ``counts``, widened by ``margin`` bins (all bins when empty)."""
    occupied = np.flatnonzero(counts.reshape(-1, counts.shape[-1]).sum(axis=0) > 0)
    if not len(occupied):
        return slice(0, counts.shape[-1])
    return slice(max(occupied[0] - margin, 0), min(occupied[-1] + margin + 1, counts.shape[-1]))


def symlog_ticks(bins: slice, max_ticks: int = 5) -> tuple[list[float], list[str]]:
    """Tick positions (in bin-index units) and labels for the decade edges inside ``bins`` of ``HIST_EDGES``.

    Inner edge ``j`` (``HIST_EDGES[j + 1]``) lies between bins ``j`` and ``j + 1``, at position ``j + 0.5``.
    Zero is always labelled; each side keeps its outermost decade and evenly spaced ones inward, at most
    ``max_ticks`` labels in all.
    """
    inner = HIST_EDGES[1:-1].astype(np.float64)
    negative, positive = [], []
    for j, edge in enumerate(inner):
        position = j + 0.5
        if bins.start - 0.5 <= position <= bins.stop - 0.5 and _is_decade(abs(edge)):
            label = f"{edge:.0e}".replace("e+00", "").replace("e-0", "e-").replace("e+0", "e")
            (negative if edge < 0 else positive).append((position, label))
    zero = float(np.searchsorted(inner, 0.0))  # the bin [-1e-10, 1e-10) holds zero
    middle = [(zero, "0")] if bins.start <= zero < bins.stop else []
    per_side = max(1, (max_ticks - len(middle)) // 2)
    ticks = _outermost(negative[::-1], per_side)[::-1] + middle + _outermost(positive, per_side)
    return [position for position, _ in ticks], [label for _, label in ticks]


def _outermost(ticks: list, count: int) -> list:
    """At most ``count`` of ``ticks`` (ordered inner to outer), evenly spaced, the outermost always kept."""
    stride = max(1, math.ceil(len(ticks) / count))
    return ticks[::-1][::stride][::-1]


def _is_decade(magnitude: float) -> bool:
    exponent = math.log10(magnitude)
    return abs(exponent - round(exponent)) < 1e-6 and abs(round(exponent)) <= 4


def thin(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_SCALAR_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Every k-th point so at most about ``max_points`` remain (the last point is always kept)."""
    stride = max(1, math.ceil(len(steps) / max_points))
    if stride == 1:
        return steps, values
    keep = np.unique(np.append(np.arange(0, len(steps), stride), len(steps) - 1))
    return steps[keep], values[keep]


def scalar_series(snap: Snapshot, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (steps, values)`` for the logged scalars ``names``, NaN rows dropped, thinned for display."""
    series = {}
    for name in names:
        column = snap.scalars[name].replace([np.inf, -np.inf], np.nan).dropna()
        series[name] = thin(column.index.to_numpy(np.int64), column.to_numpy(np.float64))
    return series


def nonfinite_steps(snap: Snapshot, name: str) -> np.ndarray:
    """Steps at which the scalar ``name`` was logged as NaN or Inf (``scalar_series`` leaves them out)."""
    if snap.record is None:
        return np.zeros(0, np.int64)
    steps, values = snap.record.scalar_series(name)
    return steps[~np.isfinite(values)]


def is_loss_name(name: str) -> bool:
    """Scalars drawn on the loss panel: ``loss``, ``val_loss``, ``train_loss``, ``loss_val``, ..."""
    return "loss" in name.lower()


def chance_loss(num_classes: int | None) -> float | None:
    """-ln(1/C), the cross-entropy of a uniform guess over C classes; None when C is unknown."""
    if not num_classes or num_classes < 2:
        return None
    return math.log(num_classes)


def lines_with_gaps(x: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the rows of an (L, S) ``matrix`` over ``x`` into one polyline, NaN-separated (one trace for L lines)."""
    n_rows = matrix.shape[0]
    xs = np.tile(np.append(x.astype(np.float64), np.nan), n_rows)
    ys = np.concatenate([matrix, np.full((n_rows, 1), np.nan)], axis=1).reshape(-1)
    return xs, ys
