"""Gradient rules: norms that vanish or explode across depth or time, and gradients never zeroed between steps.

Depth: the gradient norm of the first layer (in forward order) over that of the last one, both taken at the layer
outputs, median over the recent window. A network that passes its signal through keeps that ratio within an order
of magnitude or two (the zoo's clean MLP/CNN: 0.4-1.3); a ratio past 1e3 either way means the first layers learn
1000x slower or faster than the last. Layers whose gradient is exactly zero are left out: that is a dead layer or a
cut graph, which act.dead_units and the preflight's model.frozen report. Time: the total parameter-gradient norm
of the recent window over that of the first sampled steps; only growth is judged, because gradients legitimately
shrink as the loss falls. Source: seeds/003 (37 reasons) 4.9 "check for exploding or vanishing gradients";
seeds/004 (CS231n lecture 5) weight initialization ("activations go to zero, so do the gradients").
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import MIN_WINDOW_ENTRIES, Window, layers_of, steps_text
from nbdiag.record import stat_matrix

DEPTH_RATIO_WARN = 1e3  # first/last layer gradient norm beyond 1e3 (or below 1e-3): "orders of magnitude"
DEPTH_RATIO_FAIL = 1e6  # beyond 1e6: the far layers effectively do not train
TIME_GROWTH_WARN = 1e3  # total gradient norm grew 1000x since the first sampled steps
MIN_UNZEROED_SPAN = 32  # steps without a gradient reset before it counts: accumulating 32 micro-batches is normal


def across_depth(window: Window) -> list[Finding]:
    """train.vanishing_gradients / train.exploding_gradients: first-to-last layer gradient-norm ratio."""
    if not window.recent:
        return []
    recorded = set(layers_of(window.recent[-1], "gradient"))  # in backward order: sort by the forward order
    layers = tuple(layer for layer in layers_of(window.recent[-1], "activation") if layer in recorded)
    norms = stat_matrix(window.recent, "gradient", "norm", layers)  # (entries, layers)
    pairs = []  # (first/last ratio, first layer, last layer) per sampled step
    for row in norms:
        usable = np.flatnonzero(np.isfinite(row) & (row > 0))
        if len(usable) >= 2:
            pairs.append((row[usable[0]] / row[usable[-1]], layers[usable[0]], layers[usable[-1]]))
    if not pairs:
        return []
    ratio = float(np.median([pair[0] for pair in pairs]))
    if 1 / DEPTH_RATIO_WARN <= ratio <= DEPTH_RATIO_WARN:
        return []
    _, first, last = pairs[-1]
    return [_depth_finding(window, ratio, first, last)]


def _depth_finding(window: Window, ratio: float, first: str, last: str) -> Finding:
    vanishing = ratio < 1
    severity = "fail" if max(ratio, 1 / ratio) >= DEPTH_RATIO_FAIL else "warn"
    verb = "smaller" if vanishing else "larger"
    factor = 1 / ratio if vanishing else ratio
    return make_finding(
        "train.vanishing_gradients" if vanishing else "train.exploding_gradients",
        severity,
        f"{window.label(first)}: its output gradient is {factor:.2g}x {verb} than at {window.label(last)} "
        f"(median over {steps_text(window.recent)})",
        layer=first,
        step=window.recent[-1].step,
        evidence={"first_to_last_ratio": ratio, "first_layer": first, "last_layer": last},
    )


def over_time(window: Window) -> list[Finding]:
    """train.exploding_gradients (model-wide): the total gradient norm grew ``TIME_GROWTH_WARN``x since the start."""
    if not window.baseline or window.recent[0].step <= window.baseline[-1].step:
        return []
    start, now = total_grad_norm(window.baseline), total_grad_norm(window.recent)
    if not (np.isfinite(start) and np.isfinite(now) and start > 0) or now < TIME_GROWTH_WARN * start:
        return []
    return [
        make_finding(
            "train.exploding_gradients",
            "warn",
            f"the total gradient norm grew {now / start:.2g}x, from {start:.3g} ({steps_text(window.baseline)}) "
            f"to {now:.3g} ({steps_text(window.recent)})",
            step=window.recent[-1].step,
            evidence={"start_grad_norm": start, "recent_grad_norm": now, "growth": now / start},
        )
    ]


def total_grad_norm(entries: tuple) -> float:
    """Median over ``entries`` of sqrt(sum of squared parameter-gradient norms); NaN if none is finite."""
    totals = []
    for entry in entries:
        norms = stat_matrix((entry,), "weight", "grad_norm", layers_of(entry, "weight"))[0]
        norms = norms[np.isfinite(norms)]
        if len(norms):
            totals.append(float(np.sqrt(np.sum(norms**2))))
    return float(np.median(totals)) if totals else float("nan")


def accumulation(window: Window) -> list[Finding]:
    """train.grad_accumulation: gradients never reset over the recent window.

    Fires when, at every sampled step of the window (after step 0), gradients were already there at the step's
    first gradient accumulation (stale), none of them was released or replaced since the previous sampled step
    (``grad_carried``: the very same gradient tensors, followed by weak reference), and the window spans at least
    ``MIN_UNZEROED_SPAN`` steps. Deliberate accumulation over k micro-batches with ``mon.step()`` per micro-batch
    resets the gradients every k steps: ``zero_grad()`` (set_to_none, the default) releases them, so some sampled
    step sees new tensors, whatever k and the sampling cadence; a clean sampled step (no stale gradient) clears it
    too. With ``zero_grad(set_to_none=False)`` the tensors are zeroed in place and only a clean sampled step tells
    (a known gap: accumulating more micro-batches than ``every`` that way can still read as never zeroed).
    A forgotten ``zero_grad()`` leaves every step stale and carried. The span keeps a run that has not reached its
    first reset yet (accumulating 32 micro-batches: none before step 32) from looking like one that never resets.
    """
    exact = _stepped_then_stale(window)
    if exact is not None:
        return [exact]
    entries = [e for e in window.recent if e.step > 0]  # step 0 has no earlier step to leak from
    if len(entries) < MIN_WINDOW_ENTRIES or entries[-1].step - entries[0].step < MIN_UNZEROED_SPAN:
        return []
    stale = stat_matrix(tuple(entries), "model", "stale_grad_norm", ("(model)",))[:, 0]
    carried = stat_matrix(tuple(entries), "model", "grad_carried", ("(model)",))[:, 0]
    if not (np.nan_to_num(stale, nan=0.0) > 0).all() or (carried == 0).any():
        return []
    return [
        make_finding(
            "train.grad_accumulation",
            "warn",
            f"gradients from earlier steps were still there at the first backward of every sampled step in "
            f"{steps_text(entries)}, never reset in between (stale gradient norm {stale[-1]:.3g} at step "
            f"{entries[-1].step}): optimizer.zero_grad() seems to be missing",
            step=entries[-1].step,
            evidence={"stale_grad_norm": float(stale[-1]), "sampled_steps": len(entries)},
        )
    ]


def _stepped_then_stale(window: Window) -> Finding | None:
    """train.grad_accumulation, exactly (issue 19, class 2): at consecutive sampled steps s, s + 1 the optimizer
    stepped at s (an ``update`` block) and at s + 1 the very same gradient tensors were still held, non-zero, at the
    first backward (``grad_carried`` 1, ``stale_grad_norm`` > 0): gradients survived an optimizer step. Deliberate
    accumulation clears them right after each step, so this needs no span; ``MIN_WINDOW_ENTRIES`` such pairs, and
    none where the optimizer stepped and the gradients were then cleared."""
    entries = sorted({e.step: e for e in (*window.baseline, *window.recent)}.items())
    leaked, cleared, last = 0, 0, None
    for (step, entry), (next_step, following) in zip(entries, entries[1:], strict=False):
        if next_step != step + 1 or "update" not in entry.blocks or "model" not in following.blocks:
            continue
        stale, carried = (
            stat_matrix((following,), "model", "stale_grad_norm", ("(model)",))[0, 0],
            float(stat_matrix((following,), "model", "grad_carried", ("(model)",))[0, 0]),
        )
        if stale > 0 and carried == 1:
            leaked, last = leaked + 1, (next_step, stale)
        elif stale == 0 or carried == 0:
            cleared += 1
    if leaked < MIN_WINDOW_ENTRIES or cleared:
        return None
    step, stale = last
    return make_finding(
        "train.grad_accumulation",
        "warn",
        f"at {leaked} sampled steps the optimizer had stepped at the step before and the very same gradients (norm "
        f"{stale:.3g} at step {step}) were still held at the next backward: nothing cleared them after "
        "optimizer.step(); optimizer.zero_grad() is missing",
        step=int(step),
        evidence={"stale_grad_norm": float(stale), "steps_leaked": leaked},
    )


def cleared_before_step(window: Window) -> list[Finding]:
    """train.grad_cleared_before_step (warn): ``zero_grad()`` placed between ``backward()`` and ``step()``.

    Exact, not a trend (issue 19, class 2): at every sampled step of the recent window (at least
    ``MIN_WINDOW_ENTRIES``), backward reached the layers (output gradients recorded, some > 0), yet when the
    optimizer stepped no parameter held a gradient (``grad_norm`` NaN: set to None, or 0: zeroed in place) and no
    parameter moved (every update exactly 0). A learning rate of 0 moves nothing either, but its parameters hold
    their gradients at the step.
    """
    entries = tuple(e for e in window.recent if "update" in e.blocks and "gradient" in e.blocks)
    if len(entries) < MIN_WINDOW_ENTRIES:
        return []
    names = layers_of(entries[-1], "update")
    updates = stat_matrix(entries, "update", "update_norm", names)
    held = stat_matrix(entries, "weight", "grad_norm", names)
    outputs = [stat_matrix((e,), "gradient", "norm", layers_of(e, "gradient"))[0] for e in entries]
    backward = all(np.nanmax(row, initial=0.0) > 0 for row in outputs)
    if not names or not backward or not (updates == 0).all() or (np.nan_to_num(held, nan=0.0) > 0).any():
        return []
    return [
        make_finding(
            "train.grad_cleared_before_step",
            "warn",
            f"at every sampled step of {steps_text(entries)} backward() reached the layers, but no parameter held a "
            f"gradient when the optimizer stepped and none of the {len(names)} parameters moved: the gradients are "
            "cleared between backward() and step()",
            step=entries[-1].step,
            evidence={"sampled_steps": len(entries), "parameters": len(names)},
        )
    ]
