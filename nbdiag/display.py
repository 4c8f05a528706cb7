"""Display glue: the seam through which the core reaches the views without importing them.

``RecordReader`` (core) offers ``dashboard()``, ``to_html()`` and ``savefig()``, but the code that draws lives in
``nbdiag.views``, a higher layer. The top layer (``nbdiag/__init__.py``, the composition root, which Python
imports before any submodule) calls :func:`provide` with a loader; the core asks :func:`display_backend` for it at
call time. The labs reach their views the same way (``lab_view``, ``lab_draw``, ``lab_output``): a lab computes,
its view draws, and the lab never imports it.
So the dependency points one way (top -> views, core -> this module) and no plotting package is
imported until something is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DisplayBackend:
    """What the core and the labs need from the views: a dashboard for a source, its two file exports, and a
    lab's widgets, matplotlib drawing, notebook output and display (a lab never imports its view)."""

    dashboard: Callable[[Any], Any]
    to_html: Callable[[Any, str | Path], Any]
    savefig: Callable[[Any, str | Path], Any]
    lab_view: Callable[[Any], Any]
    lab_draw: Callable[[Any, Any], None]
    lab_output: Callable[[Any, str], Any]
    lab_display: Callable[[Any, str], None]


_loader: Callable[[], DisplayBackend] | None = None


def provide(loader: Callable[[], DisplayBackend]) -> None:
    """Register the function that imports the views and returns their :class:`DisplayBackend`."""
    global _loader
    _loader = loader


def display_backend() -> DisplayBackend:
    """The registered views (imported now, on first use).

    Raises:
        ImportError: a plotting package is missing (the loader's own error).
        RuntimeError: nothing was registered (only possible if ``nbdiag/__init__.py`` was bypassed).
    """
    if _loader is None:
        raise RuntimeError("got no display backend, expected nbdiag/__init__.py to provide one; try `import nbdiag`")
    return _loader()
