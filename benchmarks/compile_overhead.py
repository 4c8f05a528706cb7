"""What nbdiag costs a ``torch.compile``d model (issue 16, item 8): first-step compile time and unsampled step time.

Each variant compiles a fresh copy of one MLP in its own process state (``torch._dynamo.reset()``) and trains it:

- ``plain``: compiled, no nbdiag;
- ``watch``: compiled, ``nbdiag.watch(compiled, opt, every=10, dense=1, activations=True)``: forward hooks, as
  before issue 16 made parameters-only the default for compiled models;
- ``watch_params``: compiled, ``nbdiag.watch(compiled, opt, every=10, dense=1)``, the default for a compiled model:
  parameter statistics only (no hook in the compiled region).

Reported: the first step (compile included), the median unsampled step, and dynamo's frame/graph-break counts.

    python benchmarks/compile_overhead.py                       # inductor on CPU
    python benchmarks/compile_overhead.py --backend aot_eager --steps 60 --rounds 5

Compile times are measured with the compiler's caches warm (a warm-up run first): they compare the graphs each
variant makes (one whole graph, or one per layer), not a cold start.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings

import torch
from torch import nn

import nbdiag


def make_model(width: int, depth: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def run(variant: str, base: nn.Module, args: argparse.Namespace) -> dict:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = copy.deepcopy(base)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    compiled = torch.compile(model, backend=args.backend)
    mon = None
    if variant != "plain":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extra = {"activations": variant == "watch"}
            mon = nbdiag.watch(compiled, opt, every=10, dense=1, display=False, **extra)
    x, y = torch.randn(args.batch, args.width), torch.randint(0, 10, (args.batch,))
    times, sampled = [], []
    for step in range(args.steps):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(compiled(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if mon is not None:
            mon.step(loss=loss)
        times.append(time.perf_counter() - start)
        sampled.append(mon is not None and mon.sampled(step))
    if mon is not None:
        mon.close()
    idle = [t for t, s in zip(times[1:], sampled[1:], strict=True) if not s][5:]  # after the second compile
    busy = [t for t, s in zip(times[12:], sampled[12:], strict=True) if s]
    return {
        "variant": variant,
        "first_step_s": round(times[0], 3),
        "compile_total_s": round(sum(times[:12]) - 12 * statistics.median(idle), 3),
        "unsampled_step_ms": round(1e3 * statistics.median(idle), 3),
        "sampled_step_ms": round(1e3 * statistics.median(busy), 3) if busy else None,
        "frames": counters["frames"]["total"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "unique_graphs": counters["stats"]["unique_graphs"],
    }


def _median(runs: list[dict]) -> dict:
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            merged[key] = round(statistics.median(r[key] for r in runs), 3)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=["plain", "watch", "watch_params"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds interleave the variants; medians reported")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = make_model(args.width, args.depth)
    run("plain", base, args)  # warm-up: imports, thread pools, compiler caches shared by every variant
    rounds = [[run(variant, base, args) for variant in args.variants] for _ in range(args.rounds)]
    results = [_median(list(runs)) for runs in zip(*rounds, strict=True)]
    plain = next((r for r in results if r["variant"] == "plain"), None)
    for r in results:
        if plain is not None:
            r["unsampled_vs_plain"] = round(r["unsampled_step_ms"] / plain["unsampled_step_ms"], 2)
            r["first_step_vs_plain"] = round(r["first_step_s"] / plain["first_step_s"], 2)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
