"""What every lab is: it computes, and a view draws it.

A :class:`Lab` holds data and the methods that recompute it (``update(...)``); it reads out as ``frame()`` (the
detailed table) and ``summary()`` (the short one), and as text (``summary_text()``). It never imports its view:
the widgets, the plotly figure and the matplotlib figure live in ``nbdiag.labs.<name>_view``, and the lab reaches
them through :mod:`nbdiag.display` (the composition root, ``nbdiag/__init__.py``, registers them), as the core
reaches the dashboard. The render path (widget, inline, static) is chosen by :mod:`nbdiag.environment`, as for
the dashboard.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from nbdiag.display import display_backend
from nbdiag.environment import Display, in_kernel, in_marimo, resolve_display


class Lab:
    """A lab's result: data (attributes of the subclass), read through :meth:`frame` and :meth:`summary`.

    Subclasses implement ``frame()``, ``summary()`` and ``summary_text()``, and call :meth:`_changed` after
    their data changed (a view built meanwhile redraws). ``view`` (the widgets), ``figure()`` (matplotlib) and the
    notebook display come from the lab's view module.
    """

    figsize: tuple[float, float] = (12.0, 6.0)

    def __init__(self) -> None:
        self._view: Any = None
        self._shown_in_cell: int | None = None
        self.mode: Display | None = None  # the render path; None: chosen for this front end when displayed

    # -- reading ------------------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """The lab's detailed data as one table."""
        raise NotImplementedError

    def summary(self) -> pd.DataFrame:
        """The lab's result in a few rows."""
        raise NotImplementedError

    def summary_text(self) -> str:
        """The summary as plain text (the text/plain of every display, and ``repr``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.summary_text()

    # -- drawing (by the lab's view) ----------------------------------------------------------------------
    @property
    def view(self) -> Any:
        """The object owning the widgets (built on first access): figure widget, controls, status line."""
        if self._view is None:
            self._view = display_backend().lab_view(self)
        return self._view

    @property
    def widget(self) -> Any:
        """The interactive ipywidgets container (built on first access)."""
        return self.view.box

    def _changed(self) -> None:
        """Redraw the view if one was built (call after the data changed)."""
        if self._view is not None:
            self._view.refresh()

    def figure(self) -> Any:
        """A matplotlib Figure of the current data (no pyplot state, works headless)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=self.figsize, layout="constrained")
        display_backend().lab_draw(self, fig)
        return fig

    def savefig(self, path: str | Path, dpi: int = 100) -> Path:
        """Write the static figure as a PNG (or any format matplotlib infers from the suffix).

        Args:
            path: file to write.
            dpi: resolution.

        Returns:
            The path written.
        """
        path = Path(path)
        self.figure().savefig(path, dpi=dpi)
        return path

    def png(self, dpi: int = 80) -> bytes:
        """The static figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    # -- showing ------------------------------------------------------------------------------------------
    def show(self, display: Any = True) -> None:
        """Display the lab now (in a notebook); elsewhere print the summary.

        Args:
            display: the render path, as for ``nbdiag.watch`` (True: chosen for this front end).
        """
        self.mode = resolve_display(display) or None
        if in_marimo():  # marimo is the front end, so it is imported already
            import marimo

            marimo.output.append(self)
            return
        if not in_kernel():
            print(self.summary_text())
            return
        from IPython.display import display as show

        show(self)
        self._shown_in_cell = _execution_count()

    def _ipython_display_(self) -> None:
        if self._shown_in_cell is not None and self._shown_in_cell == _execution_count():
            self._shown_in_cell = None  # shown by the lab function in this cell: skip the cell's result echo
            return
        display_backend().lab_display(self, self._chosen())

    def _display_(self) -> Any:
        """marimo's display protocol: the lab's figures and controls as marimo shows them (or the chosen path's
        bundle)."""
        mode = self._chosen()
        output = display_backend().lab_output(self, mode)
        return output if mode == "marimo" else _Bundle(output)

    def _chosen(self) -> str:
        return self.mode or resolve_display(None) or "static"


class _Bundle:
    """A mime bundle as an object marimo formats."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return self.bundle


def present(lab: Lab, display: Any) -> Lab:
    """Show ``lab`` along the render path ``display`` asks for (None: chosen for this front end, nothing outside
    a notebook); return it either way.

    Raises:
        ValueError: for a display value that is not one of those ``nbdiag.watch`` accepts.
    """
    mode = resolve_display(display)
    if mode:
        lab.show(mode)
    return lab


def _execution_count() -> int | None:
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return getattr(shell, "execution_count", None)
