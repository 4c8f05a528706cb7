"""The live dashboard: one source drawn along the render paths of :mod:`nbdiag.views.paths` ("widget", "inline",
"static"; chosen by :mod:`nbdiag.environment`), each fed one :class:`~nbdiag.views.paths.Frame` per refresh.

The live paths are refreshed by a Renderer thread.
"""

from __future__ import annotations

import dataclasses
import html
import threading
import time
from typing import Any

from nbdiag.environment import Display, DisplayMode, resolve_display
from nbdiag.views import static
from nbdiag.views.data import Snapshot, snapshot
from nbdiag.views.depth_panels import MIN_BLOCKS, blocks_of
from nbdiag.views.panels import ViewState
from nbdiag.views.paths import PATHS, WIDGET_MIME, Frame, RenderPath
from nbdiag.views.renderer import RENDER_BUDGET, Renderer
from nbdiag.views.text import summary_text

__all__ = ["WIDGET_MIME", "Dashboard"]


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
        self._paths: dict[str, RenderPath] = {}  # the paths shown (or built: the widget), by name
        self.mode: DisplayMode | None = None
        self.use(display)
        self.renderer = Renderer(  # bound methods only: the thread holds them weakly and ends with this dashboard
            self.refresh,
            self._record_version,
            self._is_paused,
            max_hz=max_hz,
            budget=budget,
            on_idle=self._settle,
            on_error=self._renderer_failed,
        )
        self._base_interval = self.renderer.min_interval
        self._saved_versions: dict[str, int] = {}  # by path: the record version its output's PNG and text show

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

    def frame(self) -> Frame:
        """One refresh's state: the record read once, the health rules run once, the shown state synced with the
        controls; its panels, text and PNG all follow from it."""
        with self._lock:
            snap = self.snapshot()
            for path in self._paths.values():
                self.state = path.sync(snap, self.state)
            found = self.findings()
            return Frame(snap, found, self.state, self.title(), self._status(snap))

    def panels(self) -> list:
        """The panels of the current state (plain data; see :mod:`nbdiag.views.panels`)."""
        return self.frame().panels

    def text(self) -> str:
        """A readable text summary of the latest state."""
        return summary_text(self.snapshot(), self.findings())

    def figure(self) -> Any:
        """The panels as a matplotlib Figure."""
        frame = self.frame()
        return static.figure(frame.panels, frame.findings, frame.title)

    def png(self, dpi: int = 72) -> bytes:
        """The panels as PNG bytes."""
        frame = self.frame()
        return static.png(frame.panels, frame.findings, frame.title, dpi=dpi)

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
        return self.path("widget").controls

    def path(self, name: str) -> RenderPath:
        """The render path ``name`` of this dashboard ("widget", "inline", "static"), built on first use; once
        built it is refreshed with the others."""
        with self._lock:
            if name not in self._paths:
                self._paths[name] = PATHS[name](self, self.frame())
                self.refresh()
            return self._paths[name]

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
        histograms: str | int | None = None,
    ) -> None:
        """What the controls choose, as arguments (the inline and static paths have no controls).

        Args:
            layer: the highlighted layer (a name from ``mon.layers``).
            step: the sampled step shown (the nearest one recorded); None keeps following the latest.
            loss_log, norm_log: log scale for the loss / the norms; None leaves it.
            histograms: for a model of repeated blocks, what the histogram panel shows: a role (``"attn.qkv"``: that
                layer in every block) or a block index (``3``: every layer of block 3); None leaves it (at first,
                the selected layer's role).

        Raises:
            ValueError: for a layer that is not recorded (none is before the first sampled step), or a role or
                block the model does not have.
        """
        snap = self.snapshot()
        changes: dict[str, Any] = {}
        if layer is not None:
            if not snap.layers:
                raise ValueError(
                    f"got layer={layer!r}, but no layer is recorded yet (nothing before the first sampled step); "
                    "choose the layer once training has sampled a step, or leave layer= out"
                )
            if layer not in snap.layers:
                raise ValueError(f"got layer={layer!r}, expected one of {snap.layers}; try layer={snap.layers[0]!r}")
            changes["layer"] = layer
        if step is not None:
            changes["index"] = _nearest_index(snap, step)
        if histograms is not None:
            changes["hist"] = _histograms_choice(snap, histograms)
        changes.update({k: v for k, v in (("loss_log", loss_log), ("norm_log", norm_log)) if v is not None})
        if changes:
            self.set_state(**changes)

    def refresh(self) -> None:
        """Redraw every shown path from the newest record state (one frame for all)."""
        with self._lock:
            if not self._paths:
                return
            frame = self.frame()
            for path in list(self._paths.values()):
                path.refresh(frame)
            self._pace()

    def _pace(self) -> None:
        """The renderer waits as long as the slowest shown path asks (inline: its bytes per second)."""
        self.renderer.min_interval = max([self._base_interval] + [p.min_interval() for p in self._paths.values()])

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

    def _settle(self) -> None:
        """Training went quiet or ended: every shown path draws the same frame, fallback PNG and text included,
        so a notebook saved now shows the last state. Nothing is displayed again when the record did not change
        since the outputs were displayed or last settled: a widget displayed again gets a new view, which misses
        what is sent while the front end builds it (a dashboard shown before its data came up blank that way)."""
        with self._lock:
            if not self._paths:
                return
            version = self._record_version()
            frame = self.frame()
            for name, path in list(self._paths.items()):
                path.refresh(frame)
                if self._saved_versions.get(name) != version:
                    path.settle(frame)
                    self._saved_versions[name] = version

    def finish(self) -> None:
        """Training is over: draw once more, fallback PNG and text included (a notebook saved now shows the final
        state), and stop the renderer thread. The controls keep working."""
        self.renderer.stop()
        self._settle()

    def close(self) -> None:
        """Stop the renderer and close the widgets."""
        self.renderer.stop()
        with self._lock:
            for path in self._paths.values():
                path.close()
            self._paths.clear()

    # -- display ------------------------------------------------------------------------------------------
    def _chosen(self) -> str:
        return self.mode or resolve_display(None) or "static"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The bundle of this dashboard's path ("widget" unless chosen): widget view + image/png + text/plain,
        so a saved notebook or nbconvert output shows the state."""
        mode = self.mode or "widget"
        path = self.path(mode)
        self._saved_versions[mode] = self._record_version()
        bundle = path.bundle(self.frame())
        if path.live:  # started once the view exists: edits before the first view would leave it empty
            self.renderer.start()
        return bundle

    def _ipython_display_(self) -> None:
        mode = self._chosen()
        path = self.path(mode)
        self._saved_versions[mode] = self._record_version()
        path.show(self.frame())
        if path.live:
            self._pace()  # the first message may set it (inline: its size)
            self.renderer.start()

    def _display_(self) -> Any:
        """marimo's display protocol: the marimo path's figure, live (the renderer starts), or the chosen path's
        bundle."""
        mode = self._chosen()
        path = self.path(mode)
        if mode != "marimo":
            return _Bundle(path.bundle(self.frame()))
        self.refresh()
        self.renderer.start()
        return path.element()

    def __repr__(self) -> str:
        return self.text()

    def title(self) -> str:
        """Model name and latest sampled step."""
        model = self.source.record.meta.model
        steps = self.source.record.steps()
        return f"{model} · step {steps[-1]}" if steps else model

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


class _Bundle:
    """A mime bundle as an object marimo formats."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return self.bundle


def _histograms_choice(snap: Snapshot, choice: str | int) -> str | int:
    """``choice`` checked against the model's blocks: a role name or a block index."""
    blocks = blocks_of(snap)
    if blocks is None:
        raise ValueError(
            f"got histograms={choice!r}, but this model has no repeated blocks (or fewer than {MIN_BLOCKS}): its "
            "histogram panel shows every layer; leave histograms= out"
        )
    if isinstance(choice, str) and choice in blocks.roles:
        return choice
    if isinstance(choice, int) and not isinstance(choice, bool) and 0 <= choice < len(blocks):
        return choice
    raise ValueError(
        f"got histograms={choice!r}, expected a role, one of {list(blocks.roles)}, or a block index from 0 to "
        f"{len(blocks) - 1}; try histograms={blocks.roles[0]!r}"
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
