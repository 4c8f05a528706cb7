"""The saved view of a widget output: what a notebook shows for a dashboard or lab once its kernel is gone.

A widget output's bundle holds the widget view, a PNG and text. JupyterLab and Notebook 7 render the widget view
whenever the notebook is trusted (the person who saved it reopens it), and with no kernel behind it their widget
renderer (``@jupyter-widgets/jupyterlab-manager`` 5) writes "Error displaying widget: model not found" and never
falls back to the PNG. (An untrusted notebook, nbconvert, nbviewer and GitHub show the PNG already: the widget
renderer is not a safe one.)

So each widget output is followed by a small companion output: a script that watches the output above it and, only
when that output could not display its widget, hides it and shows the PNG in its place, with a line saying that
running the cell brings the controls back. While the widget is live the companion shows nothing. Where scripts do
not run (an untrusted notebook, GitHub), it is an empty text output.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

CAPTION = "nbdiag · saved picture: run the cell again for the live, interactive view"
POLL_MS = 250
POLL_LIMIT = 480  # two minutes of polling: a live widget renders within that, a dead one errors within seconds

# ``element`` is the companion's output node (JupyterLab's JavaScript renderer and nbconvert both define it).
_SCRIPT = """(function (element, picture) {
  const failed = (node) => node && !node.firstElementChild && node.classList.contains("jupyter-widgets")
    && node.textContent.startsWith("Error displaying widget");
  let polls = 0;
  const look = () => {  /* JupyterLab runs this before the output is attached: look again until it is */
    const child = element.isConnected ? element.closest(".jp-OutputArea-child") : null;
    if (element.isConnected && !child) return;  /* not JupyterLab or Notebook 7: nothing to stand in for */
    const widget = child && child.previousElementSibling;
    const node = widget && widget.querySelector(":scope > .jp-OutputArea-output");
    if (failed(node)) {
      widget.style.display = "none";
      element.innerHTML = picture;
      return;
    }
    if ((node && node.firstElementChild) || ++polls > %(limit)d) return;  /* live, or given up */
    setTimeout(look, %(interval)d);
  };
  look();
})(element, %(picture)s);"""


def companion_bundle(png: bytes) -> dict[str, Any]:
    """The bundle displayed right after a widget output whose PNG is ``png``: a script showing the PNG in the
    widget's place when the widget cannot be displayed (see the module docstring), and empty text elsewhere."""
    encoded = base64.b64encode(png).decode("ascii")
    picture = (
        f'<div class="nbdiag-saved-view"><div style="color:#666;font-size:85%">{html.escape(CAPTION)}</div>'
        f'<img alt="nbdiag saved view" style="max-width:100%" src="data:image/png;base64,{encoded}"></div>'
    )
    script = _SCRIPT % {"picture": json.dumps(picture), "limit": POLL_LIMIT, "interval": POLL_MS}
    return {"application/javascript": script, "text/plain": ""}


def show_companion(png: bytes) -> Any:
    """Display the companion of the widget output displayed just before; return its display handle (update it with
    :func:`companion_bundle` when the widget's PNG changes)."""
    from IPython.display import display

    return display(companion_bundle(png), raw=True, display_id=True)
