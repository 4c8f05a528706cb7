"""Plotly FigureWidgets that fill their output area's width, and keep filling it as it changes.

A FigureWidget view draws its figure before JupyterLab attaches it to the page, when it has no width yet, so
plotly.js falls back to 700 px and never looks again. With ``autosize`` and the ``responsive`` config plotly.js
resizes on window "resize" events; :class:`FitWidth`, a tiny widget placed beside the figures, sends one whenever
its own width changes (the output area was attached, the side bar toggled) or a figure finished drawing.
"""

from __future__ import annotations

from typing import Any

import anywidget

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


def responsive(figure: Any) -> Any:
    """Let ``figure`` (a FigureWidget without a fixed width) follow its container's width.

    Returns:
        ``figure``, for chaining.
    """
    figure.layout.autosize = True
    figure._config = {**figure._config, "responsive": True}  # FigureWidget's only way in for a plotly.js config
    return figure
