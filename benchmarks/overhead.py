"""Overhead of nbdiag.watch as a ratio to plain training, measured in one process, methods interleaved.

Each method trains its own identical copy of the model (same init, same batches) with a persistent monitor; rounds
interleave the methods so machine noise hits all alike. A round times ``--steps`` steps (a multiple of every
``every``, so sampled steps are counted at their true rate); the figure is the median over rounds of the mean
step time, divided by plain training's.

    python benchmarks/overhead.py --model cnn --rounds 9 --steps 100
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

import nbdiag


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


MODELS = {"cnn": small_cnn, "mlp": mlp}


def nbdiag_method(every: int | None) -> Callable:
    """Attach nbdiag sampling every ``every`` steps (None: attached, never sampled after the first step)."""

    def attach(model, opt):
        if every is None:
            mon = nbdiag.watch(model, opt, every=10**9, dense=0, display=False)
            mon.step()  # step 0 was sampled; from here on nothing is
            return mon
        return nbdiag.watch(model, opt, every=every, dense=0, display=False)

    return attach


METHODS: dict[str, Callable | None] = {
    "plain": None,
    "nbdiag idle": nbdiag_method(None),
    "nbdiag every=100": nbdiag_method(100),
    "nbdiag every=10": nbdiag_method(10),
    "nbdiag every=1": nbdiag_method(1),
}


class Runner:
    """One method's model, optimizer and (optional) monitor."""

    def __init__(self, base: nn.Module, attach: Callable | None) -> None:
        self.model = copy.deepcopy(base)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.monitor = attach(self.model, self.opt) if attach else None

    def run(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Train over ``batches``; return the mean seconds per step."""
        start = time.perf_counter()
        for x, y in batches:
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad()
            if self.monitor is not None:
                self.monitor.step(loss=loss)
        return (time.perf_counter() - start) / len(batches)


def measure(model_name: str, rounds: int, steps: int, batch_size: int, methods: list[str]) -> dict[str, float]:
    """Median (over rounds) of mean step time per method, in seconds."""
    torch.manual_seed(0)
    base = MODELS[model_name]()
    batches = [(torch.randn(batch_size, 1, 16, 16), torch.randint(0, 10, (batch_size,))) for _ in range(steps)]
    runners = {name: Runner(base, METHODS[name]) for name in methods}
    for runner in runners.values():  # warm-up round, not timed
        runner.run(batches[: max(10, steps // 10)])
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name].append(runner.run(batches))
    for runner in runners.values():
        if runner.monitor is not None:
            runner.monitor.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100, help="steps per round (a multiple of 100)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    medians = measure(args.model, args.rounds, args.steps, args.batch_size, list(METHODS))
    plain = medians["plain"]
    print(f"model={args.model} batch={args.batch_size} rounds={args.rounds} steps/round={args.steps}")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads")
    print(f"{'method':<20} {'ms/step':>9} {'ratio':>7}")
    for name, seconds in medians.items():
        print(f"{name:<20} {seconds * 1e3:>9.3f} {seconds / plain:>7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "seconds": medians, "ratio": {k: v / plain for k, v in medians.items()}}, f)


if __name__ == "__main__":
    main()
