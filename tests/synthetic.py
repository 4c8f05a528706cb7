"""Synthetic record entries with random statistics, for view tests and the dashboard refresh benchmark."""

from __future__ import annotations

import numpy as np

from nbdiag.record import Block, StepEntry
from nbdiag.stats import ACTIVATION_STATS, GRADIENT_STATS, N_BINS
from nbdiag.weights import UPDATE_STATS, WEIGHT_STATS

GPT_BLOCK = {
    "ln1": "LayerNorm",
    "attn.qkv": "Linear",
    "attn.proj": "Linear",
    "ln2": "LayerNorm",
    "mlp.0": "Linear",
    "mlp.1": "GELU",
    "mlp.2": "Linear",
}


def gpt_layers(n_layers: int) -> dict[str, str]:
    """``name -> type`` of the first ``n_layers`` layers of a GPT-2 layout (``benchmarks/overhead_models.GPT``):
    wte, wpe, then blocks of :data:`GPT_BLOCK`, then ln_f and head."""
    blocks = max(0, -(-(n_layers - 4) // len(GPT_BLOCK)))
    layers = {"wte": "Embedding", "wpe": "Embedding"}
    layers.update({f"blocks.{b}.{role}": kind for b in range(blocks) for role, kind in GPT_BLOCK.items()})
    layers.update({"ln_f": "LayerNorm", "head": "Linear"})
    return dict(list(layers.items())[:n_layers])


def synthetic_entry(
    step: int, n_layers: int, rng: np.random.Generator, names: tuple[str, ...] | None = None
) -> StepEntry:
    """One sampled step of an MLP alternating Linear and Tanh (or of the layers ``names``, every one with a weight
    and a bias), random statistics."""
    layers = names if names is not None else tuple(str(i) for i in range(n_layers))
    owners = layers if names is not None else layers[::2]
    params = tuple(f"{layer}.{p}" for layer in owners for p in ("weight", "bias"))

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
