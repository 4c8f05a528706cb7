"""The live dashboard: controls above one plotly FigureWidget and a findings table, refreshed by a Renderer."""

from __future__ import annotations

import dataclasses
import html
import threading
import time
from typing import Any

from nbdiag.views import static
from nbdiag.views.data import Snapshot, snapshot
from nbdiag.views.layout import build_panels
from nbdiag.views.panels import ViewState
from nbdiag.views.renderer import RENDER_BUDGET, Renderer
from nbdiag.views.text import findings_html, summary_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Dashboard:
    """Everything the record holds, drawn live; works on any ``source`` with ``.record`` (and optionally
    ``.findings()`` and ``.predictions``): a Monitor, or a run directory reader.

    The widget is built on first display or access; in a script nothing is displayed and ``text()``, ``png()``
    and ``figure()`` still work. Displaying it starts the renderer thread (see :mod:`nbdiag.views.renderer`).

    Args:
        source: what to draw.
        max_hz: refresh rate ceiling while training.
        budget: fraction of wall time refreshing may take.
    """

    def __init__(self, source: Any, *, max_hz: float = 5.0, budget: float = RENDER_BUDGET) -> None:
        if not hasattr(source, "record"):
            raise TypeError(f"got {type(source).__name__}, expected an object with a .record (a Monitor or a run)")
        self.source = source
        self.state = ViewState()
        self.paused = False
        self.findings_error: str | None = None
        self._lock = threading.RLock()
        self._widget: Any = None
        self._display: Any = None  # the DisplayHandle of the last display, to refresh its PNG when idle
        self.renderer = Renderer(
            self.refresh,
            lambda: source.record.version,
            lambda: self.paused,
            max_hz=max_hz,
            budget=budget,
            on_idle=self._update_fallback,
        )

    # -- reading ------------------------------------------------------------------------------------------
    def findings(self) -> list[Any]:
        """The source's findings (none when it has no ``findings()``; a failing rule is reported in the status)."""
        find = getattr(self.source, "findings", None)
        if not callable(find):
            return []
        try:
            found = list(find())
        except Exception as error:  # a health rule's bug must not take the dashboard down
            self.findings_error = f"{type(error).__name__}: {error}"
            return []
        self.findings_error = None
        return found

    def snapshot(self) -> Snapshot:
        """The record read once, as the panels see it."""
        return snapshot(self.source)

    def panels(self) -> list:
        """The panels of the current state (plain data; see :mod:`nbdiag.views.panels`)."""
        return build_panels(self.snapshot(), self.state)

    def text(self) -> str:
        """A readable text summary of the latest state."""
        return summary_text(self.snapshot(), self.findings())

    def figure(self) -> Any:
        """The panels as a matplotlib Figure."""
        return static.figure(self.panels(), self.findings(), self.title())

    def png(self, dpi: int = 72) -> bytes:
        """The panels as PNG bytes."""
        return static.png(self.panels(), self.findings(), self.title(), dpi=dpi)

    # -- the widget ---------------------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The ipywidgets container (built on first access)."""
        return self._controls().box

    @property
    def plot(self) -> Any:
        """The plotly FigureWidget (built with the widget)."""
        return self._controls().figure.figure

    def _controls(self) -> Any:
        with self._lock:
            if self._widget is None:
                from nbdiag.views.controls import Controls

                self._widget = Controls(self)
                self.refresh()
            return self._widget

    def refresh(self) -> None:
        """Redraw the widget from the newest record state (one batched message per figure)."""
        with self._lock:
            if self._widget is None:
                return
            snap = self.snapshot()
            self.state = self._widget.sync(snap, self.state)
            self._widget.figure.update(build_panels(snap, self.state))
            self._widget.show_findings(findings_html(self.findings()))
            self._widget.show_status(self._status(snap))

    def set_state(self, **changes: Any) -> None:
        """Change what is shown (``layer``, ``index``, ``loss_log``, ``norm_log``) and redraw.

        Args:
            **changes: fields of :class:`nbdiag.views.panels.ViewState`.
        """
        self.state = dataclasses.replace(self.state, **changes)
        self.refresh()

    def pause(self) -> None:
        """Stop redrawing while training (the record keeps filling)."""
        self.paused = True

    def resume(self) -> None:
        """Redraw again, from the newest state."""
        self.paused = False
        self.refresh()

    def start(self) -> None:
        """Build the widget and start the renderer thread."""
        self._controls()
        self.renderer.start()

    def finish(self) -> None:
        """Training is over: redraw once more, refresh the displayed PNG/text fallback (so a notebook saved now
        shows the final state), and stop the renderer thread. The controls keep working."""
        self.renderer.stop()
        self.refresh()
        self._update_fallback()

    def close(self) -> None:
        """Stop the renderer and close the widgets."""
        self.renderer.stop()
        with self._lock:
            if self._widget is not None:
                self._widget.close()
                self._widget = None

    # -- display ------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Widget view + image/png + text/plain, so a saved notebook or nbconvert output shows the state."""
        self.start()
        self.refresh()
        controls = self._controls()
        controls.figure.figure._repr_mimebundle_()  # a new view starts from the current figure
        bundle = {"text/plain": self.text(), "image/png": self.png()}
        bundle[WIDGET_MIME] = controls.box._repr_mimebundle_()[WIDGET_MIME]
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._display = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def _update_fallback(self) -> None:
        """When training went quiet, refresh the displayed PNG and text, so a saved notebook shows the last state."""
        if self._display is not None:
            self._display.update(self._repr_mimebundle_(), raw=True)

    def __repr__(self) -> str:
        return self.text()

    def title(self) -> str:
        """Model name and latest sampled step."""
        model = self.source.record.meta.get("model", "")
        steps = self.source.record.steps()
        return f"{model} · step {steps[-1]}" if steps else model

    def _status(self, snap: Snapshot) -> str:
        costs = list(self.renderer.costs)
        cost = f", last refresh {costs[-1] * 1e3:.1f} ms" if costs else ""
        paused = " · <b>paused</b>" if self.paused else ""
        if self.findings_error:
            paused += f" · <span style='color:#d62728'>health rules failed: {html.escape(self.findings_error)}</span>"
        latest = snap.entries[-1].step if snap.entries else "-"
        return (
            f"<b>{self.title() or 'nbdiag'}</b> · latest sampled step {latest} · {len(snap.layers)} layers · "
            f"{self.renderer.refreshes} refreshes{cost} · {time.strftime('%H:%M:%S')}{paused}"
        )
