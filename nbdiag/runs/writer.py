"""Write a record to a run directory: live, as segments while training runs, or all at once (``save_record``)."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from nbdiag.config import WatchConfig
from nbdiag.errors import NbdiagWarning
from nbdiag.record import NonFinite, Record, StepEntry
from nbdiag.runs.files import (
    FORMAT,
    SCHEMA_VERSION,
    atomic_write,
    now_iso,
    prepare_run_dir,
    segment_path,
    write_manifest,
)
from nbdiag.runs.segments import SegmentRows, write_segment
from nbdiag.stats import HIST_EDGES, N_BINS
from nbdiag.version import __version__

SEGMENT_STEPS = 10  # a segment is written after this many sampled steps ...
SEGMENT_SECONDS = 2.0  # ... or when rows have waited this long
QUEUE_EVENTS = 1_024  # record events waiting for the writer thread; past it the training thread waits ...
PUT_TIMEOUT_S = 10.0  # ... this long at most, then the event is dropped and the drop logged
_STOP = ("stop", None)


class RunWriter:
    """Listens to a record and writes it to ``run_dir`` as Parquet segments plus ``manifest.json``.

    The training thread only puts record events on a bounded queue; a writer thread turns them into rows and
    does all the I/O. Segments are written atomically (temporary file + rename) every ``segment_steps`` sampled
    steps, when rows have waited ``segment_seconds``, at the first non-finite value, and on :meth:`close` (which
    drains the queue). A process killed at any moment leaves every earlier segment readable. Write failures (a
    full disk) are logged in ``record.errors`` (source "writer") and the writer goes on with the next segment.
    Under torch.distributed only rank 0 writes.

    Args:
        run_dir: folder of the run; created, or replaced when it holds an earlier nbdiag run.
        record: the record to follow.
        segment_steps: sampled steps per segment.
        segment_seconds: the longest a written step waits before it reaches the disk.
        live: subscribe to ``record`` (False: the caller writes a snapshot, see :func:`save_record`).
        config: the monitor's configuration, stamped into the manifest (``open_run(...).config``).

    Raises:
        FileExistsError: ``run_dir`` is a file or a non-empty folder that is not an nbdiag run.
    """

    def __init__(
        self,
        run_dir: str | Path,
        record: Record,
        *,
        segment_steps: int = SEGMENT_STEPS,
        segment_seconds: float = SEGMENT_SECONDS,
        live: bool = True,
        config: WatchConfig | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.record = record
        self.config = config
        self.segment_steps = segment_steps
        self.segment_seconds = segment_seconds
        self.enabled = _is_writing_rank()
        self.closed = False
        self._rows = SegmentRows()
        self._pending_steps = 0
        self._segments = 0
        self._last_write = time.monotonic()
        self._created = now_iso()
        self._layers: dict[str, dict[str, None]] = {}
        self._stats: dict[str, list[str]] = {}
        self._optional: dict[str, list[str]] = {}
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=QUEUE_EVENTS)
        self._thread: threading.Thread | None = None
        self._final_error: Exception | None = None
        if not self.enabled:
            return
        prepare_run_dir(self.run_dir)
        self._write_manifest("running")
        if live:
            self._thread = threading.Thread(target=self._run, name="nbdiag-run-writer", daemon=True)
            self._thread.start()
            record.subscribe(self.on_event)

    def on_event(self, event: str, payload: Any) -> None:
        """Record listener (the training thread): queue the event for the writer thread; no I/O here."""
        if self.closed or not self.enabled:
            return
        if event == "scalars":
            step, values = payload
            payload = (step, dict(values))
        try:
            self._queue.put((event, payload), timeout=PUT_TIMEOUT_S)
        except queue.Full:
            lag = RuntimeError(f"the run writer is {QUEUE_EVENTS} events behind (slow disk?); dropped a {event!r}")
            self.record.errors.add("writer", lag, context=str(self.run_dir))

    def _run(self) -> None:
        """The writer thread: rows from events, a segment when one is due, the last one on stop."""
        while True:
            try:
                event, payload = self._queue.get(timeout=self.segment_seconds)
            except queue.Empty:
                event, payload = "tick", None
            if event == _STOP[0]:
                break
            try:
                self._write_event(event, payload)
            except Exception as error:  # a full disk must never stop the writer (nor training)
                self.record.errors.add("writer", error, context=f"writing {str(self.run_dir)!r}")
        try:
            self.flush(status="closed")
        except Exception as error:
            self._final_error = error
            self.record.errors.add("writer", error, context=f"could not finish {str(self.run_dir)!r}")

    def _write_event(self, event: str, payload: Any) -> None:
        if event == "entry":
            self.add_entry(payload)
        elif event == "scalars":
            self.add_scalars(*payload)
        waited = len(self._rows) > 0 and time.monotonic() - self._last_write >= self.segment_seconds
        if self._pending_steps >= self.segment_steps or waited or event == "nonfinite":
            self.flush()

    def add_entry(self, entry: StepEntry) -> None:
        """Queue one sampled step's rows."""
        self._rows.add_entry(entry)
        self._pending_steps += 1
        for kind, block in entry.blocks.items():
            self._layers.setdefault(kind, {}).update(dict.fromkeys(block.layers))
            self._stats.setdefault(kind, list(block.stats))
            self._optional.setdefault(kind, list(block.optional))

    def add_scalars(self, step: int, values: dict[str, float]) -> None:
        """Queue the scalars of one step."""
        self._rows.add_scalars(step, values)

    def flush(self, status: str = "running") -> None:
        """Write the gathered rows as the next segment (if any) and refresh the manifest (on the writer thread when
        live)."""
        if not self.enabled:
            return
        try:
            if len(self._rows):  # rows of a segment that fails to write are dropped (the record keeps them)
                table = self._rows.take()
                path = segment_path(self.run_dir, self._segments)
                atomic_write(path, lambda temp: write_segment(table, temp))
                self._segments += 1
        finally:  # after a failure, the next attempt waits for the next segment to be due
            self._pending_steps = 0
            self._last_write = time.monotonic()
        self._write_manifest(status)

    def close(self) -> None:
        """Drain the queue, write what is left and mark the run closed. Idempotent; never raises (a failure is
        logged and becomes a warning)."""
        if self.closed:
            return
        self.closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        elif self.enabled:
            try:
                self.flush(status="closed")
            except Exception as error:  # closing a monitor must not fail because the disk did
                self._final_error = error
                self.record.errors.add("writer", error, context=f"could not finish {str(self.run_dir)!r}")
        error = self._final_error
        if error is not None:
            warnings.warn(
                f"could not finish the run directory {str(self.run_dir)!r}: {type(error).__name__}: {error}; "
                "segments written before are still readable",
                NbdiagWarning,
                stacklevel=3,
            )

    def _write_manifest(self, status: str) -> None:
        found: NonFinite | None = self.record.first_nonfinite
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "nbdiag_version": __version__,
            "status": status,
            "created": self._created,
            "updated": now_iso(),
            "segments": self._segments,
            "config": None if self.config is None else self.config.as_dict(),
            "meta": self.record.meta.as_dict(),  # a frozen RunMeta, swapped whole under the record's lock
            "layers": {kind: list(names) for kind, names in self._layers.items()},
            "stats": self._stats,
            "optional": self._optional,
            "n_bins": N_BINS,
            "hist_edges": HIST_EDGES[1:-1].astype(float).tolist(),
            "first_nonfinite": dataclasses.asdict(found) if found is not None else None,
            "world_size": torch.distributed.get_world_size() if _distributed() else 1,
        }
        write_manifest(self.run_dir, manifest)


def save_record(record: Record, path: str | Path, config: WatchConfig | None = None) -> None:
    """Write everything ``record`` holds now to a run directory at ``path`` (one segment).

    Raises:
        FileExistsError: ``path`` is a file or a non-empty folder that is not an nbdiag run.
    """
    writer = RunWriter(path, record, live=False, config=config)
    for entry in record.entries():
        writer.add_entry(entry)
    for step, values in _scalar_writes(record):
        writer.add_scalars(step, values)
    writer.flush(status="closed")
    writer.closed = True


def _scalar_writes(record: Record) -> list[tuple[int, dict[str, float]]]:
    """The scalars ``record`` holds as ``(step, {name: value})``, only the names each step logged."""
    table = record.scalars()
    by_step: dict[int, dict[str, float]] = {int(step): {} for step in table.index}  # the record's step order
    for name in table.columns:
        steps, values = record.scalar_series(name)
        for step, value in zip(steps.tolist(), values.tolist(), strict=True):
            by_step.setdefault(step, {})[name] = value
    return [(step, values) for step, values in by_step.items() if values]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _is_writing_rank() -> bool:
    return not _distributed() or torch.distributed.get_rank() == 0
