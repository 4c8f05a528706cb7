"""nbdiag's own failures (the bottom of the layers: every module can warn or log without importing ``monitor``):
the warning class users see, and the one log where every failure lands with its traceback.

Every part of nbdiag that can fail without stopping training (hooks, flush, prediction probe, run writer, run
reader, renderer, health rules) reports into the :class:`ErrorLog` of the record it works on; ``mon.errors`` and
``run.errors`` read it, ``mon.findings()`` turns it into ``monitor.hook_error`` findings, and the dashboard's
status line shows it. Nothing here imports another nbdiag module.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass

MAX_REPORTS = 100  # reports kept per log; later ones are only counted (a failing writer may fail every segment)


class NbdiagWarning(UserWarning):
    """Something about how nbdiag is used that the user should know; training is never interrupted."""


@dataclass(frozen=True)
class ErrorReport:
    """One failure inside nbdiag.

    Attributes:
        source: the part that failed: "capture", "flush", "prediction", "writer", "reader", "renderer", "health", ...
        message: ``"ExceptionType: text"``.
        traceback: the formatted traceback (what to paste into a bug report).
        step: the training step it happened at, when known.
        thread: the name of the thread it happened on.
    """

    source: str
    message: str
    traceback: str
    step: int | None = None
    thread: str = ""

    def __str__(self) -> str:
        when = f" at step {self.step}" if self.step is not None else ""
        return f"{self.source}{when}: {self.message}\n{self.traceback}"


class ErrorLog:
    """Thread-safe log of :class:`ErrorReport`: the first ``max_reports`` are kept, the rest counted.

    ``len(log)`` counts every failure, kept or not.
    """

    def __init__(self, max_reports: int = MAX_REPORTS) -> None:
        self.max_reports = max_reports
        self._lock = threading.Lock()
        self._reports: list[ErrorReport] = []
        self._count = 0

    def add(self, source: str, error: BaseException, *, step: int | None = None, context: str = "") -> ErrorReport:
        """Log ``error`` with its traceback; ``context`` (e.g. the file involved) leads the message."""
        message = f"{type(error).__name__}: {error}"
        report = ErrorReport(
            source,
            f"{context}: {message}" if context else message,
            "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            step,
            threading.current_thread().name,
        )
        with self._lock:
            self._count += 1
            if len(self._reports) < self.max_reports:
                self._reports.append(report)
        return report

    def reports(self) -> list[ErrorReport]:
        """A snapshot of the kept reports, oldest first."""
        with self._lock:
            return list(self._reports)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def __bool__(self) -> bool:
        return len(self) > 0
