"""The one plotly widget of nbdiag: the dashboard and every lab draw on a :func:`live` FigureWidget.

Two things every live figure needs, whatever draws on it:

- it survives the front end's echo of binary arrays (plotly 7.1; see :func:`figure_widget_class`);
- it fills its output area's width, and keeps filling it as that changes (:func:`live` and :class:`FitWidth`).

A FigureWidget view draws its figure before JupyterLab attaches it to the page, when it has no width yet, so
plotly.js falls back to 700 px and never looks again. With ``autosize`` and the ``responsive`` config plotly.js
resizes on window "resize" events; :class:`FitWidth`, a tiny widget placed beside the figures, sends one whenever
its own width changes (the output area was attached, the side bar toggled) or a figure finished drawing.
"""

from __future__ import annotations

import functools
from typing import Any

import anywidget
import numpy as np
import traitlets

_ESM = """
function render({ el }) {
  let pending = 0;
  const resize = () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      if (el.isConnected && el.clientWidth > 0) window.dispatchEvent(new Event("resize"));
    });
  };
  const observer = new ResizeObserver(resize);
  observer.observe(el);
  document.addEventListener("plotlywidget-after-render", resize);
  return () => {
    observer.disconnect();
    document.removeEventListener("plotlywidget-after-render", resize);
    cancelAnimationFrame(pending);
  };
}
export default { render };
"""


class FitWidth(anywidget.AnyWidget):
    """Invisible, full width: tells responsive plotly figures on the page to fit their containers again."""

    _esm = _ESM
    _css = ".nbdiag-fit-width { height: 0; margin: 0 !important; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("nbdiag-fit-width")


_HTML_ESM = """
function render({ model, el }) {
  const draw = () => { el.innerHTML = model.get("html"); };
  draw();
  model.on("change:html", draw);
  return () => model.off("change:html", draw);
}
export default { render };
"""


class HtmlWidget(anywidget.AnyWidget):
    """A line or block of HTML that changes in place (the dashboard's heading and findings where no ipywidgets
    run: marimo displays anywidgets only)."""

    _esm = _HTML_ESM
    html = traitlets.Unicode("").tag(sync=True)


def live(figure: Any) -> Any:
    """``figure`` (a ``go.Figure`` or its dict) as nbdiag's FigureWidget, filling its container's width.

    Build the figure with its values first and wrap it last: a FigureWidget edited before its first view exists
    comes up empty in JupyterLab and Notebook 7 (plotly 7.1; seen in the browser tests).
    """
    return responsive(figure_widget_class()(figure))


def refill(widget: Any, figure: Any) -> Any:
    """Make ``widget`` (a live FigureWidget) draw ``figure`` (a ``go.Figure``) instead, in place.

    The widget model stays the same, so every front end showing it keeps showing it: a JupyterLab box, and a
    marimo cell, which displays the model itself and says "Model not found" once it was closed (the dashboard used
    to build a new FigureWidget and close the old one when its set of panels changed).

    Returns:
        ``widget``.
    """
    layout = figure.layout.to_plotly_json()
    gone = {key: None for key in widget.layout._props if key not in layout}
    widget.data = ()
    widget.layout = layout
    if gone:
        widget.plotly_relayout(gone)
    widget.add_traces([trace.to_plotly_json() for trace in figure.data])
    responsive(widget)
    widget._repr_mimebundle_()  # a view created from now on starts from this figure
    return widget


def responsive(figure: Any) -> Any:
    """Let ``figure`` (a FigureWidget without a fixed width) follow its container's width.

    Returns:
        ``figure``, for chaining.
    """
    figure.layout.autosize = True
    figure._config = {**figure._config, "responsive": True}  # FigureWidget's only way in for a plotly.js config
    return figure


@functools.cache
def figure_widget_class() -> type:
    """``go.FigureWidget`` that survives the front end's echo of binary arrays.

    After each edit plotly's widget JavaScript sends back what plotly.js holds (``createDeltaObject``); a float
    array sent as a binary buffer is a typed array there, which that function walks like an object, so the echo
    holds ``{"0": v0, "1": v1, ...}``. plotly 7.1's ``_remove_overlapping_props`` then raised "The truth value of
    an array ... is ambiguous" on every interaction. Those entries only record plotly.js's defaults for values we
    set ourselves: they are dropped before plotly reads the echo.

    Its comm opens once the figure is built, so the front end's model starts with the traces and the layout.
    plotly's ``BaseFigureWidget`` opens it first (``_widget_data`` empty) and sends the figure in a later state
    update, which its view ignores (``do_data`` does nothing): a view created before that update arrived (a busy
    front end, still loading the widget's 5 MB module) drew an empty figure for good (the blank lab and dashboard
    figures of the browser tests).
    """
    import plotly.graph_objects as go
    from traitlets import observe

    class FigureWidget(go.FigureWidget):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._building = True
            try:
                super().__init__(*args, **kwargs)
            finally:
                self._building = False
            self.open()  # the first message holds the whole figure

        def open(self) -> None:
            if not getattr(self, "_building", False):
                super().open()

        @observe("_js2py_traceDeltas")
        def _handler_js2py_traceDeltas(self, change: dict) -> None:
            message = change["new"]
            if message:
                props = {trace.uid: trace._props for trace in self.data}
                deltas = [_without_array_echoes(d, props.get(d.get("uid"), {})) for d in message["trace_deltas"]]
                change = {**change, "new": {**message, "trace_deltas": deltas}}
            super()._handler_js2py_traceDeltas(change)

        @observe("_js2py_layoutDelta")
        def _handler_js2py_layoutDelta(self, change: dict) -> None:
            message = change["new"]
            if message:
                layout = _without_array_echoes(message["layout_delta"], self._layout)
                change = {**change, "new": {**message, "layout_delta": layout}}
            super()._handler_js2py_layoutDelta(change)

    return FigureWidget


def _without_array_echoes(delta: dict, props: Any) -> dict:
    """``delta`` without the objects that stand where ``props`` holds a numpy array (see
    :func:`figure_widget_class`); nested dicts are walked alike."""
    if not isinstance(props, dict):
        return delta
    kept = {}
    for key, value in delta.items():
        mine = props.get(key)
        if isinstance(value, dict) and isinstance(mine, np.ndarray):
            continue
        kept[key] = _without_array_echoes(value, mine) if isinstance(value, dict) else value
    return kept
