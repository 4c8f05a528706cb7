"""One segment = one Parquet table of long rows; record entries and scalars to rows and back.

Columns (see docs/run-directory.md): ``step`` int64, ``kind`` string, ``layer`` string (null for scalars),
``stat`` string, ``value`` float64 (null for histogram rows), ``counts`` list<float32> (histogram rows only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nbdiag.record import Block, StepEntry

SCALAR_KIND = "scalar"
HIST_STAT = "hist"
SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("kind", pa.string()),
        ("layer", pa.string()),
        ("stat", pa.string()),
        ("value", pa.float64()),
        ("counts", pa.list_(pa.float32())),
    ]
)


class SegmentRows:
    """Rows gathered between two segment writes, as column chunks (no per-row Python objects for stats)."""

    def __init__(self) -> None:
        self._chunks: list[pa.Table] = []

    def __len__(self) -> int:
        return sum(t.num_rows for t in self._chunks)

    def add_entry(self, entry: StepEntry) -> None:
        """Rows of every block of ``entry``: one per (layer, stat), one per histogram."""
        for kind, block in entry.blocks.items():
            self._chunks.append(_stat_rows(entry.step, kind, block))
            if block.hist is not None:
                self._chunks.append(_hist_rows(entry.step, kind, block))

    def add_scalars(self, step: int, values: dict[str, float]) -> None:
        """One row per scalar logged at ``step``."""
        n = len(values)
        self._chunks.append(
            _table(np.full(n, step, np.int64), [SCALAR_KIND] * n, [None] * n, list(values), list(values.values()))
        )

    def take(self) -> pa.Table:
        """All rows gathered so far (and forget them)."""
        chunks, self._chunks = self._chunks, []
        return pa.concat_tables(chunks) if chunks else SCHEMA.empty_table()


def write_segment(table: pa.Table, path: str) -> None:
    """Write one segment (small row groups stay readable by any Parquet reader)."""
    pq.write_table(table, path, compression="zstd")


def read_segment(path: str) -> pd.DataFrame:
    """A segment's rows (raises on a truncated or corrupt file)."""
    return pq.read_table(path, schema=SCHEMA).to_pandas()


def decode_entries(rows: pd.DataFrame, optional: dict[str, list[str]] | None = None) -> list[StepEntry]:
    """Rebuild the step entries held in a segment's ``rows``: steps, blocks, layers and stats in written order;
    ``optional`` is each kind's ``Block.optional`` (from the manifest)."""
    optional = optional or {}
    rows = rows[rows["kind"] != SCALAR_KIND]
    is_hist = (rows["stat"] == HIST_STAT).to_numpy()
    hists = {key: group for key, group in rows[is_hist].groupby(["step", "kind"], sort=False)}
    entries: dict[int, dict[str, Block]] = {}
    for (step, kind), group in rows[~is_hist].groupby(["step", "kind"], sort=False):
        block = _block(group, hists.get((step, kind)), tuple(optional.get(kind, ())))
        entries.setdefault(int(step), {})[kind] = block
    return [StepEntry(step, blocks) for step, blocks in entries.items()]


def decode_scalars(rows: pd.DataFrame) -> list[tuple[int, dict[str, float]]]:
    """The ``(step, {name: value})`` scalar writes held in ``rows``, in first-seen step order."""
    scalars = rows[rows["kind"] == SCALAR_KIND]
    return [
        (int(step), dict(zip(group["stat"], group["value"].astype(float), strict=True)))
        for step, group in scalars.groupby("step", sort=False)
    ]


def _block(group: pd.DataFrame, hist_rows: pd.DataFrame | None, optional: tuple[str, ...] = ()) -> Block:
    layers = tuple(pd.unique(group["layer"]))
    stats = tuple(pd.unique(group["stat"]))  # every (layer, stat) cell is written, NaN included
    layer_index = pd.Index(layers).get_indexer(group["layer"])
    stat_index = pd.Index(stats).get_indexer(group["stat"])
    values = np.full((len(layers), len(stats)), np.nan)  # (n_layers, n_stats)
    values[layer_index, stat_index] = group["value"].to_numpy(np.float64)
    hist = None
    if hist_rows is not None:
        by_layer = dict(zip(hist_rows["layer"], hist_rows["counts"], strict=True))
        hist = np.stack([np.asarray(by_layer[layer], np.float32) for layer in layers])  # (n_layers, N_BINS)
    return Block(layers, stats, values, hist, optional)


def _stat_rows(step: int, kind: str, block: Block) -> pa.Table:
    n_layers, n_stats = block.values.shape
    return _table(
        np.full(n_layers * n_stats, step, np.int64),
        [kind] * (n_layers * n_stats),
        np.repeat(np.array(block.layers, dtype=object), n_stats),
        np.tile(np.array(block.stats, dtype=object), n_layers),
        block.values.reshape(-1).astype(np.float64),
    )


def _hist_rows(step: int, kind: str, block: Block) -> pa.Table:
    n_layers = len(block.layers)
    counts = pa.FixedSizeListArray.from_arrays(block.hist.astype(np.float32).reshape(-1), block.hist.shape[1])
    return _table(
        np.full(n_layers, step, np.int64),
        [kind] * n_layers,
        list(block.layers),
        [HIST_STAT] * n_layers,
        pa.nulls(n_layers, pa.float64()),
        counts.cast(pa.list_(pa.float32())),
    )


def _table(step, kind, layer, stat, value, counts=None) -> pa.Table:
    n = len(step)
    return pa.table(
        [
            pa.array(step, pa.int64()),
            pa.array(kind, pa.string()),
            pa.array(layer, pa.string()),
            pa.array(stat, pa.string()),
            pa.array(value, pa.float64()),
            counts if counts is not None else pa.nulls(n, pa.list_(pa.float32())),
        ],
        schema=SCHEMA,
    )
