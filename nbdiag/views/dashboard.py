"""The live dashboard, drawn along one of three render paths chosen by :mod:`nbdiag.environment`:

- "widget": a findings banner and controls above one plotly FigureWidget (JupyterLab, Notebook 7, Binder);
- "inline": one output updated in place through a display handle (VS Code, Colab; :mod:`nbdiag.views.inline`);
- "static": a PNG and the text summary, drawn again when training ends (scripts, nbconvert, CI).

The live paths are refreshed by a Renderer thread.
"""

from __future__ import annotations

import dataclasses
import html
import threading
import time
from typing import Any

from nbdiag.environment import Display, DisplayMode, resolve_display
from nbdiag.findings import findings_html
from nbdiag.views import inline, static
from nbdiag.views.data import Snapshot, snapshot
from nbdiag.views.grid import build_panels
from nbdiag.views.panels import ViewState
from nbdiag.views.renderer import RENDER_BUDGET, Renderer
from nbdiag.views.text import summary_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Dashboard:
    """Everything the record holds, drawn live; works on any ``source`` with ``.record`` (and optionally
    ``.findings()`` and ``.predictions``): a Monitor, or a run directory reader.

    The widget is built on first display or access; in a script nothing is displayed and ``text()``, ``png()``
    and ``figure()`` still work. Displaying it starts the renderer thread (see :mod:`nbdiag.views.renderer`).

    Args:
        source: what to draw.
        max_hz: refresh rate ceiling while training (the inline path: at most ``inline.MAX_HZ``).
        budget: fraction of wall time refreshing may take.
        display: the render path ("widget", "inline", "static"); None chooses when first displayed.
    """

    def __init__(
        self, source: Any, *, max_hz: float = 5.0, budget: float = RENDER_BUDGET, display: Display | None = None
    ) -> None:
        if not hasattr(source, "record"):
            raise TypeError(f"got {type(source).__name__}, expected an object with a .record (a Monitor or a run)")
        self.source = source
        self.state = ViewState()
        self.paused = False
        self.findings_error: str | None = None
        self._lock = threading.RLock()
        self._widget: Any = None
        self._display: Any = None  # the DisplayHandle of the last widget or static display, to refresh its PNG
        self._inline: inline.InlineView | None = None
        self.mode: DisplayMode | None = None
        self.use(display)
        self.renderer = Renderer(  # bound methods only: the thread holds them weakly and ends with this dashboard
            self.refresh,
            self._record_version,
            self._is_paused,
            max_hz=max_hz,
            budget=budget,
            on_idle=self._update_fallback,
            on_error=self._renderer_failed,
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
            message = f"{type(error).__name__}: {error}"
            if message != self.findings_error:  # logged once, not at every refresh
                self.source.record.errors.add("health", error)
            self.findings_error = message
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

    def use(self, display: Any) -> None:
        """Draw along ``display`` from the next display on ("widget", "inline", "static"; None or False: chosen
        for this front end then).

        Raises:
            ValueError: for any other value (the message lists the valid ones).
        """
        mode = resolve_display(display) if display is not None else None
        self.mode = mode or None

    def select(
        self,
        layer: str | None = None,
        step: int | None = None,
        loss_log: bool | None = None,
        norm_log: bool | None = None,
    ) -> None:
        """What the controls choose, as arguments (the inline and static paths have no controls).

        Args:
            layer: the highlighted layer (a name from ``mon.layers``).
            step: the sampled step shown (the nearest one recorded); None keeps following the latest.
            loss_log, norm_log: log scale for the loss / the norms; None leaves it.

        Raises:
            ValueError: for a layer that is not recorded.
        """
        snap = self.snapshot()
        changes: dict[str, Any] = {}
        if layer is not None:
            if layer not in snap.layers:
                raise ValueError(f"got layer={layer!r}, expected one of {snap.layers}; try layer={snap.layers[0]!r}")
            changes["layer"] = layer
        if step is not None:
            changes["index"] = _nearest_index(snap, step)
        changes.update({k: v for k, v in (("loss_log", loss_log), ("norm_log", norm_log)) if v is not None})
        if changes:
            self.set_state(**changes)

    def refresh(self) -> None:
        """Redraw every live view from the newest record state (one message per view)."""
        with self._lock:
            if self._inline is not None:
                self._update_inline()
            if self._widget is None:
                return
            snap = self.snapshot()
            self.state = self._widget.sync(snap, self.state)
            self._widget.draw(build_panels(snap, self.state))
            self._widget.show_findings(self.findings())
            self._widget.show_status(self._status(snap))

    def set_state(self, **changes: Any) -> None:
        """Change what is shown (``layer``, ``index``, ``loss_log``, ``norm_log``) and redraw.

        Args:
            **changes: fields of :class:`nbdiag.views.panels.ViewState`.
        """
        with self._lock:  # the renderer thread reads and writes the state under the same lock
            self.state = dataclasses.replace(self.state, **changes)
            self.refresh()

    def pause(self) -> None:
        """Stop redrawing while training (the record keeps filling)."""
        self.paused = True

    def resume(self) -> None:
        """Redraw again, from the newest state."""
        self.paused = False
        self.refresh()

    def _record_version(self) -> int:
        return self.source.record.version

    def _is_paused(self) -> bool:
        return self.paused

    def _renderer_failed(self, error: BaseException) -> None:
        self.source.record.errors.add("renderer", error)

    def start(self) -> None:
        """Build the widget and start the renderer thread."""
        self._controls()
        self.renderer.start()

    def _start_inline(self) -> None:
        """Show a new inline output (the latest one follows training) and start the renderer at <= 2 Hz."""
        with self._lock:
            if self._inline is None:
                self._inline = inline.InlineView()
            view = self._inline
            view.show(self._inline_bundle(png=False))
            self.renderer.min_interval = view.min_interval()
        self.renderer.start()

    def _inline_bundle(self, png: bool) -> dict[str, Any]:
        snap = self.snapshot()
        found = self.findings()
        panels = build_panels(snap, self.state)
        picture = static.png(panels, found, self.title()) if png else None
        table = f"<b>Health</b>{findings_html(found)}"
        return self._inline.bundle(panels, self._heading(snap, found), summary_text(snap, found), table, picture)

    def _update_inline(self, png: bool = False) -> None:
        self._inline.update(self._inline_bundle(png))
        self.renderer.min_interval = self._inline.min_interval()

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
        """The bundle of this dashboard's path ("widget" unless chosen): widget view + image/png + text/plain,
        so a saved notebook or nbconvert output shows the state."""
        if self.mode == "static":
            return self._static_bundle()
        if self.mode == "inline":
            inline_view = self._inline or inline.InlineView()
            snap, found = self.snapshot(), self.findings()
            panels = build_panels(snap, self.state)
            png = static.png(panels, found, self.title())
            table = f"<b>Health</b>{findings_html(found)}"
            return inline_view.bundle(panels, self._heading(snap, found), summary_text(snap, found), table, png)
        bundle = self._widget_bundle()
        self.renderer.start()
        return bundle

    def _widget_bundle(self) -> dict[str, Any]:
        """The widget view's bundle; the caller starts the renderer once it is displayed (edits before the first
        view would leave it empty)."""
        controls = self._controls()
        self.refresh()
        controls.figure.figure._repr_mimebundle_()  # a new view starts from the current figure
        bundle = {"text/plain": self.text(), "image/png": self.png()}
        bundle[WIDGET_MIME] = controls.box._repr_mimebundle_()[WIDGET_MIME]
        return bundle

    def _static_bundle(self) -> dict[str, Any]:
        note = "static view: drawn again when training ends (close()); display='inline' or 'widget' draws live"
        return {"text/plain": f"{self.text()}\n\n({note})", "image/png": self.png()}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        mode = self.mode or resolve_display(None) or "static"
        if mode == "inline":
            self._start_inline()
        elif mode == "static":
            self._display = display(self._static_bundle(), raw=True, display_id=True)
        else:
            self._display = display(self._widget_bundle(), raw=True, display_id=True)
            self.renderer.start()

    def _update_fallback(self) -> None:
        """When training went quiet, refresh the displayed PNG and text, so a saved notebook shows the last state."""
        with self._lock:
            if self._inline is not None:
                self._update_inline(png=True)
        if self._display is not None:
            static_shown = self._widget is None
            self._display.update(self._static_bundle() if static_shown else self._widget_bundle(), raw=True)

    def __repr__(self) -> str:
        return self.text()

    def title(self) -> str:
        """Model name and latest sampled step."""
        model = self.source.record.meta.model
        steps = self.source.record.steps()
        return f"{model} · step {steps[-1]}" if steps else model

    def _heading(self, snap: Snapshot, found: list[Any]) -> str:
        """The inline view's first line: model, step, layers, findings by severity."""
        latest = snap.entries[-1].step if snap.entries else "-"
        counts = {}
        for finding in found:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        summary = ", ".join(f"{n} {severity}" for severity, n in counts.items()) or "no findings"
        return f"{self.title() or 'nbdiag'} · latest sampled step {latest} · {len(snap.layers)} layers · {summary}"

    def _status(self, snap: Snapshot) -> str:
        costs = list(self.renderer.costs)
        cost = f", last refresh {costs[-1] * 1e3:.1f} ms" if costs else ""
        paused = " · <b>paused</b>" if self.paused else ""
        if self.findings_error:
            paused += f" · <span style='color:#d62728'>health rules failed: {html.escape(self.findings_error)}</span>"
        paused += _errors_status(self.source.record.errors)
        latest = snap.entries[-1].step if snap.entries else "-"
        if snap.entries and self.state.index is not None and self.state.index < len(snap.entries) - 1:
            latest = f"{latest} · <b>showing step {snap.entries[self.state.index].step}</b>"
        return (
            f"<b>{self.title() or 'nbdiag'}</b> · latest sampled step {latest} · {len(snap.layers)} layers · "
            f"{self.renderer.refreshes} refreshes{cost} · {time.strftime('%H:%M:%S')}{paused}"
        )


def _nearest_index(snap: Snapshot, step: int) -> int | None:
    """The index of the sampled step nearest ``step`` (None, following the latest, when that is the last one)."""
    if not snap.entries:
        return None
    steps = [entry.step for entry in snap.entries]
    index = min(range(len(steps)), key=lambda i: abs(steps[i] - step))
    return None if index == len(steps) - 1 else index


def _errors_status(errors: Any) -> str:
    """ " · 2 nbdiag errors (latest: writer: OSError ...); see .errors" in red, or nothing."""
    count = len(errors)
    if not count:
        return ""
    latest = errors.reports()[-1]
    text = f"{count} nbdiag error{'s' if count > 1 else ''} (latest: {latest.source}: {latest.message}); see .errors"
    return f" · <span style='color:#d62728'>{html.escape(text)}</span>"
