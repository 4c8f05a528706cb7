"""torch.distributed on CPU (gloo): statistics merged over 2 ranks equal one process on the gathered batch."""

from __future__ import annotations

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
from nbdiag.monitor import NbdiagWarning
from nbdiag.runs.distributed import PER_RANK_ENV, TIMEOUT_ENV, warn_if_sharded

WORLD = 2
STEPS = 3
LR = 0.1
RTOL = 1e-5  # float32 moments per rank, merged in float64, against float32 moments over the whole batch
MOMENT_STATS = ["mean", "std", "min", "max", "count", "norm", "zero_frac", "saturated_frac", "nonfinite"]


PLANTED_DEAD = 4  # hidden ReLU units 0-3 never fire on any rank; unit 4 fires on one rank's samples only


def make_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4))
    feature = full_batch()[0][:, 0]
    with torch.no_grad():
        model[0].bias[:PLANTED_DEAD] = -1e3
        model[0].weight[PLANTED_DEAD] = torch.eye(8)[0]  # unit 4 = feature 0 minus the smaller of the shards' maxima
        model[0].bias[PLANTED_DEAD] = -min(float(part.max()) for part in feature.chunk(WORLD)) - 1e-3
    return model


def full_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(64, 8, generator=generator) * 3, torch.randint(0, 4, (64,), generator=generator)


def shard(rank: int):
    x, y = full_batch()
    return x.chunk(WORLD)[rank], y.chunk(WORLD)[rank]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **{PER_RANK_ENV: "1"})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    model = nn.parallel.DistributedDataParallel(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = shard(rank)
    with nbdiag.watch(model, opt, every=1, hist_sample=None, run_dir=f"{out}/run{rank}") as mon:
        for _ in range(STEPS):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    result = {"frame": mon.frame(), "hist": mon.histograms("activation"), "errors": mon.errors}
    pd.to_pickle(result, f"{out}/{rank}.pkl")
    _rank_that_stops_sampling(rank, out)
    dist.destroy_process_group()


def _rank_that_stops_sampling(rank: int, out: str) -> None:
    """Rank 1 never steps: rank 0's sampled step must fail after the timeout, not hang."""
    os.environ[TIMEOUT_ENV] = "2"
    model = make_model()
    mon = nbdiag.watch(model, every=1)
    started = time.monotonic()
    if rank == 0:
        with warnings.catch_warnings(record=True):
            model(torch.randn(4, 8)).sum().backward()
            mon.step()
        pd.to_pickle({"errors": mon.errors, "seconds": time.monotonic() - started}, f"{out}/timeout.pkl")
    dist.barrier()
    mon.close()


def single_process(x: torch.Tensor, y: torch.Tensor, steps: int = STEPS, split: int = WORLD) -> nbdiag.Monitor:
    """The reference: the whole batch in one process, loss = sum of the shards' mean losses (what each rank
    differentiates), learning rate / WORLD (DDP averages the shards' gradients)."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR / split)
    with nbdiag.watch(model, opt, every=1, hist_sample=None) as mon:
        for _ in range(steps):
            out = model(x)
            loss = sum(F.cross_entropy(o, t) for o, t in zip(out.chunk(split), y.chunk(split), strict=True))
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step()
    return mon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 150
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("distributed workers did not finish in 150 s")
    return out, [pd.read_pickle(out / f"{rank}.pkl") for rank in range(WORLD)]


def stat_table(frame: pd.DataFrame, kinds=("activation", "gradient")) -> pd.DataFrame:
    rows = frame[frame.kind.isin(kinds) & ~frame.layer.str.contains("@") & frame.stat.isin(MOMENT_STATS)]
    return rows.set_index(["step", "kind", "layer", "stat"])["value"].sort_index()


def test_merged_activation_and_gradient_stats_equal_one_process(ranks):
    _, results = ranks
    reference = stat_table(single_process(*full_batch()).frame())
    for result in results:  # every rank records the global statistics
        assert result["errors"] == []
        merged = stat_table(result["frame"])
        pd.testing.assert_index_equal(merged.index, reference.index)
        np.testing.assert_allclose(merged.to_numpy(), reference.to_numpy(), rtol=RTOL, atol=1e-7)


def test_merged_histograms_equal_one_process(ranks):
    _, results = ranks
    _, reference = single_process(*full_batch()).histograms("activation")
    _, merged = results[0]["hist"]
    merged = merged[~merged.index.get_level_values("layer").str.contains("@")]
    pd.testing.assert_frame_equal(merged, reference)


def test_dead_units_are_counted_over_all_ranks(ranks):
    """Per-unit counts add over ranks: unit 4 fires on one rank only, so it is alive globally, dead on that shard."""
    _, results = ranks
    reference = single_process(*full_batch()).frame("units")
    for result in results:
        merged = result["frame"][result["frame"].kind == "units"]
        pd.testing.assert_frame_equal(merged.reset_index(drop=True), reference.reset_index(drop=True))
        dead = merged[(merged.layer == "1") & (merged.stat == "dead_units")].value
        assert (dead == PLANTED_DEAD).all()
    alone = [single_process(*shard(rank), steps=1, split=1).frame("units") for rank in range(WORLD)]
    dead_alone = sorted(int(f[(f.layer == "1") & (f.stat == "dead_units")].value.iloc[0]) for f in alone)
    assert dead_alone == [PLANTED_DEAD, PLANTED_DEAD + 1]


def test_replicated_weights_and_updates_equal_one_process(ranks):
    _, results = ranks
    reference = single_process(*full_batch()).frame()
    for kind, stats in (("weight", ["norm", "mean", "std"]), ("update", ["update_ratio"])):
        expected = stat_table(reference[reference.stat.isin(stats)], (kind,))
        merged = stat_table(results[0]["frame"][results[0]["frame"].stat.isin(stats)], (kind,))
        np.testing.assert_allclose(merged.to_numpy(), expected.to_numpy(), rtol=1e-4)


def test_per_rank_rows_equal_each_shard_alone(ranks):
    _, results = ranks
    frame = results[0]["frame"]
    for rank in range(WORLD):
        alone = stat_table(single_process(*shard(rank), steps=1, split=1).frame())
        rows = frame[(frame.step == 0) & frame.layer.str.endswith(f"@rank{rank}")].copy()
        rows["layer"] = rows.layer.str.replace(f"@rank{rank}", "")
        assert "saturated_frac" in alone.index.get_level_values("stat")  # kept on per-rank rows of bounded layers
        np.testing.assert_allclose(stat_table(rows).to_numpy(), alone.to_numpy(), rtol=RTOL, atol=1e-7)


def test_only_rank_0_writes_the_run_directory(ranks):
    out, results = ranks
    assert not (out / "run1").exists()
    pd.testing.assert_frame_equal(nbdiag.open_run(out / "run0").frame(), results[0]["frame"])


def test_a_rank_that_stops_sampling_fails_fast_instead_of_hanging(ranks):
    out, _ = ranks
    result = pd.read_pickle(out / "timeout.pkl")
    assert result["errors"] and result["seconds"] < 30


def test_sharded_models_are_reported():
    class FullyShardedDataParallel(nn.Module):  # stands in for torch.distributed.fsdp's wrapper
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(2, 2)

    with pytest.warns(NbdiagWarning, match="FSDP"):
        warn_if_sharded(nn.Sequential(FullyShardedDataParallel()))
    warn_if_sharded(nn.Linear(2, 2))  # nothing to say (warnings are errors in this suite)
