"""The reading API shared by a live Monitor and a run directory's Run: everything here reads ``self.record``."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbdiag.display import display_backend
from nbdiag.errors import NbdiagWarning
from nbdiag.findings import Finding
from nbdiag.record import Record, StepEntry


class RecordReader:
    """Tables, findings and views over ``self.record``; subclasses provide the record (and ``predictions``)."""

    record: Record
    predictions: Any = None
    _dashboard: Any = None

    def frame(
        self,
        kind: str | None = None,
        layers: Collection[str] | None = None,
        stats: Collection[str] | None = None,
        steps: Collection[int] | None = None,
    ) -> pd.DataFrame:
        """Long table ``step, layer, kind, stat, value`` (kind: activation, gradient, weight, update, model, ...).

        Filter a large record (a deep model, a long run) rather than building all of it: ``kind``, ``layers``,
        ``stats`` and ``steps`` (e.g. ``range(1000, 2000)``) are applied before any row is built
        (:meth:`nbdiag.record.Record.frame`)."""
        return self.record.frame(kind, layers, stats, steps)

    def histograms(self, kind: str = "activation") -> tuple[np.ndarray, pd.DataFrame]:
        """``(edges, counts)``: fixed bin edges (``nbdiag.stats.HIST_EDGES``), counts indexed by (step, layer)."""
        return self.record.histograms(kind)

    def scalars(self) -> pd.DataFrame:
        """Scalars logged with ``step()``, one row per step."""
        return self.record.scalars()

    @property
    def layers(self) -> list[str]:
        """Layers in forward order (as first seen)."""
        return self.record.layers("activation")

    def findings(self) -> list[Finding]:
        """Health findings over the record."""
        from nbdiag.health import evaluate

        return evaluate(self)

    def summary(self) -> pd.DataFrame:
        """Per-layer table at the latest sampled step, in forward order: module type, activation mean/std, zero
        fraction, dead and saturated units (where units can die or saturate), non-finite count, gradient norm.
        ``.attrs["not_recorded"]`` names the reshape-only layers (Flatten, ...) that are not recorded."""
        entries = self.record.entries()
        return summary_table(entries[-1], self.record) if entries else pd.DataFrame()

    def dashboard(
        self,
        *,
        display: Any = None,
        layer: str | None = None,
        step: int | None = None,
        loss_log: bool | None = None,
        norm_log: bool | None = None,
        histograms: str | int | None = None,
    ):
        """The dashboard (one per object: each FigureWidget carries megabytes of JavaScript); display it to see it.

        Args:
            display: its render path: "widget", "inline" or "static" (None: as before, or chosen for this front end;
                see :mod:`nbdiag.environment`).
            layer, step, loss_log, norm_log: what the controls would choose, as arguments (the inline and static
                paths have no controls): the highlighted layer, the sampled step shown (nearest), log scales.
            histograms: for a model of repeated blocks (a transformer), what the histogram panel shows: a role
                (``"attn.qkv"``, that layer in every block) or a block index (every layer of that block).

        Raises:
            ValueError: for a display value, layer, role or block that does not exist (the message lists the valid
                ones).
        """
        try:
            backend = display_backend()
        except ImportError as error:
            raise RuntimeError(
                f"the dashboard needs plotly, ipywidgets and anywidget ({error}); pip install nbdiag's "
                "dependencies, or use .frame(), .summary() or .findings() meanwhile"
            ) from error
        if self._dashboard is None:
            self._dashboard = backend.dashboard(self)
        if display is not None:
            self._dashboard.use(display)
        self._dashboard.select(layer=layer, step=step, loss_log=loss_log, norm_log=norm_log, histograms=histograms)
        return self._dashboard

    def to_html(self, path: str | Path) -> None:
        """Write a self-contained HTML report (plotly JavaScript inline; opens with no network)."""
        display_backend().to_html(self, str(path))

    def savefig(self, path: str | Path) -> None:
        """Write the dashboard's current state as a PNG (matplotlib)."""
        display_backend().savefig(self, str(path))

    def show(self, display: Any = None) -> None:
        """Display the dashboard in a notebook (the text summary elsewhere, or where the view packages are missing).

        A failure of the dashboard itself never propagates (``watch`` calls this): it is logged in ``.errors``
        (source "dashboard"), warned about, and the text summary is printed instead.

        Args:
            display: the render path, as for :meth:`dashboard`.
        """
        try:
            from IPython.display import display as show

            show(self.dashboard(display=display))
        except ImportError:  # no IPython: a script
            print(self)
        except RuntimeError as error:
            if not isinstance(error.__cause__, ImportError):  # a bug, not a missing package
                self._dashboard_failed(error)
            print(self)
        except Exception as error:
            self._dashboard_failed(error)
            print(self)

    def _dashboard_failed(self, error: Exception) -> None:
        report = self.record.errors.add("dashboard", error)
        warnings.warn(
            f"the dashboard failed ({report.message}); showing text instead. .errors holds the traceback: "
            "please report it",
            NbdiagWarning,
            stacklevel=4,
        )


def summary_table(entry: StepEntry, record: Record | None = None) -> pd.DataFrame:
    """Per-layer table of one sampled step, in forward order (see :meth:`RecordReader.summary`); columns that hold
    nothing for any layer (saturation in a net without bounded activations) are left out."""
    act = entry.blocks.get("activation")
    layers = list(act.layers) if act is not None else []
    table = pd.DataFrame(index=pd.Index(layers, name="layer"))
    if record is not None:
        table["type"] = [record.layer_type(layer) or "" for layer in layers]
    if act is not None:
        values = pd.DataFrame(act.values, index=table.index, columns=act.stats)
        table = table.join(values[["mean", "std", "zero_frac", "saturated_frac", "nonfinite"]])
    units = entry.blocks.get("units")
    if units is not None:
        counts = pd.DataFrame(units.values, index=list(units.layers), columns=units.stats)
        table = table.join(counts[["dead_units", "saturated_units", "units"]])
    grad = entry.blocks.get("gradient")
    if grad is not None:
        norms = pd.Series(grad.values[:, grad.stats.index("norm")], index=list(grad.layers), name="grad_norm")
        table = table.join(norms, how="left") if layers else norms.to_frame()
    table = table.dropna(axis=1, how="all")
    table.attrs["step"] = entry.step
    if record is not None:
        table.attrs["not_recorded"] = dict(record.meta.not_recorded)
    return table
