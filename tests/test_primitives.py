"""The small shared helpers every layer uses: record.stat_matrix, probe.first_tensor/model_device, rng.forked_rng."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from torch import nn

from nbdiag.probe import first_tensor, model_device
from nbdiag.record import Block, StepEntry, stat_matrix
from nbdiag.rng import forked_rng


def _entry(step: int, layers: tuple[str, ...], stats: tuple[str, ...], rng: np.random.Generator) -> StepEntry:
    return StepEntry(step, {"activation": Block(layers, stats, rng.normal(size=(len(layers), len(stats))))})


def test_stat_matrix_equals_a_lookup_per_entry_and_name():
    rng = np.random.default_rng(0)
    entries = (
        _entry(0, ("a", "b"), ("mean", "std"), rng),
        _entry(1, ("b", "c", "a"), ("mean", "std"), rng),  # a layer appears, the order changes
        _entry(2, ("a", "b"), ("std", "mean"), rng),  # same layers, other column order
        StepEntry(3, {}),  # nothing of this kind
        _entry(4, ("a", "b"), ("mean", "std"), rng),  # same layers as step 0: read together
        _entry(5, ("a",), ("zero_frac",), rng),  # the stat is missing
    )
    names = ("c", "a", "x")
    expected = np.full((len(entries), len(names)), np.nan)
    for i, entry in enumerate(entries):
        block = entry.blocks.get("activation")
        for j, name in enumerate(names):
            if block is not None and "std" in block.stats and name in block.layers:
                expected[i, j] = block.values[block.layers.index(name), block.stats.index("std")]
    got = stat_matrix(entries, "activation", "std", names)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got).sum() == 5  # c at step 1, a at steps 0, 1, 2 and 4; never "x"
    assert stat_matrix((), "activation", "std", names).shape == (0, 3)


@dataclasses.dataclass
class _Output:
    hidden: tuple
    logits: torch.Tensor


def test_first_tensor_finds_the_prediction_in_nested_outputs():
    logits = torch.randn(2, 3)
    assert first_tensor(logits) is logits
    assert first_tensor({"logits": logits, "aux": torch.zeros(1)}) is logits
    assert first_tensor(((logits, torch.zeros(1)), torch.ones(1))) is logits
    assert first_tensor((torch.arange(3), logits)) is logits  # integer tensors are not predictions
    assert first_tensor(_Output(hidden=(), logits=logits)) is logits
    with pytest.raises(TypeError, match="got model output of type str, expected a tensor"):
        first_tensor("logits")


def test_model_device_reads_parameters_then_buffers_then_defaults_to_cpu():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm1d(2, affine=False)) == torch.device("cpu")  # buffers only
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_forked_rng_restores_every_global_state_and_seeds_reproducibly():
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    with forked_rng(torch.zeros(1), seed=7):
        first = torch.rand(3)
        np.random.rand(5), random.random()  # the body may draw from every generator
    with forked_rng(seed=7):
        second = torch.rand(3)
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), states[0])
    np.testing.assert_array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    with forked_rng():  # unseeded: the body continues the caller's stream, which is then rewound
        inside = torch.rand(2)
    assert torch.equal(torch.rand(2), inside)


def test_forked_rng_restores_state_after_an_exception():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"), forked_rng(seed=1):
        torch.rand(4)
        raise RuntimeError("boom")
    assert torch.equal(torch.get_rng_state(), before)
