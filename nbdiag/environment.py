"""Where this code runs (no kernel, Colab, VS Code, a Jupyter front end, marimo) and so how a view is shown:
decided here, once, for the dashboard, the labs and ``open_run`` alike (the rules of ``tqdm.auto``).

Only the standard library is imported: IPython and marimo are looked up in ``sys.modules`` (a kernel, or marimo's
runtime, has imported them already, so a process without them there is not one), the notebook packages with
``importlib.util.find_spec``. marimo is never imported here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Literal

ENV_VAR = "NBDIAG_DISPLAY"
MODES = ("widget", "inline", "static", "marimo")
DisplayMode = Literal["widget", "inline", "static", "marimo"]
Display = DisplayMode | Literal[False]
# What a display= argument or NBDIAG_DISPLAY may say, as shown in error messages.
VALID = '"widget", "inline", "static", "marimo", False (nothing shown), True (shown, path chosen) or None (auto)'
_ENV_WORDS = {"auto": None, "": None, "off": False, "false": False, "0": False, "none": False}
WIDGET_PACKAGES = ("ipywidgets", "plotly", "anywidget")
MARIMO_PACKAGES = ("plotly", "anywidget")  # marimo displays anywidgets itself (plotly's FigureWidget is one)


def in_marimo() -> bool:
    """True inside a running marimo notebook (its runtime imported marimo; this never imports it)."""
    marimo = sys.modules.get("marimo")
    running = getattr(marimo, "running_in_notebook", None)
    try:
        return bool(running()) if callable(running) else False
    except Exception:  # a partly imported or unfamiliar marimo: not its notebook
        return False


def in_kernel() -> bool:
    """True inside an IPython kernel (Jupyter, Colab, VS Code): something can render a display; False in scripts,
    CI and terminal IPython."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def front_end() -> str | None:
    """The front end this code serves: "marimo", "colab", "vscode" or "jupyter" (JupyterLab, Notebook 7,
    nbclient, ...); None without a kernel.

    marimo is known by its running notebook (it has no IPython kernel), Colab by its ``google.colab`` package,
    VS Code by the ``VSCODE_PID`` variable its kernels inherit. Nothing tells JupyterLab from a front end without a
    widget manager: those are "jupyter".
    """
    if in_marimo():
        return "marimo"
    if not in_kernel():
        return None
    if _importable("google.colab"):
        return "colab"
    if "VSCODE_PID" in os.environ:
        return "vscode"
    return "jupyter"


def auto_display() -> Display:
    """The render path for this front end: marimo's own in marimo (its figures are anywidgets; static without
    plotly and anywidget), inline on Colab and VS Code (their widget managers do not load plotly's
    ``FigureWidget``), widget in other Jupyter front ends when ipywidgets, plotly and anywidget are installed (else
    inline, else static), nothing without a kernel."""
    front = front_end()
    if front is None:
        return False
    if front == "marimo":
        return "marimo" if all(_importable(name) for name in MARIMO_PACKAGES) else "static"
    if front == "jupyter" and all(_importable(name) for name in WIDGET_PACKAGES):
        return "widget"
    return "inline" if _importable("plotly") else "static"


def resolve_display(display: object = None) -> Display:
    """What a ``display=`` argument means here.

    Args:
        display: "widget", "inline", "static", "marimo" or False force one ("widget" in marimo is marimo's path:
            marimo runs anywidgets, not ipywidgets); True shows with the path chosen for this front end ("static"
            without a kernel); None (auto) uses ``NBDIAG_DISPLAY`` inside a kernel or marimo, else the front end.

    Returns:
        "widget", "inline", "static", "marimo", or False for nothing shown.

    Raises:
        ValueError: for any other value, or a ``NBDIAG_DISPLAY`` that is not one of them.
    """
    if display is None:
        if not (in_kernel() or in_marimo()):
            return False
        default = _env_default()
        return auto_display() if default is None else _here(default)
    if display is True:
        return auto_display() or "static"
    if display is False or display in MODES:
        return _here(display)  # type: ignore[arg-type]
    raise ValueError(f"got display={display!r}, expected {VALID}; try display='inline' where widgets do not show")


def _here(display: Display) -> Display:
    """ "widget" means marimo's path in marimo (ipywidgets do not run there)."""
    return "marimo" if display == "widget" and in_marimo() else display


def _env_default() -> Display | None:
    """``NBDIAG_DISPLAY`` as a display value (None: unset or "auto")."""
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    word = raw.strip().lower()
    if word in MODES:
        return word  # type: ignore[return-value]
    if word in _ENV_WORDS:
        return _ENV_WORDS[word]
    raise ValueError(
        f"got {ENV_VAR}={raw!r}, expected widget, inline, static, marimo, off or auto; try {ENV_VAR}=inline or unset it"
    )


def _importable(name: str) -> bool:
    """Whether ``name`` is imported or importable, without importing it (only its parent packages)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is not a package; a module set to None
        return False
