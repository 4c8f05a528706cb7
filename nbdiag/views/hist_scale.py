"""The x axis of a recorded histogram, chosen from the data: linear where the lecture draws it, symlog only when the
values span many decades.

The record keeps every histogram on the fixed symlog bins ``HIST_EDGES`` (4 per decade, so histograms compare across
layers and time). A student learns to read collapse (a spike at 0) and saturation (piles at +-1) on a linear axis
(seeds/004, CS231n lecture 5), and on a symlog axis an ordinary Gaussian looks like two humps at +-1e-2 with a gap
at zero. So: when the non-zero magnitudes span under ``LINEAR_MAX_DECADES`` decades (between their
``LOW_QUANTILE`` and ``HIGH_QUANTILE``), the counts are rebinned onto ``LINEAR_BINS`` equal-width bins over the
occupied range; otherwise the symlog bins stay, labelled "symlog". The rebinning is honest about what the record
knows: each symlog bin's count is spread over the linear bins it overlaps in proportion to the overlap (a uniform
density inside a recorded bin, the reading any histogram asks for), exact zeros (the bin around 0) land in the
linear bin holding 0, and the open end bins in the end bins. Every count is kept: the rebinned counts sum to the
recorded ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nbdiag.stats import HIST_EDGES

LINEAR_MAX_DECADES = 2.0  # "under about two decades": a Gaussian's 10%-99% |x| span is ~1.3 decades
LOW_QUANTILE, HIGH_QUANTILE = 0.10, 0.99  # of the non-zero magnitudes: robust to a few outliers either way
LINEAR_BINS = 30  # equal bins over [min(low, 0), max(high, 0)]
_INNER = HIST_EDGES[1:-1].astype(np.float64)  # finite edges; bin i spans HIST_EDGES[i], HIST_EDGES[i + 1]
_ZERO_BIN = int(np.searchsorted(_INNER, 0.0))  # the bin [-1e-10, 1e-10): "zero"
_ENDS = np.abs(np.stack([np.concatenate([_INNER[:1], _INNER]), np.concatenate([_INNER, _INNER[-1:]])]))
_MAGNITUDE = np.sqrt(_ENDS[0] * _ENDS[1])  # a bin's typical |value|: the geometric mean of its ends


@dataclass(frozen=True)
class HistogramAxis:
    """How to draw histograms over ``HIST_EDGES``: ``scale`` "linear" or "symlog", the ``label`` of the axis, and
    for "linear" the bin ``edges`` (value units) that :meth:`counts` rebins onto, within the values' ``span``."""

    scale: str
    label: str
    edges: np.ndarray | None = None
    span: tuple[float, float] | None = None

    def counts(self, counts: np.ndarray) -> np.ndarray:
        """``counts`` (..., B) over ``HIST_EDGES`` on this axis: rebinned when linear, unchanged when symlog."""
        return counts if self.edges is None else rebin_linear(counts, self.edges, self.span)

    @property
    def centres(self) -> np.ndarray | None:
        """Centres of the linear bins (value units); None for symlog."""
        return None if self.edges is None else 0.5 * (self.edges[:-1] + self.edges[1:])


def magnitude_span(counts: np.ndarray) -> float:
    """Decades between the ``LOW_QUANTILE`` and ``HIGH_QUANTILE`` of the non-zero |values| in (..., B) ``counts``
    (all histograms pooled); 0.0 when there is nothing but zeros."""
    pooled = _pooled(counts)
    pooled[_ZERO_BIN] = 0.0
    total = pooled.sum()
    if total <= 0:
        return 0.0
    order = np.argsort(_MAGNITUDE, kind="stable")
    cumulative = np.cumsum(pooled[order]) / total
    low = _MAGNITUDE[order][np.searchsorted(cumulative, LOW_QUANTILE)]
    high = _MAGNITUDE[order][min(np.searchsorted(cumulative, HIGH_QUANTILE), len(order) - 1)]
    return float(np.log10(high / low))


def choose_axis(counts: np.ndarray, low: float | None = None, high: float | None = None) -> HistogramAxis:
    """The axis for histograms ``counts`` (..., B) over ``HIST_EDGES`` drawn together (one panel's layers or
    steps): linear when their non-zero magnitudes span under ``LINEAR_MAX_DECADES`` decades, else symlog.

    ``low``/``high``: the smallest and largest value of the tensors (the recorded ``min``/``max``; the histogram is
    of a sample inside them): the linear axis spans [min(low, 0), max(high, 0)], and no count is spread past them.
    Without them, the occupied bins' outer edges.
    """
    if magnitude_span(counts) >= LINEAR_MAX_DECADES:
        return HistogramAxis("symlog", "value (symlog axis)")
    occupied = np.flatnonzero(_pooled(counts) > 0)
    if not len(occupied):
        low, high = -1.0, 1.0
    if low is None or not np.isfinite(low):
        low = float(HIST_EDGES[max(occupied[0], 1)])
    if high is None or not np.isfinite(high):
        high = float(HIST_EDGES[min(occupied[-1] + 1, len(HIST_EDGES) - 2)])
    start, stop = min(low, 0.0), max(high, 0.0)
    if not stop > start:
        start, stop = start - 1.0, stop + 1.0
    return HistogramAxis("linear", "value", np.linspace(start, stop, LINEAR_BINS + 1), (low, high))


def rebin_linear(counts: np.ndarray, edges: np.ndarray, span: tuple[float, float] | None = None) -> np.ndarray:
    """Counts (..., B) over ``HIST_EDGES`` rebinned onto linear ``edges`` (n + 1,): (..., n). Each recorded bin,
    cut to ``span`` (the values' min and max) and to the edges, spreads its count over the new bins in proportion
    to their overlap; a bin cut to a single value (exact zeros, values at the max) puts it in the bin holding it,
    and so does a bin with an edge exactly at the min or max (a saturated tanh's +-1: the values pile at the bound;
    a Gaussian's min or max never falls on a bin edge)."""
    return np.asarray(counts, dtype=np.float64) @ _overlap_matrix(edges, span)


def _pooled(counts: np.ndarray) -> np.ndarray:
    return np.asarray(counts, dtype=np.float64).reshape(-1, counts.shape[-1]).sum(axis=0)


def _overlap_matrix(edges: np.ndarray, span: tuple[float, float] | None) -> np.ndarray:
    first, last = (edges[0], edges[-1]) if span is None else (max(edges[0], span[0]), min(edges[-1], span[1]))
    low = np.concatenate([[-np.inf], _INNER]).clip(first, last)  # (B,) each recorded bin, cut to what is possible
    high = np.concatenate([_INNER, [np.inf]]).clip(first, last)
    overlap = np.clip(np.minimum(high[:, None], edges[None, 1:]) - np.maximum(low[:, None], edges[None, :-1]), 0, None)
    if span is not None:  # a bin with an edge exactly at the min or max (a saturated tanh's +-1) piles there
        at_min = (np.concatenate([[-np.inf], _INNER]) == span[0]) & (low < high)
        at_max = (np.concatenate([_INNER, [np.inf]]) == span[1]) & (low < high)
        high[at_min], low[at_max] = low[at_min], high[at_max]
    width = high - low
    weights = np.zeros((len(low), len(edges) - 1))
    spread = width > 0
    weights[spread] = overlap[spread] / width[spread, None]
    at = np.clip(np.searchsorted(edges, low[~spread], side="right") - 1, 0, len(edges) - 2)
    weights[np.flatnonzero(~spread), at] = 1.0
    return weights
