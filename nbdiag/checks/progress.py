"""Progress bars for multi-step checks: tqdm.auto when available and wanted, otherwise nothing."""

from __future__ import annotations

from typing import Any


class _NoBar:
    """Stands in for a tqdm bar when progress is off."""

    def update(self, n: int = 1) -> None:
        """Ignore an advance."""

    def set_postfix_str(self, text: str) -> None:
        """Ignore a status text."""

    def close(self) -> None:
        """Nothing to close."""


def finish(bar: Any) -> None:
    """Close ``bar`` after a check that may stop early by design (it succeeded, the loss diverged, the time budget
    ran out). tqdm's notebook bar closed short of its total turns red ("danger") and stays on the page, above a
    "preflight OK"; so the total becomes the steps done, and the bar (``leave=False``) goes away."""
    total, done = getattr(bar, "total", None), getattr(bar, "n", None)
    if total is not None and done is not None and done < total:
        bar.total = done
        bar.refresh()
    bar.close()


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm.auto bar (notebook widget or text) of ``total`` steps, or a silent stand-in when not ``enabled``."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, leave=False)
