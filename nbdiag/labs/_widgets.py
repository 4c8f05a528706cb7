"""The lab views' side: the :class:`WidgetView` base, which view draws which lab, and the three render paths of a
lab (widget, inline, static), chosen by :mod:`nbdiag.environment` as for the dashboard.

A lab never imports its view: the composition root (``nbdiag/__init__.py``) registers :func:`lab_view`,
:func:`lab_draw` and :func:`lab_output` with :mod:`nbdiag.display`, and :class:`nbdiag.labs.lab.Lab` calls them.
"""

from __future__ import annotations

import html
import importlib
import json
from typing import Any

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
NO_WIDGETS = "no widgets here: the lab's controls are its function's arguments (see help() of the lab function)"

# Lab class name -> the module of its view: a ``VIEW`` class (a WidgetView) and ``draw_lab(lab, fig)``.
VIEW_MODULES = {
    "InitLab": "nbdiag.labs.init_view",
    "PreprocessingLab": "nbdiag.labs.preprocessing_view",
    "ActivationsLab": "nbdiag.labs.activations_view",
    "SearchLab": "nbdiag.labs.search_view",
    "InitComparison": "nbdiag.labs.compare_inits_view",
    "PredictionTracker": "nbdiag.labs.predictions_view",
}


class WidgetView:
    """The widgets of one lab result: built from the lab's data, redrawn by :meth:`refresh`; ``box`` is the
    container, ``figures`` the plotly FigureWidgets in it (each from :func:`nbdiag.views.plotly_widget.live`).

    A view only reads its lab and calls the lab's own update methods from its controls; the lab keeps no widget.
    """

    box: Any
    figures: tuple[Any, ...] = ()

    def refresh(self) -> None:
        """Redraw from the lab's current data."""
        raise NotImplementedError


def _module(lab: Any) -> Any:
    """The view module of ``lab``'s class (or of the nearest base class that has one)."""
    for cls in type(lab).__mro__:
        if cls.__name__ in VIEW_MODULES:
            return importlib.import_module(VIEW_MODULES[cls.__name__])
    raise TypeError(f"got {type(lab).__name__}, expected a lab with a view (one of {sorted(VIEW_MODULES)})")


def lab_view(lab: Any) -> WidgetView:
    """Build ``lab``'s widgets."""
    return _module(lab).VIEW(lab)


def lab_draw(lab: Any, fig: Any) -> None:
    """Draw ``lab`` with matplotlib on ``fig``."""
    _module(lab).draw_lab(lab, fig)


def lab_output(lab: Any, mode: str) -> Any:
    """What shows ``lab`` along ``mode``: a mime bundle for "widget" (the controls and figure, with a PNG and text
    fallback), "inline" (its plotly figures drawn by plotly.js in the output, controls as arguments) and "static"
    (PNG and text); for "marimo", the element marimo displays (see :func:`marimo_output`)."""
    if mode == "marimo":
        return marimo_output(lab)
    return lab_bundle(lab, mode)


def lab_display(lab: Any, mode: str) -> None:
    """Display ``lab`` along ``mode`` ("widget", "inline" or "static") in the current cell's output; a widget is
    followed by its saved view, which shows the PNG in its place once the kernel is gone
    (:mod:`nbdiag.views.saved_view`)."""
    from IPython.display import display

    from nbdiag.views.saved_view import show_companion

    bundle = lab_bundle(lab, mode)
    display(bundle, raw=True)
    if WIDGET_MIME in bundle:
        show_companion(bundle["image/png"])


def lab_bundle(lab: Any, mode: str) -> dict[str, Any]:
    """The mime bundle of ``lab`` along ``mode`` (see :func:`lab_output`)."""
    text = lab.summary_text()
    if mode == "widget":
        for figure in lab.view.figures:  # a new view starts from the current figure, not the one it was built with
            figure._repr_mimebundle_()
        bundle = {"text/plain": text, "image/png": lab.png()}
        bundle[WIDGET_MIME] = lab.widget._repr_mimebundle_()[WIDGET_MIME]
        return bundle
    if mode == "inline":
        from nbdiag.views.inline import InlineView

        figures = [_figure_json(figure) for figure in lab.view.figures]
        png = lab.png()  # shown where plotly.js is not loaded (a saved notebook reopened, nbconvert)
        heading = text.splitlines()[0]
        table = "<pre>" + html.escape("\n".join(text.splitlines()[1:])) + "</pre>"
        return InlineView().page(figures, heading, text, table, png, hint=NO_WIDGETS)
    return {"text/plain": f"{text}\n\n({NO_WIDGETS})", "image/png": lab.png()}


def _figure_json(figure: Any) -> dict[str, Any]:
    """A FigureWidget's ``{data, layout}`` as plain JSON: arrays as lists (non-finite values as null, a gap), the
    template expanded."""
    return json.loads(json.dumps(figure.to_plotly_json(), default=_plain, allow_nan=False))


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return np.where(np.isfinite(value), value, None).tolist()
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def marimo_output(lab: Any) -> Any:
    """``lab`` in marimo: its figures (the view's FigureWidgets, anywidgets marimo displays) under marimo UI
    elements that set the view's own controls, so a control recomputes the lab and the view redraws as in Jupyter;
    the view's text lines are mirrored into :class:`~nbdiag.views.plotly_widget.HtmlWidget`s. Built once per view
    and kept on it: marimo calls an element's ``on_change`` only while the element lives."""
    import marimo as mo

    from nbdiag.views.plotly_widget import HtmlWidget

    view = lab.view
    if getattr(view, "marimo", None) is None:
        controls = getattr(view, "controls", None) or {"step": view.slider}
        elements = [e for e in (_marimo_control(mo, control) for control in controls.values()) if e is not None]
        texts = []
        for name in ("status", "table"):
            source = getattr(view, name, None)
            if source is not None and isinstance(getattr(source, "value", None), str):
                mirror = HtmlWidget(html=source.value)
                source.observe(lambda change, mirror=mirror: setattr(mirror, "html", change["new"]), names="value")
                texts.append(mo.ui.anywidget(mirror))
        figures = [mo.ui.anywidget(figure) for figure in view.figures]
        view.marimo = mo.vstack([mo.hstack(elements, justify="start", wrap=True), *texts[:1], *figures, *texts[1:]])
        view.marimo_controls = elements  # alive as long as the view
    return view.marimo


def _marimo_control(mo: Any, control: Any) -> Any:
    """A marimo UI element that sets the ipywidgets ``control`` (None for a kind marimo has no match for)."""
    import numpy as np

    def on_change(value: Any) -> None:
        control.value = value

    kind, label, value = type(control).__name__, control.description, control.value
    if kind == "Dropdown":
        options = {
            str(option[0] if isinstance(option, tuple) else option): _option_value(option) for option in control.options
        }
        shown = next(key for key, option in options.items() if option == value)
        return mo.ui.dropdown(options=options, value=shown, label=label, on_change=on_change)
    if kind == "FloatLogSlider":
        steps = [float(v) for v in np.geomspace(control.base**control.min, control.base**control.max, 41)]
        nearest = min(steps, key=lambda step: abs(np.log(step) - np.log(value)))
        return mo.ui.slider(steps=steps, value=nearest, label=label, on_change=on_change)
    if kind in ("IntSlider", "FloatSlider"):
        return mo.ui.slider(control.min, control.max, step=control.step, value=value, label=label, on_change=on_change)
    if kind == "Checkbox":
        return mo.ui.checkbox(value=value, label=label, on_change=on_change)
    if kind == "ToggleButtons":
        return mo.ui.radio(options=list(control.options), value=value, label=label, inline=True, on_change=on_change)
    if kind in ("IntText", "BoundedIntText"):
        return mo.ui.number(value=value, step=1, label=label, on_change=lambda v: on_change(int(v)))
    return None


def _option_value(option: Any) -> Any:
    return option[1] if isinstance(option, tuple) else option
