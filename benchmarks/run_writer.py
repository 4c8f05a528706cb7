"""What writing a run directory costs the training thread: Parquet I/O on a writer thread vs inline (issue 11).

Three copies of one MLP train on the same batches with every step sampled (the writer's worst case: one record
entry per step, a segment every 10): ``no run_dir``; ``run_dir`` as nbdiag does it now (the training thread only
queues record events); and ``inline``, the previous design, where the segment is built and written inside
``Record.append`` on the training thread (the writer's own event handler subscribed directly). Rounds interleave
the three; the figures are medians over rounds of the mean and the 99th-percentile step time, and of the time the
training thread spent inside the record's listeners (the writer's share of a step, free of the model's noise).

    python benchmarks/run_writer.py                  # ~1 min on 2 cores
    python benchmarks/run_writer.py --steps 200 --rounds 5 --width 512
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from nbdiag.runs.writer import RunWriter

MODES = ("no run_dir", "run_dir (writer thread)", "inline I/O (before)")


def make_model(width: int, depth: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def watch(mode: str, model: nn.Module, opt: torch.optim.Optimizer, folder: Path, spent: list[float]):
    """The monitor of ``mode``; its listeners add the seconds they take to ``spent``."""
    if mode == MODES[1]:
        mon = nbdiag.watch(model, opt, every=1, display=False, run_dir=folder)
    else:
        mon = nbdiag.watch(model, opt, every=1, display=False)
    if mode == MODES[2]:  # the writer's handler on the training thread: the design before the writer thread
        writer = RunWriter(folder, mon.record, live=False)
        mon.record.subscribe(writer._write_event)
    mon.record.listeners = [timed(listener, spent) for listener in mon.record.listeners]
    return mon


def timed(listener, spent: list[float]):
    def call(event, payload) -> None:
        start = time.perf_counter()
        listener(event, payload)
        spent.append(time.perf_counter() - start)

    return call


def round_times(mode: str, args: argparse.Namespace, batches: list, folder: Path) -> tuple[np.ndarray, float]:
    """Seconds per step of one round in ``mode`` (a fresh model, monitor and run directory), and the seconds per
    step the training thread spent in the record's listeners."""
    model = make_model(args.width, args.depth)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    spent: list[float] = []
    mon = watch(mode, model, opt, folder, spent)
    times = []
    for x, y in batches:
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss=loss)
        times.append(time.perf_counter() - start)
    in_listeners = sum(spent) / len(batches)
    mon.close()
    return np.asarray(times), in_listeners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=8, help="linear layers (each followed by a ReLU)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(args.steps)]
    results: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:  # warm-up round, untimed
            round_times(mode, args, batches[:10], Path(tmp) / "warmup")
        for r in range(args.rounds):
            for mode in MODES:
                times, in_listeners = round_times(mode, args, batches, Path(tmp) / f"run{r}")
                results[mode].append((float(times.mean()), float(np.percentile(times, 99)), in_listeners))
    print(f"torch {torch.__version__}, {args.threads} threads; MLP {args.depth} x {args.width}, batch 64, every=1")
    print("| mode | mean ms/step | p99 ms/step | in record listeners, ms/step |\n| --- | --- | --- | --- |")
    for mode, rows in results.items():
        mean, p99, listeners = (statistics.median(row[i] for row in rows) * 1e3 for i in range(3))
        print(f"| {mode} | {mean:.2f} | {p99:.2f} | {listeners:.3f} |")


if __name__ == "__main__":
    main()
