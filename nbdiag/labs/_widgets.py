"""The lab views' side: the :class:`WidgetView` base, which view draws which lab, and the three render paths of a
lab (widget, inline, static), chosen by :mod:`nbdiag.environment` as for the dashboard.

A lab never imports its view: the composition root (``nbdiag/__init__.py``) registers :func:`lab_view`,
:func:`lab_draw` and :func:`show_lab` with :mod:`nbdiag.display`, and :class:`nbdiag.labs.lab.Lab` calls them.
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


def show_lab(lab: Any, mode: str) -> None:
    """Display ``lab`` along ``mode``: "widget" (the controls and figure, with a PNG and text fallback), "inline"
    (its plotly figures drawn by plotly.js in the output, controls as arguments) or "static" (PNG and text)."""
    from IPython.display import display

    display(lab_bundle(lab, mode), raw=True)


def lab_bundle(lab: Any, mode: str) -> dict[str, Any]:
    """The mime bundle of ``lab`` along ``mode`` (see :func:`show_lab`)."""
    text = lab.summary_text()
    if mode == "widget":
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
