"""The slice of a record that the health rules read: the first sampled steps, the last ones, and the loss ends.

Rules judge the *recent window* (the last ``WINDOW_ENTRIES`` sampled steps) against the *baseline* (the first
``BASELINE_ENTRIES``, i.e. the network at init), so the per-layer part costs the same after 100 steps or 100,000.
The loss comes from ``record.scalar_series("loss")``, bounded by the record's ``scalar_capacity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nbdiag.health.objective import Objective, resolve
from nbdiag.names import module_of
from nbdiag.record import StepEntry

WINDOW_ENTRIES = 10  # the last sampled steps judged: with every=10, about the last 100 training steps
BASELINE_ENTRIES = 5  # the first sampled steps: the network at (or just after) init
MIN_WINDOW_ENTRIES = 3  # "over a window" needs at least this many sampled steps
LOSS_HEAD = 5  # first logged losses: the loss at init
LOSS_TAIL = 20  # last logged losses: where the loss is now (a median over them ignores single noisy batches)


@dataclass(frozen=True)
class Window:
    """What the rules see of one record.

    Attributes:
        record: the record (for ``layer_type``, ``meta`` and ``first_nonfinite``).
        baseline: the first ``BASELINE_ENTRIES`` sampled steps.
        recent: the last ``WINDOW_ENTRIES`` sampled steps, oldest first.
        loss_steps: steps that logged a loss (int64), in order.
        loss: the loss at each of them (float64); NaN/Inf kept.
        objective: what the losses are meant to do (:mod:`nbdiag.health.objective`).
    """

    record: Any
    baseline: tuple[StepEntry, ...]
    recent: tuple[StepEntry, ...]
    loss_steps: np.ndarray
    loss: np.ndarray
    objective: Objective

    @classmethod
    def of(cls, record: Any) -> Window:
        """Read the window of ``record`` (a :class:`nbdiag.record.Record` or anything with its reading API)."""
        entries = record.entries()
        loss_steps, loss = record.scalar_series("loss")  # NaN kept: a NaN loss is the clearest sign of divergence
        objective = resolve(record.meta.objective, record.scalar_names())
        baseline, recent = tuple(entries[:BASELINE_ENTRIES]), tuple(entries[-WINDOW_ENTRIES:])
        return cls(record, baseline, recent, loss_steps, loss, objective)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the scalar ``name`` (empty arrays when it was never logged)."""
        return self.record.scalar_series(name)

    def hidden_layers(self, layers: tuple[str, ...]) -> tuple[str, ...]:
        """``layers`` without the model's outputs, whose scale and confidence are the task's, not a sign of bad init:
        the last one, and when one monitor watches several models (a ``ModuleDict``, as for a GAN's G and D) the
        last registered leaf of each (``D.3``, D's sigmoid)."""
        outputs = {_module_of(layer) for layer in layers[-1:]}
        if self.record.meta.model == "ModuleDict":
            last_of_root: dict[str, str] = {}
            for name in self.record.meta.layer_types:
                last_of_root[name.split(".", 1)[0]] = name
            outputs.update(last_of_root.values())
        return tuple(layer for layer in layers if _module_of(layer) not in outputs)

    def label(self, layer: str) -> str:
        """``'layer 3 · ReLU'``: the layer's name and module type, for messages."""
        kind = self.record.layer_type(layer)
        return f"layer {layer} · {kind}" if kind else f"layer {layer}"


def _module_of(layer: str) -> str:
    """``'lstm/1/0@rank1'`` -> ``'lstm'``: the module a recorded row belongs to."""
    return module_of(layer)


def steps_text(entries: tuple[StepEntry, ...] | list[StepEntry]) -> str:
    """``'steps 10-50'`` (or ``'step 10'``) for the span of ``entries``."""
    first, last = entries[0].step, entries[-1].step
    return f"step {first}" if first == last else f"steps {first}-{last}"


def layers_of(entry: StepEntry, kind: str) -> tuple[str, ...]:
    """The layers (or parameters) of ``kind`` recorded at ``entry``, in forward order."""
    block = entry.blocks.get(kind)
    return () if block is None else block.layers
