"""The per-tensor reductions nbdiag chose, against the obvious ones, as time ratios measured in one run.

Run: ``python benchmarks/stats_kernels.py [--numel 524288] [--threads 2]``. For each pair, both sides run
interleaved for ``--rounds`` rounds; the figure is the median time of the obvious way divided by nbdiag's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def pairs(numel: int) -> dict[str, tuple[Callable, Callable]]:
    """name -> (the obvious way, nbdiag's way), each computing the same quantity."""
    x = torch.randn(numel) * 0.01 + 3.0
    params = [torch.randn(512, 256), torch.randn(512), torch.randn(512, 512), torch.randn(512), torch.randn(10, 512)]

    def shifted_moments():
        centered = x - x[0]
        return centered.sum(), torch.dot(centered, centered)

    return {
        "variance: var_mean vs shifted sum + dot": (lambda: torch.var_mean(x, correction=0), shifted_moments),
        "non-finite count: isfinite().sum() vs count_nonzero(x - x)": (
            lambda: x.numel() - torch.isfinite(x).sum(),
            lambda: torch.count_nonzero(x - x),
        ),
        "max abs(g) of 5 tensors: _foreach_norm(inf) vs aminmax": (
            lambda: torch._foreach_norm(params, float("inf")),
            lambda: [torch.aminmax(p.reshape(-1)) for p in params],
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=int, default=64 * 32 * 16 * 16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, tensor of {args.numel} fp32 elements")
    print("| reduction | obvious (us) | nbdiag (us) | ratio |\n| --- | ---: | ---: | ---: |")
    for name, (obvious, ours) in pairs(args.numel).items():
        obvious(), ours()  # warm-up
        times = {"obvious": [], "ours": []}
        for _ in range(args.rounds):
            times["obvious"].append(timed(obvious, args.repeats))
            times["ours"].append(timed(ours, args.repeats))
        slow, fast = statistics.median(times["obvious"]), statistics.median(times["ours"])
        print(f"| {name} | {slow * 1e6:.0f} | {fast * 1e6:.0f} | {slow / fast:.1f}x |")


if __name__ == "__main__":
    main()
