"""The dashboard's ipywidgets: findings banner, layer selector, step slider, pause and log toggles, status line."""

from __future__ import annotations

import dataclasses
import html
import weakref
from typing import Any

from nbdiag.findings import by_severity, severity_badge, where_text
from nbdiag.names import owning_layer
from nbdiag.views.data import Snapshot
from nbdiag.views.depth_panels import blocks_of
from nbdiag.views.figure import PanelFigure
from nbdiag.views.panels import ViewState, selected_layer
from nbdiag.views.plotly_widget import FitWidth

_SHORT_LABEL = {"description_width": "auto"}
AUTO, AUTO_LABEL = "auto", "the selected layer's role"  # the histogram choice that follows the layer selector
BANNER_FINDINGS = 6  # findings shown in the banner; the rest are counted (mon.findings() lists all)


class Controls:
    """The widgets of one Dashboard; user changes go to ``dashboard.set_state`` / ``pause`` / ``resume``."""

    def __init__(self, dashboard: Any, panels: list) -> None:
        import ipywidgets as w

        self._dashboard = weakref.ref(dashboard)  # the widgets outlive a dropped dashboard; they must not keep it
        self._syncing = False
        self.figure = PanelFigure(panels)
        self.layer = w.Dropdown(description="layer", options=[], layout=w.Layout(width="240px"), style=_SHORT_LABEL)
        self.step = w.IntSlider(
            description="step",
            min=0,
            max=0,
            value=0,
            continuous_update=True,
            readout=False,
            layout=w.Layout(width="300px"),
            style=_SHORT_LABEL,
        )
        self.step_label = w.Label("", layout=w.Layout(min_width="110px"))
        # a deep model's histogram panel: one role in every block, or one block (hidden for other models)
        self.hist = w.Dropdown(description="histograms", options=[(AUTO_LABEL, AUTO)], value=AUTO, style=_SHORT_LABEL)
        self.hist.layout = w.Layout(width="230px", display="none")
        self.hist.tooltip = "a deep model's activation histograms: one role in every block, or every layer of a block"
        self.pause = w.ToggleButton(description="pause", icon="pause", value=False, layout=w.Layout(width="100px"))
        self.pause.tooltip = "stop redrawing while training (the record keeps filling)"
        self.loss_log = _checkbox(w, "log loss", dashboard.state.loss_log)
        self.norm_log = _checkbox(w, "log norms", dashboard.state.norm_log)
        self.status = w.HTML()
        self.findings = w.VBox(layout=w.Layout(width="100%"))  # the banner: one row per finding, most severe first
        self._shown_findings: tuple = ()
        self.layer.observe(self._on_layer, names="value")
        self.hist.observe(lambda c: self._set(hist=None if c["new"] == AUTO else c["new"]), names="value")
        self.step.observe(self._on_step, names="value")
        self.pause.observe(self._on_pause, names="value")
        self.loss_log.observe(lambda c: self._set(loss_log=c["new"]), names="value")
        self.norm_log.observe(lambda c: self._set(norm_log=c["new"]), names="value")
        row = w.HBox(
            [self.layer, self.hist, self.step, self.step_label, self.pause, self.loss_log, self.norm_log],
            layout=w.Layout(align_items="center", flex_flow="row wrap", grid_gap="4px 12px"),
        )
        self.box = w.VBox(
            [self.status, self.findings, row, self.figure.figure, FitWidth()],
            layout=w.Layout(width="100%"),
        )
        self.box.add_class("nbdiag-dashboard")

    def sync(self, snap: Snapshot, state: ViewState) -> ViewState:
        """Bring the controls' ranges and options up to ``snap``; the slider follows the latest step unless pinned.

        Returns:
            The state to draw (its index pinned to an entry, or None to follow the latest).
        """
        self._syncing = True
        try:
            options = list(zip(snap.labels, snap.layers, strict=True))
            if list(self.layer.options) != options:
                self.layer.options = options
            layer = selected_layer(snap, state)
            if layer is not None and self.layer.value != layer:
                self.layer.value = layer
            self._sync_hist(snap, state)
            last = max(len(snap.entries) - 1, 0)
            index = state.index if state.index is not None and state.index < last else None
            if snap.entries:  # the slider runs over steps (sampling is denser at the start), snapped to sampled ones
                first_step, last_step = snap.entries[0].step, snap.entries[-1].step
                shown = snap.entries[last if index is None else index].step
                self.step.max = max(last_step, self.step.min)
                self.step.min = first_step
                self.step.max = last_step
                self.step.value = shown
                self.step_label.value = f"step {shown}" + ("" if index is None else f" (latest {last_step})")
        finally:
            self._syncing = False
        return dataclasses.replace(state, index=index)

    def _sync_hist(self, snap: Snapshot, state: ViewState) -> None:
        """The histogram choice: shown for a deep model, with its roles and blocks as options."""
        blocks = blocks_of(snap)
        self.hist.layout.display = "none" if blocks is None else None
        options = [(AUTO_LABEL, AUTO)]
        if blocks is not None:
            options += [(f"role {role}", role) for role in blocks.roles]
            options += [(f"block {i} ({name})", i) for i, name in enumerate(blocks.blocks)]
        if list(self.hist.options) != options:
            self.hist.options = options
        value = AUTO if state.hist is None else state.hist
        if value in [v for _, v in options] and self.hist.value != value:
            self.hist.value = value

    def show_findings(self, findings: list[Any]) -> None:
        """The banner: each finding with its layer, step and advice; its "show" button selects that layer and step."""
        import ipywidgets as w

        ordered = by_severity(findings)
        key = tuple((f.id, f.severity, f.layer, f.step, f.message) for f in ordered)
        if key == self._shown_findings:
            return
        self._shown_findings = key
        rows = [self._finding_row(w, finding) for finding in ordered[:BANNER_FINDINGS]]
        if not ordered:
            rows = [w.HTML("<span style='color:#2e7d32'><b>Health:</b> no findings</span>")]
        elif len(ordered) > BANNER_FINDINGS:
            rows.append(w.HTML(f"… and {len(ordered) - BANNER_FINDINGS} more: <code>mon.findings()</code>"))
        self.findings.children = rows

    def _finding_row(self, w: Any, finding: Any) -> Any:
        where = where_text(finding)
        text = (
            f"{severity_badge(finding.severity)} <b>{html.escape(finding.id)}</b>"
            f"{' · ' + html.escape(where) if where else ''}: {html.escape(finding.message)}"
            f"<br><span style='color:#444'>→ {html.escape(finding.advice)} <i>({html.escape(finding.ref)})</i></span>"
        )
        label = w.HTML(f"<div style='line-height:1.35'>{text}</div>", layout=w.Layout(flex="1 1 auto"))
        if finding.layer is None and finding.step is None:
            return w.HBox([label])
        button = w.Button(description="show", layout=w.Layout(width="56px", min_width="56px"))
        button.tooltip = "select this finding's layer and step in the panels"
        button.on_click(lambda _: self._show(finding))
        return w.HBox([button, label], layout=w.Layout(align_items="flex-start", grid_gap="8px"))

    def _show(self, finding: Any) -> None:
        """Select ``finding``'s layer (a parameter's layer for parameter findings) and step."""
        dashboard = self.dashboard
        if dashboard is None:
            return
        layers = dashboard.snapshot().layers
        layer = next((n for n in (finding.layer, owning_layer(finding.layer or "")) if n in layers), None)
        dashboard.select(layer=layer, step=finding.step)

    def show_status(self, html: str) -> None:
        self.status.value = html

    def draw(self, panels: list) -> None:
        """Update the figure in place, or lay it out anew in the same widget when the set of panels changed."""
        if self.figure.fits(panels):
            self.figure.update(panels)
            return
        self.figure = PanelFigure(panels, into=self.figure.figure)

    @property
    def dashboard(self) -> Any:
        """The dashboard these widgets drive (None once it was dropped)."""
        return self._dashboard()

    def close(self) -> None:
        self.box.close_all()

    def _set(self, **changes: Any) -> None:
        dashboard = self.dashboard
        if not self._syncing and dashboard is not None:
            dashboard.set_state(**changes)

    def _on_layer(self, change: dict) -> None:
        self._set(layer=change["new"])

    def _on_step(self, change: dict) -> None:
        if not self._syncing:
            self.dashboard.select(step=change["new"])  # the nearest sampled step; the last one follows training

    def _on_pause(self, change: dict) -> None:
        paused = change["new"]
        self.pause.description, self.pause.icon = ("resume", "play") if paused else ("pause", "pause")
        dashboard = self.dashboard
        if dashboard is None:
            return
        if paused:
            dashboard.pause()
        else:
            dashboard.resume()


def _checkbox(w: Any, description: str, value: bool) -> Any:
    """A checkbox sized to its label (no indent)."""
    return w.Checkbox(description=description, value=value, indent=False, layout=w.Layout(width="auto"))
