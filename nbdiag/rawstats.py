"""The raw statistics of one tensor as the device computes them: the histogram's fixed bin edges, the
:class:`RawStats` layout and the saturation thresholds. Shared, below both, by :mod:`nbdiag.stats` (the reference
path and the host reading) and the fused kernel :mod:`nbdiag.kernels.triton_stats`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------------------
# Histogram bin edges: symmetric logarithmic ("symlog"), 4 bins per decade for 1e-10 <= |x| < 1e5, one bin for
# |x| < 1e-10 around zero and one open bin at each end. The same edges serve every layer and kind, so histograms
# compare across depth and time (TensorBoard's default buckets are exponential for the same reason).
# ---------------------------------------------------------------------------------------------------------------
HIST_MIN_EXP = -10
HIST_MAX_EXP = 5
HIST_BINS_PER_DECADE = 4


def _symlog_edges() -> np.ndarray:
    magnitudes = 10.0 ** np.linspace(
        HIST_MIN_EXP, HIST_MAX_EXP, (HIST_MAX_EXP - HIST_MIN_EXP) * HIST_BINS_PER_DECADE + 1
    )
    inner = np.concatenate([-magnitudes[::-1], magnitudes])
    return np.concatenate([[-np.inf], inner, [np.inf]]).astype(np.float32)


HIST_EDGES: np.ndarray = _symlog_edges()  # (B + 1,) float32, -inf and +inf at the ends
N_BINS: int = len(HIST_EDGES) - 1  # B = 123: bin i holds HIST_EDGES[i] <= x < HIST_EDGES[i + 1]

# Saturation: an output within 1% of its range's width from a bound where the activation's slope vanishes.
SATURATION_MARGIN = 0.01


class RawStats(NamedTuple):
    """Device-side statistics of one tensor, as cheap to compute as possible; :func:`nbdiag.stats.finalize` reads them.

    ``moments`` (5,) fp32: shift c (the first element), sum(x - c), sum((x - c)^2), min, max. The shift makes
    the variance ``ss/n - (s/n)^2`` free of catastrophic cancellation unless |c - mean| >> std.
    ``counts`` (N_BINS + 2,) int64 over the sample: histogram, then NaN/+Inf, then saturated.
    """

    moments: torch.Tensor
    counts: torch.Tensor
    n: int  # elements
    m: int  # sampled elements


ZERO_BIN = N_BINS // 2  # the bin [-1e-10, 1e-10): "zero"
OVERFLOW = N_BINS  # counts[OVERFLOW]: NaN and +Inf (-Inf lands in bin 0)
SATURATED = N_BINS + 1  # counts[SATURATED]: outputs within the saturation margin of a bound
RAW_COUNTS = N_BINS + 2


def saturation_thresholds(bounds: tuple[float | None, float | None] | None) -> tuple[float | None, float | None]:
    """(x <= low, x >= high) thresholds of the saturated count for ``bounds``; None for an open side."""
    if bounds is None:
        return None, None
    low, high = bounds
    width = (high - low) if (low is not None and high is not None) else abs(high if high is not None else low)
    margin = SATURATION_MARGIN * width
    return (None if low is None else low + margin), (None if high is None else high - margin)
