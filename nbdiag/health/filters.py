"""First-layer filters: they never change, or they are all alike (model.first_layer_filters).

Reads the ``filters`` block (see :mod:`nbdiag.filters`): the first recorded step against the latest.
Source: Karpathy's recipe, 4 (visualize the first layer's weights: noisy filters are not trained); filters that are
copies of one another come from a symmetric (constant) init, which gradient descent never breaks (CS231n training
recipes, weight initialization).
"""

from __future__ import annotations

import numpy as np

from nbdiag.filters import GROUP
from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import MIN_WINDOW_ENTRIES, Window

MIN_STEPS = 50  # judge "never changes" only after this many training steps
UNCHANGED = 1e-7  # relative change ||W_now - W_first|| / ||W_first|| below this: the filters did not move
ALIKE_COSINE = 0.95  # mean |cosine| between distinct filters above this: all alike


def first_layer_filters(window: Window) -> list[Finding]:
    """model.first_layer_filters (warn): a trainable first conv whose filters did not move, or that are all alike
    (mean |cosine| > ``ALIKE_COSINE``) at the first recorded step or now."""
    meta = window.record.meta.filters
    entries = [entry for entry in (*window.baseline, *window.recent) if GROUP in entry.blocks]
    if not meta or len(entries) < MIN_WINDOW_ENTRIES:
        return []
    first, last = entries[0].blocks[GROUP].values, entries[-1].blocks[GROUP].values
    layer, step = meta.layer, entries[-1].step
    if first.shape != last.shape or len(last) < 2:
        return []
    change = float(np.linalg.norm(last - first) / max(np.linalg.norm(first), 1e-30))
    if meta.trainable and step >= MIN_STEPS and change < UNCHANGED:
        message = (
            f"the {len(last)} filters of {layer} (the first conv) have not changed since step {entries[0].step} "
            f"(relative change {change:.2g} by step {step}) although they are trainable: are they in the optimizer, "
            "is the learning rate 0?"
        )
        return [_finding(message, layer, step, {"relative_change": change, "filters": len(last)})]
    alike_now, alike_first = _mean_abs_cosine(last), _mean_abs_cosine(first)
    if max(alike_now, alike_first) > ALIKE_COSINE:
        when = f"at step {step}" if alike_now > ALIKE_COSINE else f"at step {entries[0].step} (a constant init)"
        message = (
            f"the {len(last)} filters of {layer} (the first conv) are all alike {when}: mean |cosine| between "
            f"filters {alike_first:.3f} at step {entries[0].step}, {alike_now:.3f} at step {step}; a constant or "
            "symmetric init makes every filter learn the same thing"
        )
        evidence = {"mean_abs_cosine": alike_now, "mean_abs_cosine_first": alike_first, "filters": len(last)}
        return [_finding(message, layer, step, evidence)]
    return []


def _mean_abs_cosine(filters: np.ndarray) -> float:
    norms = np.linalg.norm(filters, axis=1)
    if (norms == 0).all():
        return 1.0  # all zero: identical
    unit = filters / np.where(norms > 0, norms, 1.0)[:, None]
    cosine = np.abs(unit @ unit.T)
    n = len(filters)
    return float((cosine.sum() - np.trace(cosine)) / (n * (n - 1)))


def _finding(message: str, layer: str, step: int, evidence: dict) -> Finding:
    return make_finding("model.first_layer_filters", "warn", message, layer=layer, step=step, evidence=evidence)
