"""The dashboard where no widget manager runs (VS Code, Colab, any front end): one output, updated in place.

Each refresh replaces the output of one ``display(..., display_id=True)`` with a ``text/html`` page that draws
plotly's figure JSON with plotly.js, and ``text/plain``. plotly.js comes from the installed plotly package,
inline in the output's first message (never from a CDN, which an offline machine cannot reach); later messages
reuse the page's ``window.Plotly`` (Colab: the output's own frame). The PNG (matplotlib, ~2 s) is added only when
training has gone quiet and at close: inside the page, shown where plotly.js is not loaded (a saved notebook
reopened, nbconvert), and as ``image/png``. The owner's Renderer calls for an update at most ``MAX_HZ`` times a
second (latest state wins). Controls that need a kernel round trip become arguments:
``mon.dashboard(layer=..., step=...)``, said above the figure.

Why not plotly's own mimetype, ``application/vnd.plotly.v1+json``: JupyterLab and Notebook 7 reuse an output's
renderer on ``update_display``, and plotly's renderer (jupyterlab-plotly 7.1, ``renderModel``) returns at once
when it has drawn a graph, and shows ``image/png`` instead of the figure when a bundle has both. The figure froze
at its first state there.
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

MAX_HZ = 2.0  # updates per second at most
# Bytes per second at most, on average, so a remote browser (Colab, Binder, an SSH tunnel) keeps up; the Jupyter
# server itself limits only stream output (iopub_data_rate_limit). A large update waits longer before the next.
MAX_BYTES_PER_S = 200_000
HINT = "no widgets here: choose what is shown with mon.dashboard(layer=..., step=..., loss_log=..., norm_log=...)"
DIGITS = 4  # significant digits sent: the hover labels show 3
# plotly.js evaluated once per page, with an AMD loader hidden (else plotly.js registers with it, not as a global).
_LOAD = "if(!window.Plotly){(function(){var define;\nPLOTLY_JS\n}).call(window);}"
# Draws the figure once plotly.js is there; the PNG inside the div stays where it never is.
_DRAW = (
    "(function(){var div=document.getElementById(DIV_ID),figure=FIGURE,tries=0;"
    "function draw(){if(window.Plotly){div.innerHTML='';window.Plotly.react(div,figure.data,figure.layout,"
    "{responsive:true});}else if(tries++<100){setTimeout(draw,100);}}draw();})();"
)


class InlineView:
    """One output of a dashboard, updated through its display handle."""

    def __init__(self) -> None:
        self.figure: JsonFigure | None = None
        self.handle: Any = None
        self.updates = 0  # messages sent through the handle (the first display included)
        self.last_bytes = 0  # JSON size of the last bundle sent (without plotly.js, sent once)
        self._div = f"nbdiag-{uuid.uuid4().hex[:12]}"
        self._plotly_js_sent = False
        self._plotly_js_bytes = 0  # in the bundle being sent

    def bundle(
        self, panels: list[Panel], heading: str, text: str, table: str = "", png: bytes | None = None
    ) -> dict[str, Any]:
        """The mime bundle of one dashboard state.

        Args:
            panels: what to draw.
            heading: the line above the figure (model, step, findings count).
            text: the text/plain summary.
            table: HTML shown under the figure (the findings).
            png: the static figure, when it is worth drawing (quiet or closed); None while training.
        """
        return self.page([self.figure_json(panels)], heading, text, table, png)

    def page(
        self,
        figures: list[dict[str, Any]],
        heading: str,
        text: str,
        table: str = "",
        png: bytes | None = None,
        hint: str = HINT,
    ) -> dict[str, Any]:
        """The mime bundle of plotly figures (``{data, layout}`` JSON) drawn by plotly.js: the dashboard's, or a
        lab's. ``hint`` says where the controls went (arguments)."""
        page = self._html(figures, heading, png, hint) + table
        bundle: dict[str, Any] = {"text/html": page, "text/plain": f"{text}\n\n({hint})"}
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

    def figure_json(self, panels: list[Panel]) -> dict[str, Any]:
        """Plotly's figure JSON (``data``, ``layout``): plain lists, no plotly validation per refresh."""
        if self.figure is None or not self.figure.fits(panels):
            self.figure = JsonFigure(panels, widget=False, digits=DIGITS)
        else:
            self.figure.update(panels)
        return json.loads(json.dumps(self.figure.figure.as_dict(), default=_number))  # an independent copy

    def _html(self, figures: list[dict[str, Any]], heading: str, png: bytes | None, hint: str) -> str:
        """The heading and hint, then one div per figure drawn by plotly.js (inline in the first message of this
        output); the PNG sits in the first div until plotly.js replaces it."""
        load = ""
        if not self._plotly_js_sent:
            from plotly.offline import get_plotlyjs

            load = f'<script type="text/javascript">{_LOAD.replace("PLOTLY_JS", get_plotlyjs())}</script>'
            self._plotly_js_sent = True
            self._plotly_js_bytes = len(load.encode())
        image = ""
        if png is not None:
            encoded = base64.b64encode(png).decode()
            image = f'<img alt="nbdiag dashboard" style="max-width:100%" src="data:image/png;base64,{encoded}">'
        parts = [
            f'{load}<div class="nbdiag-inline"><div><b>{html.escape(heading)}</b></div>',
            f'<div style="color:#666;font-size:90%">{html.escape(hint)}</div>',
        ]
        scripts = []
        if not figures:
            parts.append(image)
        for i, figure in enumerate(figures):
            div = self._div if i == 0 else f"{self._div}-{i}"
            height = figure["layout"].get("height", 0)
            inner = image if i == 0 else ""
            parts.append(f'<div id="{div}" style="width:100%;min-height:{height}px">{inner}</div>')
            data = json.dumps(figure, default=_number).replace("</", "<\\/")
            scripts.append(_DRAW.replace("DIV_ID", json.dumps(div)).replace("FIGURE", data))
        return "".join(parts) + "</div>" + "".join(f"<script>{script}</script>" for script in scripts)


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

    def _make(self, traces: list[dict], layout: dict) -> PlainFigure:
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
