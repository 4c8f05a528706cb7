"""Extra peak device memory of nbdiag every=1: a plain training step against a sampled one, same model and batch.

    python benchmarks/device_memory.py --device cuda --model resnet50 gpt2 --json mem.json
    python benchmarks/device_memory.py --smoke --model cnn gpt2                 # any device, tiny models
    python benchmarks/device_memory.py --model wide --optimizer adamw           # issue 21: 2 x Linear(4096, 4096)

On CUDA the figure is ``torch.cuda.max_memory_allocated`` over one step (peak reset before it). Elsewhere it is the
peak of the running sum of the allocations and frees the torch profiler records on the CPU allocator
(``profile_memory=True``), one event each, in time order: the same quantity. Target (issue 15): < 1% of the plain
step's peak plus a few MB.
Issue 21: on ``wide`` (two ``Linear(4096, 4096)``, 128 MB of fp32 parameters) with AdamW, the extra must stay under
10% of the parameter bytes: update ratios may not snapshot the parameters.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from overhead_models import MODELS, Case, make_case  # noqa: E402
from torch import nn  # noqa: E402

import nbdiag  # noqa: E402

WIDE = 4096  # issue 21's memory case: two Linear(WIDE, WIDE)
OPTIMIZERS = {"sgd": lambda params: torch.optim.SGD(params, lr=0.01), "adamw": lambda params: torch.optim.AdamW(params)}


def wide_case(device: str, batch_size: int = 64) -> Case:
    """Two ``Linear(4096, 4096)`` with a ReLU between (128 MB of fp32 parameters), one random batch."""
    torch.manual_seed(0)

    def build() -> nn.Module:
        return nn.Sequential(nn.Linear(WIDE, WIDE), nn.ReLU(), nn.Linear(WIDE, WIDE))

    batch = (torch.randn(batch_size, WIDE, device=device), torch.randint(0, WIDE, (batch_size,), device=device))
    return Case("wide", build, [batch], False, f"2 x Linear({WIDE}, {WIDE}), batch {batch_size}, fp32")


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
    level = peak = 0
    for nbytes in _allocation_events(prof):  # every allocation (positive) and free (negative), in time order
        level += nbytes
        peak = max(peak, level)
    return peak


def _allocation_events(prof: torch.profiler.profile) -> list[int]:
    """The bytes of each CPU allocation (+) and free (-) the profiler saw, in time order. Each one, not each op's
    net "self" usage: an op's frees of memory its children allocated (an optimizer step freeing its temporaries)
    are stamped with the op's start, which put them before the allocations and hid the peak."""
    records = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    return [e.nbytes() for e in sorted(records, key=lambda e: e.start_ns())]


def measure(name: str, device: str, smoke: bool, optimizer: str = "sgd") -> dict[str, float]:
    case = wide_case(device) if name == "wide" else make_case(name, steps=2, device=device, smoke=smoke)
    base = case.build().to(device)
    x, y = case.batches[0]
    result = {}
    for label, every in (("plain", None), ("every=1", 1)):
        model = copy.deepcopy(base)
        opt = OPTIMIZERS[optimizer](model.parameters())
        mon = None if every is None else nbdiag.watch(model, opt, every=1, dense=0, display=False)
        step(model, opt, case, x, y, mon)  # warm-up: optimizer state, caches, kernels
        result[label] = peak_bytes(lambda model=model, opt=opt, mon=mon: step(model, opt, case, x, y, mon), device)
        if mon is not None:
            result["errors"] = len(mon.errors)
            mon.close()
        del model, opt
    extra = result["every=1"] - result["plain"]
    param_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    return {
        "model": name,
        "optimizer": optimizer,
        "param_mb": param_bytes / 2**20,
        "extra_pct_of_params": 100.0 * extra / max(param_bytes, 1),
        "plain_peak_mb": result["plain"] / 2**20,
        "every1_peak_mb": result["every=1"] / 2**20,
        "extra_mb": extra / 2**20,
        "extra_pct": 100.0 * extra / max(result["plain"], 1),
        "errors": result["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", nargs="+", choices=(*MODELS, "wide"), default=["mlp", "cnn"])
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd")
    parser.add_argument("--smoke", action="store_true", help="tiny GPU-case models")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = [measure(name, args.device, args.smoke, args.optimizer) for name in args.model]
    print(f"device {args.device}, torch {torch.__version__}, optimizer {args.optimizer}\n")
    print(
        "| model | parameters (MB) | plain step peak (MB) | every=1 step peak (MB) | extra (MB) | extra (%) "
        "| extra (% of parameters) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['param_mb']:.1f} | {r['plain_peak_mb']:.1f} | {r['every1_peak_mb']:.1f} "
            f"| {r['extra_mb']:.2f} | {r['extra_pct']:.2f} | {r['extra_pct_of_params']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
