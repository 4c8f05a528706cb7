"""The dashboard's render paths, one small object each, chosen by :mod:`nbdiag.environment`:

- :class:`WidgetPath`: a findings banner and controls above one plotly FigureWidget (JupyterLab, Notebook 7);
- :class:`InlinePath`: one output updated in place through a display handle (VS Code, Colab; :mod:`.inline`);
- :class:`StaticPath`: a PNG and the text summary, drawn again when training ends (scripts, nbconvert, CI);
- :class:`MarimoPath`: the figure as an anywidget in a marimo notebook, live while the training cell runs.

Each is fed one :class:`Frame` per refresh: the record read once, the health rules run once, the panels built
once, so the text, the PNG and the figure of one refresh show the same state.
"""

from __future__ import annotations

import functools
import html
from typing import Any

from nbdiag.findings import findings_html
from nbdiag.views import static
from nbdiag.views.data import Snapshot
from nbdiag.views.grid import build_panels
from nbdiag.views.panels import ViewState
from nbdiag.views.text import summary_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
HINT = "controls as arguments: mon.dashboard(layer=..., step=..., loss_log=..., norm_log=...)"
STATIC_NOTE = "static view: drawn again when training ends (close()); display='inline' or 'widget' draws live"


class Frame:
    """One refresh's state: ``snapshot``, ``findings``, the ``state`` shown, and what follows from them (the
    panels, text and PNG, each computed at most once)."""

    def __init__(self, snapshot: Snapshot, findings: list[Any], state: ViewState, title: str, status: str = ""):
        self.snapshot, self.findings, self.state, self.title, self.status = snapshot, findings, state, title, status

    @functools.cached_property
    def panels(self) -> list:
        return build_panels(self.snapshot, self.state)

    @functools.cached_property
    def text(self) -> str:
        return summary_text(self.snapshot, self.findings)

    @functools.cached_property
    def png(self) -> bytes:
        return static.png(self.panels, self.findings, self.title)

    def heading(self) -> str:
        """Model, latest sampled step, layers, findings by severity (the inline view's first line)."""
        latest = self.snapshot.entries[-1].step if self.snapshot.entries else "-"
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        summary = ", ".join(f"{n} {severity}" for severity, n in counts.items()) or "no findings"
        layers = len(self.snapshot.layers)
        return f"{self.title or 'nbdiag'} · latest sampled step {latest} · {layers} layers · {summary}"


class RenderPath:
    """How one displayed dashboard is drawn. ``live`` paths are refreshed by the renderer thread.

    Args:
        dashboard: the dashboard drawn (the widget path's controls drive it).
        frame: the state when the path is built.
    """

    live = True

    def __init__(self, dashboard: Any = None, frame: Frame | None = None) -> None:
        del dashboard, frame  # most paths need neither until shown

    def sync(self, snapshot: Snapshot, state: ViewState) -> ViewState:
        """The state to draw, once the path's controls saw ``snapshot`` (no controls: ``state``)."""
        return state

    def bundle(self, frame: Frame) -> dict[str, Any]:
        """The mime bundle of ``frame`` (``_repr_mimebundle_``; a saved notebook keeps it)."""
        raise NotImplementedError

    def show(self, frame: Frame) -> None:
        """Display ``frame`` as a new output that later refreshes update."""
        from IPython.display import display

        self.handle = display(self.bundle(frame), raw=True, display_id=True)

    def refresh(self, frame: Frame) -> None:
        """Training went on: draw ``frame`` (cheaply; no PNG)."""

    def settle(self, frame: Frame) -> None:
        """Training went quiet or ended: refresh the displayed fallback (PNG, text) too."""
        handle = getattr(self, "handle", None)
        if handle is not None:
            handle.update(self.bundle(frame), raw=True)

    def min_interval(self) -> float:
        """Seconds the next refresh must wait at least (0: the renderer's own limit)."""
        return 0.0

    def close(self) -> None:
        """Release the path's widgets."""


class StaticPath(RenderPath):
    """A PNG and the text; redrawn only when training goes quiet or ends."""

    live = False

    def bundle(self, frame: Frame) -> dict[str, Any]:
        return {"text/plain": f"{frame.text}\n\n({STATIC_NOTE})", "image/png": frame.png}


class InlinePath(RenderPath):
    """One output updated in place: plotly's figure JSON drawn by plotly.js (see :mod:`nbdiag.views.inline`)."""

    def __init__(self, dashboard: Any = None, frame: Frame | None = None) -> None:
        from nbdiag.views.inline import InlineView

        self.view = InlineView()
        self.shown = False

    def bundle(self, frame: Frame, png: bool = True) -> dict[str, Any]:
        table = f"<b>Health</b>{findings_html(frame.findings)}"
        picture = frame.png if png else None
        return self.view.bundle(frame.panels, frame.heading(), frame.text, table, picture)

    def show(self, frame: Frame) -> None:
        self.view.show(self.bundle(frame, png=False))  # no PNG while training: it costs seconds
        self.shown = True

    def refresh(self, frame: Frame) -> None:
        if self.shown:  # only a displayed output can be updated
            self.view.update(self.bundle(frame, png=False))

    def settle(self, frame: Frame) -> None:
        if self.shown:
            self.view.update(self.bundle(frame, png=True))

    def min_interval(self) -> float:
        return self.view.min_interval() if self.shown else 0.0


class WidgetPath(RenderPath):
    """The controls, findings banner, status line and FigureWidget of :mod:`nbdiag.views.controls`."""

    def __init__(self, dashboard: Any, frame: Frame) -> None:
        from nbdiag.views.controls import Controls

        self.controls = Controls(dashboard, frame.panels)  # the dashboard refreshes it next (controls synced)

    def sync(self, snapshot: Snapshot, state: ViewState) -> ViewState:
        return self.controls.sync(snapshot, state)

    def bundle(self, frame: Frame) -> dict[str, Any]:
        self.refresh(frame)  # the figure shows what the PNG and text show
        self.controls.figure.figure._repr_mimebundle_()  # a new view starts from the current figure
        bundle = {"text/plain": frame.text, "image/png": frame.png}
        bundle[WIDGET_MIME] = self.controls.box._repr_mimebundle_()[WIDGET_MIME]
        return bundle

    def show(self, frame: Frame) -> None:
        from nbdiag.views.saved_view import show_companion

        super().show(frame)
        self.saved_view = show_companion(frame.png)  # the PNG in the widget's place once the kernel is gone

    def settle(self, frame: Frame) -> None:
        from nbdiag.views.saved_view import companion_bundle

        super().settle(frame)
        saved_view = getattr(self, "saved_view", None)
        if saved_view is not None:
            saved_view.update(companion_bundle(frame.png), raw=True)

    def refresh(self, frame: Frame) -> None:
        self.controls.draw(frame.panels)
        self.controls.show_findings(frame.findings)
        self.controls.show_status(frame.status)

    def close(self) -> None:
        self.controls.close()


class MarimoPath(RenderPath):
    """marimo: the dashboard's FigureWidget (an anywidget, which marimo displays natively through
    ``mo.ui.anywidget``) under a heading widget, both updated from the renderer thread while the training cell runs
    (marimo sends a widget's changes from any thread to the session that opened it). Controls are arguments, as on
    the inline path: ``mon.dashboard(layer=..., step=...)``. marimo is imported only here, when it is the front end.
    """

    def __init__(self, dashboard: Any, frame: Frame) -> None:
        from nbdiag.views.figure import PanelFigure
        from nbdiag.views.plotly_widget import HtmlWidget

        self.figure = PanelFigure(frame.panels)
        self.heading = HtmlWidget()
        self._element: Any = None

    def element(self) -> Any:
        """What marimo shows: the heading and the figure (built once; marimo keeps one model per widget)."""
        if self._element is None:
            import marimo as mo

            self._element = mo.vstack([mo.ui.anywidget(self.heading), mo.ui.anywidget(self.figure.figure)])
        return self._element

    def bundle(self, frame: Frame) -> dict[str, Any]:
        return {"text/plain": frame.text, "image/png": frame.png}

    def show(self, frame: Frame) -> None:
        import marimo as mo

        self.refresh(frame)
        mo.output.append(self.element())

    def refresh(self, frame: Frame) -> None:
        if self.figure.fits(frame.panels):
            self.figure.update(frame.panels)
        else:  # laid out anew in the same widget: marimo keeps showing its model
            from nbdiag.views.figure import PanelFigure

            self.figure = PanelFigure(frame.panels, into=self.figure.figure)
        hint = html.escape(HINT)
        self.heading.html = (
            f"<div><b>{html.escape(frame.heading())}</b></div><div style='color:#666;font-size:90%'>{hint}</div>"
            f"<b>Health</b>{findings_html(frame.findings)}"
        )


PATHS = {"widget": WidgetPath, "inline": InlinePath, "static": StaticPath, "marimo": MarimoPath}
