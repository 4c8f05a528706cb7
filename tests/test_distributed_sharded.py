"""FSDP2 (fully_shard) on CPU ranks over gloo: every statistic equals one process on the same global batch.

Each rank trains on its half of a batch with FSDP2's default gradient averaging, so the sharded gradients are
those of the global mean loss and the reference is one process on the whole batch with the mean loss. The ranks'
output gradients are those of their own (half-batch mean) loss, i.e. WORLD x the reference's: compared scaled.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

import nbdiag

fsdp = pytest.importorskip("torch.distributed.fsdp")
pytestmark = pytest.mark.slow

WORLD = 2
STEPS = 3
LR = 1e-2
RTOL = 1e-5
ACTIVATION_STATS = ["mean", "std", "min", "max", "count", "zero_frac", "saturated_frac", "nonfinite"]
GRADIENT_STATS = ["mean", "std", "min", "max", "count", "norm", "zero_frac", "nonfinite"]
SCALED_BY_WORLD = ["mean", "std", "min", "max", "norm"]  # output-gradient stats that scale with the loss
WEIGHT_STATS = ["norm", "mean", "std", "nonfinite", "grad_norm", "grad_max", "grad_nonfinite"]
UPDATE_STATS = ["update_ratio", "update_norm"]


class Block(nn.Module):
    """A pre-norm transformer block (attention from Linear projections, a GELU MLP) and a classifier head."""

    def __init__(self, dim: int = 16, heads: int = 2, classes: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.wq, self.wv, self.wo = (nn.Linear(dim, dim) for _ in range(3))
        self.wk = nn.Linear(dim, dim, bias=False)  # a key bias gets a zero gradient (softmax ignores it): AdamW
        # would turn its float noise into full-size steps, and the trajectories into noise
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.norm1(x)
        q, k, v = (w(h).view(b, t, self.heads, d // self.heads).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        x = x + self.wo(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 33), nn.ReLU(), nn.Linear(33, 16), nn.Tanh(), nn.Linear(16, 4))
    with torch.no_grad():
        model[0].bias[:3] = -1e3  # dead units: zero gradients on part of one rank's shard
    return model


def make_block() -> nn.Module:
    torch.manual_seed(0)
    return Block()


MODELS = {"mlp": (make_mlp, (8,)), "block": (make_block, (5, 16))}


def batch(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(32, *shape, generator=generator) * 2, torch.randint(0, 4, (32,), generator=generator)


def shard_model(model: nn.Module) -> nn.Module:
    """fully_shard every parametrized leaf (and the block's MLP as one unit), then the root."""
    for module in model.modules():
        if module is not model and isinstance(module, (nn.Linear, nn.LayerNorm)):
            fsdp.fully_shard(module)
    return fsdp.fully_shard(model)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mon_kwargs: dict | None) -> tuple[list, object]:
    """STEPS of AdamW; with ``mon_kwargs``, watched. Returns (losses, monitor or None)."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    mon = nbdiag.watch(model, opt, every=1, hist_sample=None, **mon_kwargs) if mon_kwargs is not None else None
    losses = []
    for _ in range(STEPS):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach().clone())
        if mon is not None:
            mon.step(loss=loss)
    if mon is not None:
        mon.close()
    return [float(v) for v in losses], mon


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    results = {}
    for name, (make, shape) in MODELS.items():
        x, y = (t.chunk(WORLD)[rank] for t in batch(shape))
        plain, _ = train(shard_model(make()), x, y, None)
        run_dir = f"{out}/{name}-run{rank}"
        losses, mon = train(shard_model(make()), x, y, {"run_dir": run_dir})
        results[name] = {
            "plain": plain,
            "losses": losses,
            "frame": mon.frame(),
            "hist": mon.histograms("activation")[1],
            "errors": mon.errors,
            "layer_types": mon.record.meta.layer_types,
        }
    pd.to_pickle(results, f"{out}/{rank}.pkl")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    context = mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 240
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("FSDP workers did not finish in 240 s")
    return out, [pd.read_pickle(out / f"{rank}.pkl") for rank in range(WORLD)]


@functools.cache
def reference(name: str):
    """One process, whole batch, mean loss: what FSDP2's averaged gradients train."""
    make, shape = MODELS[name]
    losses, mon = train(make(), *batch(shape), {})
    mon.losses = losses
    return mon


def table(frame: pd.DataFrame, kind: str, stats: list[str]) -> pd.Series:
    rows = frame[(frame.kind == kind) & frame.stat.isin(stats)]
    return rows.set_index(["step", "layer", "stat"])["value"].sort_index()


def assert_close(got: pd.Series, expected: pd.Series, rtol: float = RTOL, atol: float = 1e-7) -> None:
    pd.testing.assert_index_equal(got.index, expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_statistics_of_the_full_parameter_equal_one_process(ranks, name):
    _, results = ranks
    expected = reference(name).frame()
    for result in results:  # every rank records the full parameters' statistics
        got = result[name]
        assert got["errors"] == []
        assert_close(table(got["frame"], "weight", WEIGHT_STATS), table(expected, "weight", WEIGHT_STATS))
        assert_close(table(got["frame"], "update", UPDATE_STATS), table(expected, "update", UPDATE_STATS))


@pytest.mark.parametrize("name", list(MODELS))
def test_activations_and_output_gradients_equal_one_process(ranks, name):
    _, results = ranks
    mon = reference(name)
    expected = mon.frame()
    got = results[0][name]["frame"]
    # atol: a LayerNorm output's mean is ~0 +- float32 rounding of a sum of unit-scale values (1e-7 relative to std)
    assert_close(table(got, "activation", ACTIVATION_STATS), table(expected, "activation", ACTIVATION_STATS), atol=1e-6)
    grads, reference_grads = table(got, "gradient", GRADIENT_STATS), table(expected, "gradient", GRADIENT_STATS)
    scaled = reference_grads.index.get_level_values("stat").isin(SCALED_BY_WORLD)
    reference_grads[scaled] *= WORLD  # each rank differentiates its own mean loss (see the module docstring)
    assert_close(grads, reference_grads, atol=1e-6)
    pd.testing.assert_frame_equal(results[0][name]["hist"], mon.histograms("activation")[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_watching_leaves_losses_unchanged_and_names_are_the_users(ranks, name):
    _, results = ranks
    for result in results:
        assert result[name]["losses"] == result[name]["plain"]  # bitwise
        types = result[name]["layer_types"]
        assert not any("FSDP" in t for t in types.values()), types
    assert results[0][name]["layer_types"] == reference(name).record.meta.layer_types
    first_loss = sum(results[rank][name]["losses"][0] for rank in range(WORLD)) / WORLD
    assert math.isclose(first_loss, reference(name).losses[0], rel_tol=1e-6)


def test_rank_0_writes_a_readable_run_directory(ranks):
    out, results = ranks
    assert not (out / "mlp-run1").exists()
    pd.testing.assert_frame_equal(nbdiag.open_run(out / "mlp-run0").frame(), results[0]["mlp"]["frame"])


# -- tensor parallelism ---------------------------------------------------------------------------------------------
class TPNet(nn.Module):
    """Sequence-parallel LayerNorm, a colwise/rowwise Linear pair around a ReLU, and a plain head."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.fc1, self.act, self.fc2 = nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(self.act(self.fc1(self.norm(x))))).mean(1)


def make_tp_net() -> nn.Module:
    torch.manual_seed(0)
    return TPNet()


def tp_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(8, 6, 8, generator=generator) * 2, torch.randint(0, 4, (8,), generator=generator)


def parallelize(model: nn.Module, mesh) -> nn.Module:
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        SequenceParallel,
        parallelize_module,
    )

    plan = {"norm": SequenceParallel(), "fc1": ColwiseParallel(input_layouts=Shard(1)), "fc2": RowwiseParallel()}
    return parallelize_module(model, mesh, plan)


def _tp_worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    mesh = init_device_mesh("cpu", (WORLD,), mesh_dim_names=("tp",))
    x, y = tp_batch()
    x = x.chunk(WORLD, dim=1)[rank]  # sequence parallel: each rank holds its part of the sequence
    plain, _ = train(parallelize(make_tp_net(), mesh), x, y, None)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        losses, mon = train(parallelize(make_tp_net(), mesh), x, y, {})
    result = {
        "plain": plain,
        "losses": losses,
        "frame": mon.frame(),
        "hist": mon.histograms("activation")[1],
        "errors": mon.errors,
        "said": [str(w.message) for w in said if "not recorded" in str(w.message)],
        "not_recorded": dict(mon.record.meta.not_recorded_sharded or {}),
    }
    pd.to_pickle(result, f"{out}/tp{rank}.pkl")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def tp_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("tp")
    context = mp.start_processes(
        _tp_worker, args=(free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 240
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("tensor-parallel workers did not finish in 240 s")
    return [pd.read_pickle(out / f"tp{rank}.pkl") for rank in range(WORLD)]


@functools.cache
def tp_reference():
    losses, mon = train(make_tp_net(), *tp_batch(), {})
    mon.losses = losses
    return mon


def test_tensor_parallel_statistics_equal_one_process(tp_ranks):
    """Sharded outputs (sequence-parallel norm, colwise fc1 and the ReLU after it) merge over ranks; replicated
    ones (rowwise fc2, the plain head) count once; the loss is the same on every rank, so gradients need no scaling."""
    mon = tp_reference()
    expected = mon.frame()
    for result in tp_ranks:
        assert result["errors"] == []
        assert result["losses"] == result["plain"]
        np.testing.assert_allclose(result["losses"], mon.losses, rtol=1e-6)
        got = result["frame"]
        for kind, stats in (("activation", ACTIVATION_STATS), ("gradient", GRADIENT_STATS)):
            assert_close(table(got, kind, stats), table(expected, kind, stats), atol=1e-6)
        assert_close(table(got, "update", UPDATE_STATS), table(expected, "update", UPDATE_STATS))
        weights, reference_weights = table(got, "weight", WEIGHT_STATS), table(expected, "weight", WEIGHT_STATS)
        partial = weights.index.get_level_values("layer").str.startswith("norm.") & weights.index.get_level_values(
            "stat"
        ).str.startswith("grad_")
        assert weights[partial].isna().all()  # a Partial gradient is not recorded ...
        assert_close(weights[~partial], reference_weights[~partial])
    pd.testing.assert_frame_equal(tp_ranks[0]["hist"], mon.histograms("activation")[1])


def test_tensor_parallel_gaps_are_said_once(tp_ranks):
    for result in tp_ranks:
        assert len(result["said"]) == 1  # ... and said once, on the first sampled step
        assert set(result["not_recorded"]) == {"norm.weight (gradient)", "norm.bias (gradient)", "act (units)"}


# -- FSDP2 x tensor parallel on a 2 x 2 mesh ------------------------------------------------------------------------
MESH = (2, 2)  # (data parallel, tensor parallel)


def _fsdp_tp_worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=math.prod(MESH))
    mesh = init_device_mesh("cpu", MESH, mesh_dim_names=("dp", "tp"))
    dp, tp = mesh.get_coordinate()
    x, y = (t.chunk(MESH[0])[dp] for t in tp_batch())
    x = x.chunk(MESH[1], dim=1)[tp]

    def make() -> nn.Module:
        model = parallelize(make_tp_net(), mesh["tp"])
        for module in (model.norm, model.fc1, model.fc2, model.head):
            fsdp.fully_shard(module, mesh=mesh["dp"])
        return fsdp.fully_shard(model, mesh=mesh["dp"])

    plain, _ = train(make(), x, y, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Partial gradients' note (tested on the 1-D mesh)
        losses, mon = train(make(), x, y, {"run_dir": f"{out}/run{rank}"})
    result = {"plain": plain, "losses": losses, "frame": mon.frame(), "errors": mon.errors}
    pd.to_pickle(result, f"{out}/{rank}.pkl")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_tp_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp_tp")
    world = math.prod(MESH)
    context = mp.start_processes(
        _fsdp_tp_worker, args=(free_port(), str(out)), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 300
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("FSDP x TP workers did not finish in 300 s")
    return out, [pd.read_pickle(out / f"{rank}.pkl") for rank in range(world)]


def test_fsdp_times_tensor_parallel_equals_one_process(fsdp_tp_ranks):
    """Data parallel over mesh rows (averaged gradients: the global mean loss), tensor parallel within a row."""
    out, results = fsdp_tp_ranks
    mon = tp_reference()
    expected = mon.frame()
    for result in results:
        assert result["errors"] == []
        assert result["losses"] == result["plain"]
        got = result["frame"]
        assert_close(
            table(got, "activation", ACTIVATION_STATS), table(expected, "activation", ACTIVATION_STATS), atol=1e-6
        )
        grads, reference_grads = table(got, "gradient", GRADIENT_STATS), table(expected, "gradient", GRADIENT_STATS)
        scaled = reference_grads.index.get_level_values("stat").isin(SCALED_BY_WORLD)
        reference_grads[scaled] *= MESH[0]  # each mesh row differentiates its own mean loss
        assert_close(grads, reference_grads, atol=1e-6)
        assert_close(table(got, "update", UPDATE_STATS), table(expected, "update", UPDATE_STATS))
        weights, reference_weights = table(got, "weight", WEIGHT_STATS), table(expected, "weight", WEIGHT_STATS)
        recorded = weights.notna()  # only Partial gradients (the sequence-parallel norm's) may be missing
        missing = weights[~recorded].index
        assert missing.get_level_values("layer").str.startswith("norm.").all()
        assert missing.get_level_values("stat").str.startswith("grad_").all()
        assert_close(weights[recorded], reference_weights[recorded])
    pd.testing.assert_frame_equal(nbdiag.open_run(out / "run0").frame(), results[0]["frame"])
