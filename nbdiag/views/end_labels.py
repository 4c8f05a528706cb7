"""Names written at the right end of lines, in place of a legend.

A legend of one entry per role (seven on a GPT) covered the right end of the lines it named, inside the plot, and
there is no room for it beside a subplot. Written at the lines' ends instead, in room added right of the data, each
name sits by its line; names whose lines end close together are moved apart vertically so none overlaps another.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nbdiag.views.panels import Series

LABEL_ROOM = 0.35  # x room right of the data for the labels, as a share of the data's x span (~90 px of ~360)
LABEL_PAD = 0.03  # between the data's right end (a marker, the selected-step line) and the labels' left edge
LABEL_GAP = 0.1  # least vertical distance between two labels, as a share of the y span (a 12-px line in ~160 px)


def with_room(low: float, high: float) -> tuple[float, float]:
    """The x range ``(low, high)`` widened on the right for the labels."""
    return low, high + LABEL_ROOM * max(high - low, 1.0)


def label_x(low: float, high: float) -> float:
    """Where the labels start, for data spanning ``(low, high)`` in x: just right of it."""
    return high + LABEL_PAD * max(high - low, 1.0)


def last_finite(values: np.ndarray) -> float:
    """The last finite value of a line (NaN when it has none): where its label goes."""
    finite = np.flatnonzero(np.isfinite(values))
    return float(values[finite[-1]]) if finite.size else float("nan")


def spread(values: np.ndarray, gap: float, low: float, high: float) -> np.ndarray:
    """``values`` moved apart, in order, to at least ``gap`` from each other, kept within ``[low, high]`` where
    they fit, each moved as little as a forward then a backward pass allow."""
    order = np.argsort(values, kind="stable")
    placed = np.array(values, dtype=np.float64)[order]
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    if len(placed):
        placed[-1] = min(placed[-1], max(high, low + gap * (len(placed) - 1)))
    for i in range(len(placed) - 2, -1, -1):
        placed[i] = min(placed[i], placed[i + 1] - gap)
    out = np.empty_like(placed)
    out[order] = placed
    return out


def end_labels(
    lines: list[tuple[str, np.ndarray, str]],
    x_data: tuple[float, float],
    log: bool,
    yrange: tuple[float, float] | None = None,
    values: Any = None,
) -> tuple[Series, ...]:
    """One "labels" series naming each line right of the data, at its last finite value.

    Args:
        lines: ``(text, y values, colour)`` per line; lines with no finite value get no label.
        x_data: the x range of the data (see :func:`with_room`); the labels start just right of it.
        log: whether the y axis is logarithmic (labels are spaced in decades then).
        yrange: the y axis range when fixed; else the range of ``values`` (all values drawn in the panel).
        values: every y value drawn in the panel (arrays), which sets the y span an autoranged axis shows.
    """
    kept = [(text, last_finite(y), colour) for text, y, colour in lines]
    kept = [(text, y, colour) for text, y, colour in kept if np.isfinite(y) and (y > 0 or not log)]
    if not kept:
        return ()
    ends = np.array([y for _, y, _ in kept])
    to_axis = np.log10 if log else (lambda v: v)
    if yrange is not None and not log:
        low, high = yrange
    else:
        pooled = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in (values or [])] + [ends])
        pooled = pooled[np.isfinite(pooled) & ((pooled > 0) if log else True)]
        low, high = float(to_axis(pooled.min())), float(to_axis(pooled.max()))
    gap = LABEL_GAP * ((high - low) or 1.0)
    placed = spread(to_axis(ends), gap, low, high)
    y = 10.0**placed if log else placed
    return (
        Series(
            "line names",
            "labels",
            x=np.full(len(kept), label_x(*x_data)),
            y=y,
            text=[text for text, _, _ in kept],
            color=[colour for _, _, colour in kept],
        ),
    )
