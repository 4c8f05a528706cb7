"""nbdiag: debug neural-network training inside a notebook.

The public API (a contract, see docs/design.md). Heavier parts are imported on first use, so
``import nbdiag`` stays light and the core runs where no notebook packages are installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from nbdiag import display
from nbdiag.activation_types import register_activation
from nbdiag.errors import NbdiagWarning
from nbdiag.findings import Finding
from nbdiag.monitor import Monitor, watch
from nbdiag.version import __version__


def _views() -> display.DisplayBackend:
    """The views behind ``mon.dashboard()``, ``to_html()``, ``savefig()`` and every lab's display (see
    nbdiag/display.py)."""
    from nbdiag.labs._widgets import lab_display, lab_draw, lab_output, lab_view
    from nbdiag.views.dashboard import Dashboard
    from nbdiag.views.export import savefig, to_html

    return display.DisplayBackend(
        dashboard=Dashboard,
        to_html=to_html,
        savefig=savefig,
        lab_view=lab_view,
        lab_draw=lab_draw,
        lab_output=lab_output,
        lab_display=lab_display,
    )


display.provide(_views)

_LAZY = {
    "preflight": ("nbdiag.checks.preflight", "preflight"),
    "Report": ("nbdiag.checks.preflight", "Report"),
    "lr_range_test": ("nbdiag.checks.lr_range", "lr_range_test"),
    "compare_inits": ("nbdiag.labs.compare_inits", "compare_inits"),
    "track_predictions": ("nbdiag.labs.predictions", "track_predictions"),
    "open_run": ("nbdiag.runs.run", "open_run"),
    "WatchConfig": ("nbdiag.config", "WatchConfig"),
    "Run": ("nbdiag.runs.run", "Run"),
    "Dashboard": ("nbdiag.views.dashboard", "Dashboard"),
    "PredictionTracker": ("nbdiag.labs.predictions", "PredictionTracker"),
    "PredictionHistory": ("nbdiag.predictions", "PredictionHistory"),
    "labs": ("nbdiag.labs", None),
    "checks": ("nbdiag.checks", None),
}

__all__ = ["Finding", "Monitor", "NbdiagWarning", "register_activation", "watch", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nbdiag' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API, lazy names included (tab completion lists them before their first use)."""
    return sorted(__all__)
