"""The on-disk layout of a run directory: paths, the manifest, atomic writes, segment names."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT = "nbdiag-run"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SEGMENTS = "segments"
_SEGMENT_NAME = re.compile(r"^seg-(\d{6,})\.parquet$")


def segment_path(run_dir: Path, index: int) -> Path:
    """``RUN_DIR/segments/seg-000042.parquet``: zero-padded, so names sort in write order."""
    return run_dir / SEGMENTS / f"seg-{index:06d}.parquet"


def segment_files(run_dir: Path) -> list[Path]:
    """Finished segments in write order (temporary files, which start with a dot, are not listed)."""
    folder = run_dir / SEGMENTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _SEGMENT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temp_path)`` on a hidden temporary file beside ``path``, then rename it onto ``path``.

    A reader sees either the old file or the whole new one; a killed writer leaves only a hidden ``.tmp`` file.
    """
    temp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"  # default permissions, unlike mkstemp
    try:
        write(str(temp))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (strict JSON: non-finite numbers become null)."""
    text = json.dumps(_strict(manifest), indent=1, default=str)
    atomic_write(run_dir / MANIFEST, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of the run at ``run_dir``.

    Raises:
        FileNotFoundError: ``run_dir`` holds no nbdiag run.
        ValueError: the manifest is not an nbdiag run manifest, or comes from a newer schema.
    """
    path = run_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"got {str(run_dir)!r}, which holds no {MANIFEST}; expected a run directory written by "
            "nbdiag.watch(..., run_dir=...) or Monitor.save(); check the path"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"got a {MANIFEST} with format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("schema_version", 0) > SCHEMA_VERSION:
        raise ValueError(
            f"got a run with schema_version {manifest['schema_version']}, expected <= {SCHEMA_VERSION}; "
            "upgrade nbdiag to read it"
        )
    return manifest


def prepare_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` for a new run. An earlier nbdiag run there is replaced; any other content is kept.

    Raises:
        FileExistsError: ``run_dir`` is a file, or a non-empty folder that is not an nbdiag run.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"got run_dir={str(run_dir)!r}, which is a file; expected a folder path")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / MANIFEST).is_file():
            raise FileExistsError(
                f"got run_dir={str(run_dir)!r}, a non-empty folder that is not an nbdiag run; expected a new or "
                "empty folder (or an earlier run, which is replaced); pick another path"
            )
        (run_dir / MANIFEST).unlink()
        shutil.rmtree(run_dir / SEGMENTS, ignore_errors=True)
    (run_dir / SEGMENTS).mkdir(parents=True, exist_ok=True)


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
