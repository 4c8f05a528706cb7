"""Shared by the labs: a base class that is data first (widget and PNG on demand, shown along the render path
that :mod:`nbdiag.environment` chooses), and the view objects that own a lab's widgets (the lab holds none)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from nbdiag.environment import Display, in_kernel, resolve_display

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
NO_WIDGETS = "no widgets here: the lab's controls are its function's arguments (see help() of the lab function)"


class WidgetView:
    """The widgets of one lab result: built from the data, redrawn by :meth:`refresh`; ``box`` is the container.

    A view only reads its lab and calls the lab's own update methods from its controls; the lab keeps no widget.
    """

    box: Any

    def refresh(self) -> None:
        """Redraw from the lab's current data."""
        raise NotImplementedError


class LabView:
    """A lab's result: the data (attributes of the subclass), a :class:`WidgetView` built on first use, a PNG on
    request.

    Subclasses implement ``_make_view()`` (their :class:`WidgetView`), ``_draw(fig)`` (matplotlib) and
    ``summary_text()`` (plain text). In a notebook the lab shows its widget beside a PNG and text fallback, so a
    saved notebook still shows something where no widget front end runs.
    """

    figsize: tuple[float, float] = (12.0, 6.0)

    def __init__(self) -> None:
        self._view: WidgetView | None = None
        self._shown_in_cell: int | None = None
        self.mode: Display | None = None  # the render path; None: chosen for this front end when displayed

    @property
    def view(self) -> WidgetView:
        """The object owning the widgets (built on first access): figure widgets, controls, status line."""
        if self._view is None:
            self._view = self._make_view()
        return self._view

    @property
    def widget(self) -> Any:
        """The interactive ipywidgets container (built on first access)."""
        return self.view.box

    def _make_view(self) -> WidgetView:
        raise NotImplementedError

    def _refresh_view(self) -> None:
        """Redraw the view if one was built (call after the data changed)."""
        if self._view is not None:
            self._view.refresh()

    def _draw(self, fig: Any) -> None:
        raise NotImplementedError

    def summary_text(self) -> str:
        raise NotImplementedError

    def figure(self) -> Any:
        """A matplotlib Figure of the current data (no pyplot state, works headless)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=self.figsize, layout="constrained")
        self._draw(fig)
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

    def show(self, display: Any = True) -> None:
        """Display the lab now (in a notebook); elsewhere print the summary.

        Args:
            display: the render path, as for ``nbdiag.watch`` (True: chosen for this front end).
        """
        self.mode = resolve_display(display) or None
        if not in_kernel():
            print(self.summary_text())
            return
        from IPython.display import display as show

        show(self)
        self._shown_in_cell = _execution_count()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self._shown_in_cell is not None and self._shown_in_cell == _execution_count():
            self._shown_in_cell = None  # shown by the lab function in this cell: skip the cell's result echo
            return
        mode = self.mode or resolve_display(None) or "static"
        bundle = {"text/plain": self.summary_text(), "image/png": self.png()}
        if mode == "widget":
            bundle.update({k: v for k, v in self.widget._repr_mimebundle_().items() if k == WIDGET_MIME})
        else:
            bundle["text/plain"] += f"\n\n({NO_WIDGETS})"
        display(bundle, raw=True)

    def __repr__(self) -> str:
        return self.summary_text()


def present(lab: LabView, display: Any) -> LabView:
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
