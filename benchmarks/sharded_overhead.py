"""FSDP2 under nbdiag: per-rank cost of a sampled step (ratio to plain FSDP2 training), and a correctness check.

    python benchmarks/sharded_overhead.py --nproc 2 --device cpu            # overhead, methods interleaved
    python benchmarks/sharded_overhead.py --nproc 1 --device cuda --check   # FSDP2 stats == one process (GPU script)

Overhead: every rank trains two copies of one MLP under ``fully_shard`` (per Linear, then the root) with AdamW;
round after round, ``--steps`` steps of the plain copy, then ``--steps`` of the watched copy (``every=1``: every
step sampled, the worst case), so load drifts hit both alike. Reported per rank: wall and process CPU time per
step, and their ratios watched / plain. On a machine shared with other work, report the CPU-time ratio (wall
time then includes waiting for the cores), and say so.

Check: one rank (``--nproc 1``) on ``--device``: the watched FSDP2 model's weight, gradient and update statistics
and its activations equal an unsharded copy's on the same batch (rtol 1e-4): exercises the DTensor paths
(``to_local`` shards, the merge) on that device. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

import nbdiag


def make_model(width: int, depth: int, device: str) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, width), nn.GELU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.GELU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers).to(device)


def shard(model: nn.Module, device: str) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    for module in model:
        if isinstance(module, nn.Linear):
            fully_shard(module)
    return fully_shard(model)


def data(batch: int, device: str, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(rank + 1)
    x, y = torch.randn(batch, 64, generator=generator), torch.randint(0, 10, (batch,), generator=generator)
    return x.to(device), y.to(device)


def steps(model, opt, x, y, n: int, mon=None) -> None:
    for _ in range(n):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if mon is not None:
            mon.step(loss=loss)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[float, float]:
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def overhead(rank: int, args) -> None:
    device = args.device
    x, y = data(args.batch, device, rank)
    plain = shard(make_model(args.width, args.depth, device), device)
    watched = shard(make_model(args.width, args.depth, device), device)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-3)
    opt_watched = torch.optim.AdamW(watched.parameters(), lr=1e-3)
    mon = nbdiag.watch(watched, opt_watched, every=1, dense=0, capacity=64)
    steps(plain, opt_plain, x, y, args.warmup)
    steps(watched, opt_watched, x, y, args.warmup, mon)
    times = {"plain": [], "nbdiag": []}
    for _ in range(args.rounds):  # interleaved: both see the same load drift
        times["plain"].append(timed(lambda: steps(plain, opt_plain, x, y, args.steps), device))
        times["nbdiag"].append(timed(lambda: steps(watched, opt_watched, x, y, args.steps, mon), device))
    mon.close()
    per_step = {k: np.array(v).sum(axis=0) / (args.rounds * args.steps) for k, v in times.items()}
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, per_step)
    if rank == 0:
        print(
            f"### FSDP2, {dist.get_world_size()} ranks, {device}, MLP {args.depth} x {args.width}, batch "
            f"{args.batch}/rank, every=1, {args.rounds} rounds x {args.steps} steps\n"
        )
        print("| rank | plain wall ms | nbdiag wall ms | wall ratio | plain CPU ms | nbdiag CPU ms | CPU ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r, t in enumerate(gathered):
            (pw, pc), (nw, nc) = t["plain"], t["nbdiag"]
            print(
                f"| {r} | {pw * 1e3:.2f} | {nw * 1e3:.2f} | {nw / pw:.2f} | {pc * 1e3:.2f} | {nc * 1e3:.2f} | "
                f"{nc / pc:.2f} |"
            )


def check(args) -> int:
    """One rank: the watched FSDP2 model's statistics == an unsharded copy's (same init, batch, optimizer)."""
    device = args.device
    x, y = data(args.batch, device, 0)
    frames = []
    for sharded in (True, False):
        model = make_model(args.width, args.depth, device)
        model = shard(model, device) if sharded else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with nbdiag.watch(model, opt, every=1, hist_sample=None) as mon:
            steps(model, opt, x, y, 3, mon)
        frames.append(mon.frame())
    got, expected = (
        f[f.kind.isin(["weight", "update", "activation"])]
        .set_index(["step", "kind", "layer", "stat"])["value"]
        .sort_index()
        for f in frames
    )
    same_rows = got.index.equals(expected.index)
    close = same_rows and np.allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=1e-6, equal_nan=True)
    worst = float(np.nanmax(np.abs(got.to_numpy() - expected.to_numpy()))) if same_rows else float("nan")
    print(
        f"FSDP2 on {device}, 1 rank: {len(got)} statistics, same rows {same_rows}, largest difference {worst:.2e}: "
        f"{'ok' if close else 'MISMATCH'}"
    )
    return 0 if close else 1


def _rank(rank: int, world: int, port: int, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.cuda.set_device(rank)
    dist.init_process_group("gloo" if args.device == "cpu" else "nccl", rank=rank, world_size=world)
    try:
        status = check(args) if args.check else (overhead(rank, args) or 0)
    finally:
        dist.destroy_process_group()
    if status:
        sys.exit(status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--check", action="store_true", help="correctness check instead of timing (1 rank)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (CPU)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if args.nproc == 1:
        try:
            _rank(0, 1, port, args)
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0
    mp.start_processes(_rank, args=(args.nproc, port, args), nprocs=args.nproc, start_method="spawn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
