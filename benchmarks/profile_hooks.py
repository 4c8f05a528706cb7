"""Where a sampled step's time goes: nbdiag's hook path on the benchmark CNN (or MLP), profiled on a CPU.

    python benchmarks/profile_hooks.py --model cnn --steps 200      # cProfile of every=1 training, top nbdiag functions
    python benchmarks/profile_hooks.py --model cnn --ops             # torch.profiler: the aten ops nbdiag's hooks run

Three figures per run: (1) interleaved plain / every=10 / every=1 CPU time per step (this thread's CPU time, one
torch thread: robust to other processes loading the machine, unlike wall time), median and spread of the per-round
ratios over ``--rounds``; (2) aten ops per sampled step inside nbdiag's hooks and parameter statistics (exact, from
a dispatch mode); (3) the profile of ``--steps`` every=1 steps, restricted to nbdiag's own functions (cumulative
time per step). cProfile inflates Python-heavy code, so read its figures as shares.
Results per change are kept in ``benchmarks/results/cpu-profile.md``.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import os
import pstats
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from host_cost import NbdiagOps  # noqa: E402
from overhead_models import make_case  # noqa: E402

import nbdiag  # noqa: E402


def train(model, opt, batches, steps: int, mon=None) -> float:
    """Mean CPU seconds of this thread per step over ``steps`` steps (with one torch thread, all of the step's
    work; unlike wall time it does not count the time other processes hold the cores)."""
    start = time.thread_time()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if mon is not None:
            mon.step(loss=loss)
    return (time.thread_time() - start) / steps


def interleaved(case, rounds: int, steps: int) -> dict[str, list[float]]:
    """Per-round step times of plain, every=10 and every=1 training, the methods interleaved."""
    runs = {}
    for name, every in (("plain", None), ("every=10", 10), ("every=1", 1)):
        model = copy.deepcopy(case.base)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mon = None if every is None else nbdiag.watch(model, opt, every=every, dense=0, display=False)
        train(model, opt, case.batches, 10, mon)
        runs[name] = (model, opt, mon, [])
    for _ in range(rounds):
        for model, opt, mon, times in runs.values():
            times.append(train(model, opt, case.batches, steps, mon))
    return {name: times for name, (*_, times) in runs.items()}


def ops_per_step(case) -> int:
    """aten ops dispatched inside nbdiag's hooks and its step flush during one sampled step (host_cost.NbdiagOps)."""
    with NbdiagOps() as ops:
        model = copy.deepcopy(case.base)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mon = nbdiag.watch(model, opt, every=1, dense=0, display=False)
        train(model, opt, case.batches, 1, mon)
        counted = ops.count(lambda: train(model, opt, case.batches, 1, mon))
        mon.close()
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn", choices=("cnn", "mlp"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--ops", action="store_true", help="also list the aten ops of 20 every=1 steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    case = make_case(args.model, steps=100, device="cpu")
    case.base = case.build()
    times = interleaved(case, args.rounds, 100)
    plain = statistics.median(times["plain"])
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.model}: plain {plain * 1e3:.2f} ms CPU/step")
    for name, values in times.items():
        ratios = sorted(v / p for v, p in zip(values, times["plain"], strict=True))
        spread = f"per-round {ratios[0]:.2f}..{ratios[-1]:.2f}"
        print(f"  {name:9s} median ratio {statistics.median(ratios):.3f}  ({spread})")
    print(f"  aten ops per sampled step in nbdiag: {ops_per_step(case)}")
    model = copy.deepcopy(case.base)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = nbdiag.watch(model, opt, every=1, dense=0, display=False)
    train(model, opt, case.batches, 10, mon)
    profiler = cProfile.Profile()
    profiler.enable()
    train(model, opt, case.batches, args.steps, mon)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = [
        (cum / args.steps * 1e6, calls / args.steps, f"{os.path.basename(file)}:{func}")
        for (file, _, func), (_, calls, _, cum, _) in stats.stats.items()
        if f"{os.sep}nbdiag{os.sep}" in file
    ]
    print(f"\ncProfile, every=1, per step (us cumulative, calls): top {args.top} nbdiag functions")
    for us, calls, name in sorted(rows, reverse=True)[: args.top]:
        print(f"  {us:9.0f} us  {calls:6.1f}  {name}")
    if args.ops:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            train(model, opt, case.batches, 20, mon)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    mon.close()


if __name__ == "__main__":
    main()
