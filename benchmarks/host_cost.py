"""Host cost per hooked layer (issue 21, part 1): nbdiag's Python and dispatch time where compute is negligible.

    python benchmarks/host_cost.py                 # 100 x (Linear(8, 8) + ReLU), batch 1, one torch thread
    python benchmarks/host_cost.py --blocks 50 --rounds 9 --profile
    python benchmarks/host_cost.py --device cuda    # wall time, the device synchronized after each timed run

The proxy: ``--blocks`` x (Linear(8, 8) + ReLU) at batch 1, so what an ``every=1`` step adds over a plain step is
nbdiag's host work (on a GPU the kernels run asynchronously; this Python and dispatch time does not). Printed:

- plain and every=1 CPU time per step (this thread's CPU time, interleaved rounds, median; robust to other processes
  on the machine, unlike wall time), the ratio, and the added microseconds per hooked layer and per hooked tensor
  (a layer's output and its output gradient, each parameter's value, gradient and update);
- aten ops nbdiag dispatches per sampled step, and per hooked tensor (exact, a dispatch mode inside the guarded hooks
  and the step's flush);
- with ``--profile``: where the added time goes (cProfile): Python in nbdiag's own functions (self time) against
  time inside torch calls made from them (dispatch + kernels), and the top functions.

The goal of issue 21 is <= 30 us per layer (an every=1 step <= 2x a plain one here). Results: ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import torch
from torch import nn

import nbdiag
from nbdiag import capture, monitor

GOAL_US_PER_LAYER = 30.0


def proxy(blocks: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[m for _ in range(blocks) for m in (nn.Linear(8, 8), nn.ReLU())])


def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, mon=None) -> None:
    loss = model(x).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if mon is not None:
        mon.step(loss=loss)


def cpu_per_step(model, opt, x, steps: int, mon=None) -> float:
    """Seconds per step: this thread's CPU time on CPU; on CUDA wall time, the device synchronized before and after
    (the kernels are asynchronous there, so what a step costs is what the host spends launching them)."""
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    clock = time.perf_counter if cuda else time.thread_time
    start = clock()
    for _ in range(steps):
        step(model, opt, x, mon)
    if cuda:
        torch.cuda.synchronize()
    return (clock() - start) / steps


def interleaved(blocks: int, rounds: int, steps: int, device: str = "cpu") -> tuple[list[float], list[float]]:
    x = torch.randn(1, 8, device=device)
    plain_model, watched_model = proxy(blocks).to(device), proxy(blocks).to(device)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=1e-3)
    watched_opt = torch.optim.SGD(watched_model.parameters(), lr=1e-3)
    mon = nbdiag.watch(watched_model, watched_opt, every=1, display=False)
    cpu_per_step(plain_model, plain_opt, x, 5)
    cpu_per_step(watched_model, watched_opt, x, 5, mon)
    plain, watched = [], []
    for _ in range(rounds):
        plain.append(cpu_per_step(plain_model, plain_opt, x, steps))
        watched.append(cpu_per_step(watched_model, watched_opt, x, steps, mon))
    mon.close()
    return plain, watched


class NbdiagOps:
    """Counts the aten ops nbdiag dispatches: inside its guarded hooks and its step flush (exact, a dispatch mode).

    Monitors must be created inside the ``with`` block (their hooks are guarded when made)::

        with NbdiagOps() as ops:
            mon = nbdiag.watch(model, opt, every=1, display=False)
            n = ops.count(lambda: one_training_step(mon))
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Count(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.ops += counter.depth > 0
                return func(*args, **(kwargs or {}))

        self.mode, self.depth, self.ops = Count(), 0, 0

    def _counted(self, fn):
        def run(*args, **kwargs):
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1

        return run

    def __enter__(self) -> NbdiagOps:
        self._saved = capture.Capture.guard, monitor.Monitor._flush
        guard, flush = self._saved
        capture.Capture.guard = lambda capture_self, hook: guard(capture_self, self._counted(hook))
        monitor.Monitor._flush = self._counted(flush)
        return self

    def __exit__(self, *exc) -> None:
        capture.Capture.guard, monitor.Monitor._flush = self._saved

    def count(self, run) -> int:
        """nbdiag's aten ops while ``run()`` runs."""
        self.ops = 0
        with self.mode:
            run()
        return self.ops


def ops_per_step(blocks: int) -> int:
    """aten ops dispatched inside nbdiag's guarded hooks and its step flush during one sampled step."""
    with NbdiagOps() as ops:
        model, x = proxy(blocks), torch.randn(1, 8)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        mon = nbdiag.watch(model, opt, every=1, display=False)
        step(model, opt, x, mon)
        counted = ops.count(lambda: step(model, opt, x, mon))
        mon.close()
    return counted


def profile(blocks: int, steps: int, top: int) -> None:
    model, x = proxy(blocks), torch.randn(1, 8)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    mon = nbdiag.watch(model, opt, every=1, display=False)
    cpu_per_step(model, opt, x, 5, mon)
    profiler = cProfile.Profile()
    profiler.enable()
    cpu_per_step(model, opt, x, steps, mon)
    profiler.disable()
    mon.close()
    stats = pstats.Stats(profiler).stats
    python_self = sum(tt for (file, _, _), (_, _, tt, _, _) in stats.items() if "/nbdiag/" in file)
    torch_calls = 0.0  # time in C calls (torch ops and the rest) made from nbdiag's functions
    for (file, _, _func), (_, _, tt, _, callers) in stats.items():
        if file == "~":
            from_nbdiag = sum(c[3] for caller, c in callers.items() if "/nbdiag/" in caller[0])
            torch_calls += min(tt, from_nbdiag)
    per_step = 1e6 / steps
    print(
        f"\ncProfile (inflates Python; read as shares), per step: nbdiag Python self {python_self * per_step:.0f} us, "
    )
    print(f"  C calls made from nbdiag (torch dispatch + kernels, builtins) {torch_calls * per_step:.0f} us")
    rows = sorted(
        (
            (tt * per_step, nc / steps, f"{file.split('/nbdiag/')[-1]}:{func}")
            for (file, _, func), (_, nc, tt, _, _) in stats.items()
            if "/nbdiag/" in file
        ),
        reverse=True,
    )
    print(f"  top {top} nbdiag functions by self time (us/step, calls/step):")
    for us, calls, name in rows[:top]:
        print(f"    {us:8.0f}  {calls:7.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--device", default="cpu", help="cpu (CPU time) or cuda (wall time, synchronized)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    plain, watched = interleaved(args.blocks, args.rounds, args.steps, args.device)
    p, w = statistics.median(plain), statistics.median(watched)
    layers = 2 * args.blocks
    tensors = 2 * layers + 3 * 2 * args.blocks  # outputs + output gradients; weight/bias value, gradient, update
    ops = ops_per_step(args.blocks)
    clock = "wall" if args.device != "cpu" else "CPU"
    print(f"torch {torch.__version__}, one thread, {args.blocks} x (Linear(8, 8) + ReLU), batch 1, {args.device}")
    print(f"  plain {p * 1e3:.2f} ms {clock}/step, every=1 {w * 1e3:.2f} ms: ratio {w / p:.2f}")
    print(
        f"  added: {(w - p) / layers * 1e6:.0f} us per hooked layer ({layers} layers), {(w - p) / tensors * 1e6:.0f} us"
    )
    print(f"  per hooked tensor ({tensors}); goal <= {GOAL_US_PER_LAYER:.0f} us per layer")
    print(f"  aten ops per sampled step in nbdiag (counted on CPU): {ops} ({ops / tensors:.1f} per hooked tensor)")
    if args.profile:
        profile(args.blocks, args.steps * args.rounds, args.top)


if __name__ == "__main__":
    main()
