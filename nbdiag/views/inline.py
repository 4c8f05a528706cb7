"""The dashboard where no widget manager runs (VS Code, Colab, any front end): one output, updated in place.

Each refresh replaces the output of one ``display(..., display_id=True)`` with a bundle of
``application/vnd.plotly.v1+json`` (plotly's figure JSON: JupyterLab, Notebook 7, VS Code and nteract draw it
natively), ``text/html`` on Colab (which does not: plotly.js goes inline in the first message of each output,
from the installed plotly package, never from a CDN; later messages reuse it), and ``text/plain``. The PNG
(matplotlib, ~0.5 s) is drawn only when training has gone quiet and at close, so a saved notebook shows the
final state everywhere. The owner's Renderer calls :meth:`InlineView.update` at most ``MAX_HZ`` times a second,
latest state wins. Controls that need a kernel round trip become arguments: ``mon.dashboard(layer=..., step=...)``.
"""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
from typing import Any

from nbdiag.views.figure import PanelFigure
from nbdiag.views.panels import Panel

PLOTLY_MIME = "application/vnd.plotly.v1+json"
MAX_HZ = 2.0  # updates per second at most
# Bytes per second at most, on average: a fifth of the Jupyter server's iopub_data_rate_limit (1 MB/s), past
# which it drops output messages. A large update waits longer before the next.
MAX_BYTES_PER_S = 200_000
HINT = "no widgets here: choose what is shown with mon.dashboard(layer=..., step=..., loss_log=..., norm_log=...)"
TOP_MARGIN = 110  # px above the grid for the title lines
DIGITS = 4  # significant digits sent: the hover labels show 3
# Draws the figure once plotly.js has loaded (the first message of the output carries it, inline).
_DRAW = (
    "(function(){var div=document.getElementById(DIV_ID),figure=FIGURE,tries=0;"
    "function draw(){if(window.Plotly){div.innerHTML='';Plotly.react(div,figure.data,figure.layout,"
    "{responsive:true});}else if(tries++<100){setTimeout(draw,100);}}draw();})();"
)


class InlineView:
    """One output of a dashboard, updated through its display handle.

    Args:
        html_figure: also carry ``text/html`` that draws the figure with plotly.js (Colab).
    """

    def __init__(self, html_figure: bool = False) -> None:
        self.html_figure = html_figure
        self.figure: JsonFigure | None = None
        self.handle: Any = None
        self.updates = 0  # messages sent through the handle (the first display included)
        self.last_bytes = 0  # JSON size of the last bundle sent (without plotly.js, sent once)
        self._div = f"nbdiag-{uuid.uuid4().hex[:12]}"
        self._plotly_js_sent = False
        self._plotly_js_bytes = 0  # in the bundle being sent

    def bundle(self, panels: list[Panel], heading: str, text: str, png: bytes | None = None) -> dict[str, Any]:
        """The mime bundle of one state.

        Args:
            panels: what to draw.
            heading: the first title line (model, step, findings count).
            text: the text/plain summary.
            png: the static figure, when it is worth drawing (quiet or closed); None while training.
        """
        figure = self._figure_json(panels, heading)
        bundle: dict[str, Any] = {PLOTLY_MIME: figure, "text/plain": f"{text}\n\n({HINT})"}
        if self.html_figure:
            bundle["text/html"] = self._html(figure, png)
        if png is not None:
            bundle["image/png"] = png
        return bundle

    def show(self, bundle: dict[str, Any]) -> None:
        """Display ``bundle`` as a new output; later updates replace it."""
        from IPython.display import display

        self.handle = display(bundle, raw=True, display_id=True)
        self._count(bundle)

    def update(self, bundle: dict[str, Any]) -> None:
        """Replace the output's content (no-op before :meth:`show`)."""
        if self.handle is None:
            return
        self.handle.update(bundle, raw=True)
        self._count(bundle)

    def min_interval(self) -> float:
        """Seconds the next update must wait: at most ``MAX_HZ`` updates and ``MAX_BYTES_PER_S`` bytes a second."""
        return max(1.0 / MAX_HZ, self.last_bytes / MAX_BYTES_PER_S)

    def _count(self, bundle: dict[str, Any]) -> None:
        self.updates += 1
        self.last_bytes = bundle_bytes(bundle) - self._plotly_js_bytes
        self._plotly_js_bytes = 0

    def _figure_json(self, panels: list[Panel], heading: str) -> dict[str, Any]:
        """Plotly's figure JSON (plain lists; only the properties that changed are validated again)."""
        if self.figure is None:
            self.figure = JsonFigure(panels, widget=False, digits=DIGITS)
        else:
            self.figure.update(panels)
        figure = json.loads(json.dumps(self.figure.figure.as_dict(), default=_number))  # an independent copy
        layout = figure["layout"]
        layout["title"] = {"text": f"{html.escape(heading)}<br><sup>{html.escape(HINT)}</sup>", "x": 0.01}
        layout["margin"] = {**layout.get("margin", {}), "t": TOP_MARGIN}
        layout["height"] = layout.get("height", 0) + TOP_MARGIN
        return figure

    def _html(self, figure: dict[str, Any], png: bytes | None) -> str:
        """A div drawn by plotly.js (inline in the first message of this output); with a PNG inside it, so a
        saved notebook reopened where plotly.js is not loaded still shows the last state."""
        prefix = ""
        if not self._plotly_js_sent:
            from plotly.offline import get_plotlyjs

            prefix = f'<script type="text/javascript">{get_plotlyjs()}</script>'
            self._plotly_js_sent = True
            self._plotly_js_bytes = len(prefix.encode())
        image = ""
        if png is not None:
            image = f'<img alt="nbdiag dashboard" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        data = json.dumps(figure).replace("</", "<\\/")
        script = _DRAW.replace("DIV_ID", json.dumps(self._div)).replace("FIGURE", data)
        return f'{prefix}<div id="{self._div}" style="width:100%">{image}</div><script>{script}</script>'


def bundle_bytes(bundle: dict[str, Any]) -> int:
    """The size of ``bundle`` as JSON in a display message (binary values as base64, as Jupyter sends them)."""
    size = 0
    for value in bundle.values():
        if isinstance(value, bytes):
            size += 4 * ((len(value) + 2) // 3)
        elif isinstance(value, str):
            size += len(value.encode())
        else:
            size += len(json.dumps(value).encode())
    return size


class JsonFigure(PanelFigure):
    """The dashboard's figure as plain JSON data: the same slots and updates, without plotly's validation of
    every value (which costs more than the numbers themselves)."""

    def _make(self, traces: list[dict], layout: dict, widget: bool) -> PlainFigure:
        return PlainFigure(traces, layout)


class PlainFigure:
    """Just what :class:`PanelFigure` calls on a plotly figure (``data[i].update``, ``layout[path] =``,
    ``add_trace``), on dicts."""

    def __init__(self, traces: list[dict], layout: dict) -> None:
        import plotly.io as pio

        template = layout.get("template")
        if isinstance(template, str):  # plotly.js knows no template names: send the template itself
            layout = {**layout, "template": pio.templates[template].to_plotly_json()}
        self.layout = _Nested(json.loads(json.dumps(layout, default=_number)))
        self.data: list[_Nested] = []
        for trace in traces:
            self.add_trace(trace)

    def add_trace(self, trace: dict) -> None:
        self.data.append(_Nested({key: value for key, value in trace.items() if value is not None}))

    def as_dict(self) -> dict[str, Any]:
        return {"data": [trace.value for trace in self.data], "layout": self.layout.value}


class _Nested:
    """A dict written with plotly's property paths: ``"line.color"``, ``"annotations[3].text"``."""

    def __init__(self, value: dict) -> None:
        self.value = value

    def update(self, values: dict[str, Any]) -> None:
        for path, value in values.items():
            self[path] = value

    def __setitem__(self, path: str, value: Any) -> None:
        keys: list[str | int] = [int(k) if k.isdigit() else k for k in _PATH_PART.findall(path)]
        target: Any = self.value
        for key, after in zip(keys[:-1], keys[1:], strict=True):
            if isinstance(key, int):
                target = target[key]
            else:
                target = target.setdefault(key, [] if isinstance(after, int) else {})
        if value is None and isinstance(target, dict):
            target.pop(keys[-1], None)  # plotly's "unset"
        else:
            target[keys[-1]] = value


_PATH_PART = re.compile(r"[^.\[\]]+")


def _number(value: Any) -> Any:
    """numpy scalars as Python numbers (JSON)."""
    return value.item() if hasattr(value, "item") else str(value)
