"""Synthetic record entries with random statistics, for view tests and the dashboard refresh benchmark."""

from __future__ import annotations

import numpy as np

from nbdiag.record import Block, StepEntry
from nbdiag.stats import ACTIVATION_STATS, GRADIENT_STATS, N_BINS
from nbdiag.weights import UPDATE_STATS, WEIGHT_STATS


def synthetic_entry(step: int, n_layers: int, rng: np.random.Generator) -> StepEntry:
    """One sampled step of an MLP alternating Linear and Tanh, random statistics."""
    layers = tuple(str(i) for i in range(n_layers))
    params = tuple(f"{i}.{p}" for i in range(0, n_layers, 2) for p in ("weight", "bias"))

    def block(names, stats, hist=True):
        counts = rng.integers(0, 50, (len(names), N_BINS)).astype(np.float32) if hist else None
        return Block(names, stats, rng.random((len(names), len(stats))), counts)

    return StepEntry(
        step,
        {
            "activation": block(layers, ACTIVATION_STATS),
            "gradient": block(layers[::-1], GRADIENT_STATS),  # backward order, as recorded
            "weight": block(params, WEIGHT_STATS, hist=False),
            "update": block(params, UPDATE_STATS, hist=False),
        },
    )
