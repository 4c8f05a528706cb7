"""Shared by the labs: notebook detection, and a base class that is data first, widget and PNG on demand."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a front end can show widgets); False in scripts, CI and plain IPython.

    Never imports IPython: a kernel has already imported it, so a process without it in ``sys.modules`` is
    not one.
    """
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    shell = ipython_module.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def should_display(display: bool | None) -> bool:
    """Resolve a ``display`` argument: None means "when in a notebook"."""
    if display is None:
        return in_notebook()
    if not isinstance(display, bool):
        raise TypeError(f"got display={display!r}, expected True, False or None; try display=False in scripts")
    return display


class LabView:
    """A lab's result: the data (attributes of the subclass), a widget built on first use, a PNG on request.

    Subclasses implement ``_build_widget()`` (an ipywidgets container), ``_draw(fig)`` (matplotlib) and
    ``summary_text()`` (plain text). In a notebook the lab shows its widget beside a PNG and text fallback, so a
    saved notebook still shows something where no widget front end runs.
    """

    figsize: tuple[float, float] = (12.0, 6.0)

    def __init__(self) -> None:
        self._widget: Any = None
        self._shown_in_cell: int | None = None

    @property
    def widget(self) -> Any:
        """The interactive ipywidgets container (built on first access)."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self) -> Any:
        raise NotImplementedError

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

    def show(self) -> None:
        """Display the widget now (in a notebook); elsewhere print the summary."""
        if not in_notebook():
            print(self.summary_text())
            return
        from IPython.display import display

        display(self)
        self._shown_in_cell = _execution_count()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self._shown_in_cell is not None and self._shown_in_cell == _execution_count():
            self._shown_in_cell = None  # shown by the lab function in this cell: skip the cell's result echo
            return
        bundle = {"text/plain": self.summary_text(), "image/png": self.png()}
        bundle.update({k: v for k, v in self.widget._repr_mimebundle_().items() if k == WIDGET_MIME})
        display(bundle, raw=True)

    def __repr__(self) -> str:
        return self.summary_text()


def present(lab: LabView, display: bool | None) -> LabView:
    """Show ``lab`` when ``display`` asks for it (None: only in a notebook); return it either way."""
    if should_display(display):
        lab.show()
    return lab


def _execution_count() -> int | None:
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return getattr(shell, "execution_count", None)
