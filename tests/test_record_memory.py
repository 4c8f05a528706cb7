"""Record memory that scales (issue 21, part 4): bytes per (layer x sampled step) measured by walking what the record
holds, the default bound for a 400-layer run, the byte budget, and filtered frames."""

from __future__ import annotations

import dataclasses
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.rawstats import N_BINS
from nbdiag.record import MAX_BYTES, Block, Record, StepEntry

BOUND = 300 * 10**6  # docs/design.md "Memory": a 400-layer run with the default capacity holds less than this
F64, F32 = 8, 4


def held_bytes(entries: list[StepEntry]) -> int:
    """Every object reachable from ``entries``, each counted once: arrays' buffers, tuples, strings, dicts."""
    seen: set[int] = set()
    total, stack = 0, list(entries)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, np.ndarray):
            total += obj.nbytes if obj.base is not None else 0  # getsizeof counts an owned buffer already
        elif isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (tuple, list)):
            stack += list(obj)
        elif dataclasses.is_dataclass(obj):
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    return total


def deep_model(blocks: int = 200) -> nn.Module:
    return nn.Sequential(*[m for _ in range(blocks) for m in (nn.Linear(16, 16), nn.ReLU())])


@pytest.fixture(scope="module")
def deep_run():
    """Three sampled steps of a 400-layer model (200 x (Linear, ReLU)), every=1."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = deep_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = nbdiag.watch(model, opt, every=1, display=False)
    x = torch.randn(8, 16)
    for _ in range(3):
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss=loss)
    mon.close()
    torch.set_num_threads(threads)
    return model, mon.record


def test_a_400_layer_run_stays_under_the_documented_bound(deep_run):
    model, record = deep_run
    entries = record.entries()
    layers = len(record.layers("activation"))
    assert layers == 400 and len(entries) == 3
    # what the model makes the record hold, from its structure: per layer output the activation and gradient
    # statistics (8 float64 each) and histograms (N_BINS float32 each) and dynamic_range (3 float64); per ReLU
    # dead-unit counts (7 float64); per parameter its weight (7) and update (2) statistics
    relus = sum(isinstance(m, nn.ReLU) for m in model)
    params = len(list(model.parameters()))
    arrays = layers * (2 * (8 * F64 + N_BINS * F32) + 3 * F64) + relus * 7 * F64 + params * 9 * F64
    per_step = held_bytes(entries) / len(entries)
    assert arrays <= per_step <= 1.15 * arrays, (arrays, per_step)  # names shared: the arrays are nearly all
    assert record.nbytes() / len(entries) == pytest.approx(per_step, rel=0.05)
    per_layer_step = per_step / layers
    assert 1100 < per_layer_step < 1400  # docs/design.md "Memory": ~1,250 bytes
    full = per_step * record.capacity  # the default capacity's worth of steps
    assert record.capacity == 512 and full < BOUND and full < 1.05 * MAX_BYTES, full


def test_layer_names_are_held_once_whatever_the_number_of_steps(deep_run):
    _, record = deep_run
    one, three = held_bytes(record.entries()[:1]), held_bytes(record.entries())
    names = sum(sys.getsizeof(n) for n in record.layers("activation"))  # ~24 KB of 400 names
    later = (three - one) / 2  # what each later step adds
    assert later < one - names / 2  # its arrays, not its names again (main made new ones for 600 rows a step)


def _synthetic_entry(step: int, layers: tuple[str, ...]) -> StepEntry:
    rng = np.random.default_rng(step)
    values = rng.normal(size=(len(layers), 8))
    hist = rng.integers(0, 50, size=(len(layers), N_BINS)).astype(np.float32)
    return StepEntry(step, {"activation": Block(layers, tuple(f"s{i}" for i in range(8)), values, hist)})


def test_a_full_byte_budget_thins_the_older_half():
    layers = tuple(f"blocks.{i}.fc" for i in range(400))
    budget = 4 * 2**20
    record = Record(capacity=10_000, max_bytes=budget)
    for step in range(200):
        record.append(_synthetic_entry(step, tuple(layers)))  # a new tuple each step, as the monitor makes
    entries = record.entries()
    assert record.nbytes() <= budget
    assert held_bytes(entries) <= 1.05 * budget
    assert entries[0].step == 0 and entries[-1].step == 199  # the whole span, at a lower resolution
    assert len(entries) < 200 and len(entries) >= budget // (2 * held_bytes(entries[-1:]))
    with pytest.raises(ValueError, match="max_bytes=0"):
        Record(max_bytes=0)


def _frame_by_hand(record: Record) -> pd.DataFrame:
    """The unfiltered long table built row by row, independently of Record.frame."""
    rows = []
    for entry in record.entries():
        for kind, block in entry.blocks.items():
            for i, layer in enumerate(block.layers):
                for j, stat in enumerate(block.stats):
                    value = block.values[i, j]
                    if not (stat in block.optional and np.isnan(value)):
                        rows.append((entry.step, layer, kind, stat, value))
    return pd.DataFrame(rows, columns=["step", "layer", "kind", "stat", "value"])


def test_filtered_frames_equal_the_filtered_whole_table():
    record = Record()
    for step in range(0, 50, 5):
        units = np.arange(6, dtype=np.float64).reshape(3, 2) + step
        units[1, 0] = np.nan  # "does not apply": left out of the frame
        record.append(
            StepEntry(
                step,
                {
                    "activation": Block(("a", "b"), ("mean", "std"), np.full((2, 2), step + 0.5)),
                    "units": Block(("a", "b", "c"), ("dead", "saturated"), units, optional=("dead",)),
                },
            )
        )
    whole = _frame_by_hand(record)
    pd.testing.assert_frame_equal(record.frame(), whole, check_dtype=False)
    cases = [
        (dict(kind="units"), whole.kind == "units"),
        (dict(layers=["b"], stats="dead"), (whole.layer == "b") & (whole.stat == "dead")),
        (dict(steps=range(10, 30)), whole.step.between(10, 29)),
        (dict(kind="activation", steps=[0, 45], stats=["std"]), whole.step.isin([0, 45]) & (whole.stat == "std")),
        (dict(layers=["nope"]), whole.step < 0),
    ]
    for kwargs, keep in cases:
        got = record.frame(**kwargs)
        pd.testing.assert_frame_equal(got, whole[keep].reset_index(drop=True), check_dtype=False, obj=str(kwargs))


def test_a_filtered_frame_of_a_large_record_builds_only_its_rows():
    layers = tuple(f"blocks.{i}.fc" for i in range(400))
    record = Record(capacity=100)
    for step in range(100):
        record.append(_synthetic_entry(step, layers))
    tracemalloc.start()
    try:
        frame = record.frame("activation", layers=layers[:2], stats=["s1"], steps=range(50, 100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frame) == 2 * 50
    whole_rows = 100 * 400 * 8
    assert peak < whole_rows * F64 / 20, peak  # far below even one float64 column of the whole table
