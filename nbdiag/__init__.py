"""nbdiag: debug neural-network training inside a notebook.

The public API (a contract, see docs/design.md). Heavier parts are imported on first use, so
``import nbdiag`` stays light and the core runs where no notebook packages are installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from nbdiag.findings import Finding
from nbdiag.monitor import Monitor, NbdiagWarning, watch

__version__ = "0.1.0"

_LAZY = {
    "preflight": ("nbdiag.checks.preflight", "preflight"),
    "Report": ("nbdiag.checks.preflight", "Report"),
    "lr_range_test": ("nbdiag.checks.lr_range", "lr_range_test"),
    "compare_inits": ("nbdiag.labs.compare_inits", "compare_inits"),
    "track_predictions": ("nbdiag.predictions", "track_predictions"),
    "open_run": ("nbdiag.runs.reader", "open_run"),
    "labs": ("nbdiag.labs", None),
    "checks": ("nbdiag.checks", None),
}

__all__ = ["Finding", "Monitor", "NbdiagWarning", "watch", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nbdiag' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
