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
    if gone:  # plotly.js keeps what a relayout leaves out: a subplot of the old figure is removed by name
        widget._send_relayout_msg(gone)  # not plotly_relayout: it rejects the names the new layout no longer has
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
    """``go.FigureWidget`` whose figure the front end's echo never changes.

    After each edit plotly's widget JavaScript sends back ("trace deltas", "layout delta") what plotly.js holds
    that differs from the front-end model's ``_widget_data`` / ``_widget_layout``, meant as the defaults plotly.js
    filled in; plotly removes from the Python figure every property the echo names (``_remove_overlapping_props``)
    and reads them back through its defaults from then on. The echo also named properties Python had set (seen in
    the browser: the x of the per-layer traces after a dashboard shown before its data; names in notebook 07), so
    the figure looked whole from Python while ``_data`` had lost them, and the next display (``_repr_mimebundle_``
    sends ``_data``) drew traces without them: layer labels gone, bare categories "0…4". So only what Python did
    not set is kept of an echo (:func:`_defaults_only`); this also drops the ``{"0": v0, "1": v1, ...}`` objects a
    binary array comes back as (a typed array walked like an object), on which ``_remove_overlapping_props`` raised
    "The truth value of an array ... is ambiguous".

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
                deltas = [_defaults_only(d, props.get(d.get("uid"), {})) for d in message["trace_deltas"]]
                change = {**change, "new": {**message, "trace_deltas": deltas}}
            super()._handler_js2py_traceDeltas(change)

        @observe("_js2py_layoutDelta")
        def _handler_js2py_layoutDelta(self, change: dict) -> None:
            message = change["new"]
            if message:
                layout = _defaults_only(message["layout_delta"], self._layout)
                change = {**change, "new": {**message, "layout_delta": layout}}
            super()._handler_js2py_layoutDelta(change)

    return FigureWidget


def _defaults_only(delta: dict, props: Any) -> dict:
    """What of the echo ``delta`` plotly.js filled in itself: its entries that ``props`` (what Python set: a
    trace's or the layout's properties) does not hold; dicts, and lists of dicts (annotations, shapes), are walked
    alike. A trace's ``uid`` is kept: plotly finds the trace by it."""
    if not isinstance(props, dict):
        return delta
    kept = {}
    for key, value in delta.items():
        if key not in props or key == "uid":
            kept[key] = value
        elif isinstance(value, dict) and isinstance(props[key], dict):
            if inner := _defaults_only(value, props[key]):  # an empty one would make plotly drop an empty dict of ours
                kept[key] = inner
        elif _dicts(value) and _dicts(props[key]):
            mine = props[key]
            kept[key] = [_defaults_only(v, p) for v, p in zip(value, mine, strict=False)] + list(value[len(mine) :])
    return kept


def _dicts(value: Any) -> bool:
    """Whether ``value`` is a non-empty list (or tuple) of dicts."""
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, dict) for v in value)
