"""Read a run directory back into a :class:`~nbdiag.record.Record`, once or while another process writes it."""

from __future__ import annotations

import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from nbdiag.config import WatchConfig
from nbdiag.errors import ErrorReport, NbdiagWarning
from nbdiag.meta import RunMeta
from nbdiag.predictions import KIND as PREDICTION_KIND
from nbdiag.predictions import PredictionHistory
from nbdiag.record import NonFinite, Record
from nbdiag.record_reader import RecordReader
from nbdiag.runs.files import read_manifest, segment_files
from nbdiag.runs.segments import decode_entries, decode_scalars, read_segment
from nbdiag.units import UNIT_STATS

FOLLOW_INTERVAL = 1.0  # seconds between polls of a followed run
# Block.optional of manifests written before the manifest listed it (and of a segment read before its manifest)
EARLIER_OPTIONAL = {"activation": ["saturated_frac"], "units": list(UNIT_STATS)}


class SegmentWarning(NbdiagWarning):
    """A segment of a run directory could not be read and was skipped."""


def open_run(path: str | Path, *, follow: bool = False, interval: float = FOLLOW_INTERVAL) -> Run:
    """Open the run directory at ``path`` (finished, or still being written by another process).

    Args:
        path: a folder written by ``nbdiag.watch(..., run_dir=path)`` or ``Monitor.save(path)``.
        follow: poll for new segments in a background thread (see :meth:`Run.follow`).
        interval: seconds between polls when following.

    Returns:
        A :class:`Run` with the monitor's reading API: ``frame()``, ``histograms()``, ``scalars()``,
        ``findings()``, ``dashboard()``.

    Raises:
        FileNotFoundError: ``path`` holds no run manifest.
        ValueError: the manifest is not nbdiag's, or from a newer schema.
    """
    run = Run(path)
    if follow:
        run.follow(interval)
    return run


class Run(RecordReader):
    """A run directory read into a record: the same reading API as a live :class:`~nbdiag.Monitor`.

    ``refresh()`` reads segments written since the last call; ``follow()`` does so in the background, so a
    dashboard built on the run updates as segments land.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = read_manifest(self.path)
        self.record = Record(capacity=sys.maxsize, scalar_capacity=sys.maxsize, max_bytes=sys.maxsize)  # all on disk
        self._read: set[str] = set()
        self._bad: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) when it failed to read
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    # -- following -----------------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Read the manifest again and every segment not read yet; returns how many segments were added.

        A segment that cannot be read (truncated, corrupt) is skipped with a :class:`SegmentWarning`, and
        tried again only if the file changes.
        """
        with self._lock:
            self.manifest = read_manifest(self.path)
            self.record.replace_meta(RunMeta.from_dict(self.manifest.get("meta") or {}))
            added = sum(self._read_segment(path) for path in segment_files(self.path) if path.name not in self._read)
            self._note_nonfinite()
            return added

    def follow(self, interval: float = FOLLOW_INTERVAL) -> None:
        """Poll for new segments every ``interval`` seconds in a daemon thread, until the run is closed and read
        or :meth:`stop` is called."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(interval,), name="nbdiag-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (waits for the poll thread to end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def following(self) -> bool:
        """Whether a background poll is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """Whether the writer closed the run (a killed writer never does)."""
        return self.manifest.get("status") == "closed"

    # -- reading (the Monitor's API) -----------------------------------------------------------------------
    @property
    def errors(self) -> list[ErrorReport]:
        """Failures while reading (unreadable segments, a follow poll that failed), with tracebacks."""
        return self.record.errors.reports()

    @property
    def predictions(self) -> PredictionHistory | None:
        """The predictions on the fixed batch, when the run recorded them (``watch(..., fixed_batch=...)``)."""
        return PredictionHistory(self.record) if self.record.layers(PREDICTION_KIND) else None

    @property
    def config(self) -> WatchConfig | None:
        """The :class:`~nbdiag.config.WatchConfig` the run was recorded with (None for runs written before it was
        stamped into the manifest, or saved with ``Monitor.save``)."""
        stamped = self.manifest.get("config")
        return None if not stamped else WatchConfig.from_dict(stamped)

    @property
    def model_name(self) -> str:
        return self.record.meta.model or "?"

    @property
    def num_classes(self) -> int | None:
        return self.record.meta.num_classes

    def __repr__(self) -> str:
        state = "closed" if self.finished else "running (or stopped without closing)"
        return (
            f"<nbdiag.Run {self.model_name} at {str(self.path)!r}: {state}, "
            f"{len(self.record.steps())} sampled steps, {len(self._read)} segments>"
        )

    # -- internals -----------------------------------------------------------------------------------------
    def _read_segment(self, path: Path) -> int:
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        if self._bad.get(path.name) == signature:
            return 0
        try:
            rows = read_segment(str(path))
        except Exception as error:  # a damaged file must never stop reading the rest
            self._bad[path.name] = signature
            context = f"skipped unreadable segment {path.name} of {str(self.path)!r}"
            report = self.record.errors.add("reader", error, context=context)
            warnings.warn(report.message, SegmentWarning, stacklevel=4)
            return 0
        optional = {**EARLIER_OPTIONAL, **(self.manifest.get("optional") or {})}
        for entry in decode_entries(rows, optional):
            self.record.append(entry)
        for step, values in decode_scalars(rows):
            self.record.add_scalars(step, values)
        self._read.add(path.name)
        self._bad.pop(path.name, None)
        return 1

    def _note_nonfinite(self) -> None:
        found = self.manifest.get("first_nonfinite")
        if found and self.record.first_nonfinite is None:
            self.record.note_nonfinite(NonFinite(**found))

    def _poll(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as error:  # e.g. the folder was removed; keep the record, log it, stop
                self.record.errors.add("reader", error, context=f"stopped following {str(self.path)!r}")
                return
            if self.finished and len(self._read) >= self.manifest.get("segments", 0):
                return
            self._stop.wait(interval)
