"""The histogram axis rule: linear where the lecture draws it, symlog only for values spanning many decades; the
linear rebinning of the recorded symlog counts against numpy's histogram of the same values."""

from __future__ import annotations

import numpy as np
import pytest

from nbdiag.stats import HIST_EDGES
from nbdiag.views.hist_scale import LINEAR_MAX_DECADES, choose_axis, magnitude_span, rebin_linear

RNG = np.random.default_rng(0)


def recorded(values: np.ndarray) -> np.ndarray:
    """The record's counts: values on the fixed symlog bins (bin i holds HIST_EDGES[i] <= x < HIST_EDGES[i + 1])."""
    return np.histogram(values.astype(np.float32), HIST_EDGES.astype(np.float64))[0]


def axis_of(values: np.ndarray):
    return choose_axis(recorded(values), float(values.min()), float(values.max()))


@pytest.mark.parametrize(
    "values",
    [
        RNG.normal(0, 0.93, 50_000),  # the Linear output: two humps at +-1e-2 on a symlog axis
        np.maximum(RNG.normal(0, 1, 50_000), 0),  # ReLU: half exactly zero
        np.tanh(RNG.normal(0, 22, 50_000)),  # saturated tanh
        RNG.normal(0, 1e-5, 50_000),  # collapsed: small, but not spread over decades
    ],
    ids=["gaussian", "relu", "saturated_tanh", "collapsed"],
)
def test_values_within_two_decades_get_a_linear_axis(values):
    axis = axis_of(values)
    assert axis.scale == "linear" and axis.label == "value"
    assert axis.edges[0] <= min(values.min(), 0) and axis.edges[-1] >= max(values.max(), 0)


@pytest.mark.parametrize(
    "values",
    [
        RNG.standard_cauchy(50_000) * 1e-3,  # heavy-tailed gradients
        np.concatenate([RNG.normal(0, 1e-4, 25_000), RNG.normal(0, 1, 25_000)]),  # two scales in one panel
    ],
    ids=["heavy_tail", "two_scales"],
)
def test_values_spanning_many_decades_keep_the_labelled_symlog_axis(values):
    axis = axis_of(values)
    assert magnitude_span(recorded(values)) >= LINEAR_MAX_DECADES
    assert axis.scale == "symlog" and "symlog" in axis.label
    np.testing.assert_array_equal(axis.counts(recorded(values)), recorded(values))


def test_the_rebinned_gaussian_matches_numpys_linear_histogram():
    values = RNG.normal(0.2, 0.93, 200_000)
    axis = axis_of(values)
    rebinned = axis.counts(recorded(values))
    exact = np.histogram(values, axis.edges)[0]
    assert rebinned.sum() == pytest.approx(len(values))
    # 4 recorded bins per decade: the spread inside each one is a uniform guess; it stays within a few % overall.
    assert np.abs(rebinned - exact).sum() / len(values) < 0.12
    assert axis.centres[np.argmax(rebinned)] == pytest.approx(0.2, abs=0.6)


def test_zeros_and_saturation_pile_where_they_are():
    relu = np.maximum(RNG.normal(0, 1, 100_000), 0)
    axis = axis_of(relu)
    rebinned = axis.counts(recorded(relu))
    zero_bin = np.searchsorted(axis.edges, 0.0, side="right") - 1
    assert rebinned[zero_bin] >= np.sum(relu == 0)  # every exact zero in the bin holding 0 (the collapse spike)
    tanh = np.tanh(RNG.normal(0, 22, 100_000)).astype(np.float32)
    axis = choose_axis(recorded(tanh), float(tanh.min()), float(tanh.max()))
    ends = axis.counts(recorded(tanh))[[0, -1]]
    assert ends[0] == pytest.approx(np.sum(tanh <= -0.5623), rel=1e-6)  # the lecture's spikes at -1 and +1
    assert ends[1] == pytest.approx(np.sum(tanh >= 0.5623), rel=1e-6)


def test_rebinning_keeps_every_count_including_the_open_end_bins():
    counts = np.zeros((2, len(HIST_EDGES) - 1))
    counts[0, 0] = 3  # below -1e5
    counts[1, -1] = 4  # above 1e5
    counts[1, len(counts[0]) // 2] = 5  # zero
    edges = np.linspace(-1, 1, 10)  # 9 bins: bin 4 holds 0
    rebinned = rebin_linear(counts, edges)
    np.testing.assert_allclose(rebinned.sum(axis=1), counts.sum(axis=1))
    assert rebinned[0, 0] == 3 and rebinned[1, -1] == 4 and rebinned[1, 4] == 5
