"""Extra peak device memory of nbdiag every=1: a plain training step against a sampled one, same model and batch.

    python benchmarks/device_memory.py --device cuda --model resnet50 gpt2 --json mem.json
    python benchmarks/device_memory.py --smoke --model cnn gpt2                 # any device, tiny models

On CUDA the figure is ``torch.cuda.max_memory_allocated`` over one step (peak reset before it). Elsewhere it is the
peak of the running sum of allocations the torch profiler records on the CPU allocator (``profile_memory=True``):
the same quantity, read from allocation events. Target (issue 15): < 1% of the plain step's peak plus a few MB.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from overhead_models import MODELS, make_case  # noqa: E402

import nbdiag  # noqa: E402


def step(model, opt, case, x, y, mon=None) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=case.amp):
        loss = case.loss(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if mon is not None:
        mon.step(loss=loss)


def peak_bytes(run, device: str) -> int:
    """Peak bytes allocated on ``device`` during ``run()`` above what was allocated before it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:  # each op's own allocations (positive) and frees (negative), in time order
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return peak


def measure(name: str, device: str, smoke: bool) -> dict[str, float]:
    case = make_case(name, steps=2, device=device, smoke=smoke)
    base = case.build().to(device)
    x, y = case.batches[0]
    result = {}
    for label, every in (("plain", None), ("every=1", 1)):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mon = None if every is None else nbdiag.watch(model, opt, every=1, dense=0, display=False)
        step(model, opt, case, x, y, mon)  # warm-up: optimizer state, caches, kernels
        result[label] = peak_bytes(lambda model=model, opt=opt, mon=mon: step(model, opt, case, x, y, mon), device)
        if mon is not None:
            result["errors"] = len(mon.errors)
            mon.close()
        del model, opt
    extra = result["every=1"] - result["plain"]
    return {
        "model": name,
        "plain_peak_mb": result["plain"] / 2**20,
        "every1_peak_mb": result["every=1"] / 2**20,
        "extra_mb": extra / 2**20,
        "extra_pct": 100.0 * extra / max(result["plain"], 1),
        "errors": result["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", nargs="+", choices=MODELS, default=["mlp", "cnn"])
    parser.add_argument("--smoke", action="store_true", help="tiny GPU-case models")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = [measure(name, args.device, args.smoke) for name in args.model]
    print(f"device {args.device}, torch {torch.__version__}\n")
    print("| model | plain step peak (MB) | every=1 step peak (MB) | extra (MB) | extra (%) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['plain_peak_mb']:.1f} | {r['every1_peak_mb']:.1f} | {r['extra_mb']:.2f} "
            f"| {r['extra_pct']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
