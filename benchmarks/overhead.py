"""Overhead of nbdiag and of the tools users would otherwise use, as a ratio to plain training (issue 7).

One process, one model and one batch pool per case; every method trains its own identical copy (same init, same
batches, same optimizer). Rounds interleave the methods so machine noise hits all alike. A round times ``--steps``
steps, a multiple of every method's sampling period, so sampled steps count at their true rate (a method too slow
to run them within ``--max-round-s`` times fewer, whole periods); the figure is the median over rounds of the mean
step time, divided by plain training's (plain's ratio is exactly 1).

    python benchmarks/overhead.py --rounds 7                               # CPU cases: mlp and cnn, all methods
    python benchmarks/overhead.py --device cuda --model resnet50 gpt2      # GPU cases (bf16 autocast)
    python benchmarks/overhead.py --smoke --rounds 1 --steps 2 --model resnet50 gpt2   # tiny, any device

Methods whose package is missing, or that fail on a case, are skipped with a printed note. See README.md here.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from overhead_methods import DISTRIBUTIONS, Method, all_methods, wandb_finish  # noqa: E402
from overhead_models import CPU_MODELS, GPU_MODELS, MODELS, Case, make_case  # noqa: E402


class Runner:
    """One method's model copy, optimizer and attached tool."""

    def __init__(self, case: Case, base: torch.nn.Module, method: Method, device: str, momentum: float) -> None:
        self.case, self.method, self.device = case, method, device
        model = copy.deepcopy(base).to(device)
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum)
        self.model = method.setup(model, self.opt, case)
        self.step = 0
        self.steps = 0  # timed steps per round, set after the warm-up

    def autocast(self):
        """bf16 autocast for the GPU cases, nothing otherwise."""
        if self.case.amp:
            return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], steps: int) -> float:
        """Train ``steps`` steps cycling through ``batches``; return the mean seconds per step."""
        synchronize(self.device)
        start = time.perf_counter()
        for i in range(steps):
            x, y = batches[i % len(batches)]
            with self.autocast():
                out = self.model(x)
                loss = self.method.loss(out, y)
            self.method.backward(loss, out, y, self.step)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.method.end_step(loss, self.step)
            self.step += 1
        synchronize(self.device)
        return (time.perf_counter() - start) / steps


def synchronize(device: str) -> None:
    """Wait for queued accelerator work, so wall time covers it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@dataclass
class Result:
    """One case's outcome: median seconds per step for each method that ran, and notes on those that did not."""

    case: str
    description: str
    seconds: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)  # timed steps per round
    skipped: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # figures that are suspect, e.g. hooks that failed

    def ratio(self) -> dict[str, float]:
        """Seconds per step divided by plain training's."""
        plain = self.seconds["plain"]
        return {name: s / plain for name, s in self.seconds.items()}


def steps_per_round(seconds_per_step: float, period: int, steps: int, max_round_s: float) -> int:
    """``steps``, or for a method too slow to run them in ``max_round_s``, the most whole periods that fit (>= 1)."""
    if seconds_per_step * steps <= max_round_s:
        return steps
    return min(steps, period * max(1, int(max_round_s / seconds_per_step / period)))


def start_runners(case: Case, methods: list[Method], args: argparse.Namespace, result: Result) -> dict[str, Runner]:
    """Set every available method up and warm it up (untimed); a method that fails is skipped with its error.

    The warm-up's step time sets how many steps a round times (see ``steps_per_round``).
    """
    torch.manual_seed(0)
    base = case.build()
    runners = {}
    for method in methods:
        reason = method.unavailable()
        if reason is None:
            try:
                runner = Runner(case, base, method, args.device, args.momentum)
                warm = runner.run(case.batches, args.warmup)
                runner.steps = steps_per_round(warm, method.period, args.steps, args.max_round_s)
                runners[method.name] = runner
                continue
            except Exception as e:  # noqa: BLE001 - a failing anchor is reported, not fatal
                reason = failure(e)
                close_quietly(method)
        skip(method.name, reason, result)
    return runners


def failure(e: Exception) -> str:
    """One line for a method that raised (the traceback too when NBDIAG_BENCH_DEBUG is set)."""
    if os.environ.get("NBDIAG_BENCH_DEBUG"):
        traceback.print_exc()
    return f"failed: {type(e).__name__}: {e}".splitlines()[0]


def skip(name: str, reason: str, result: Result) -> None:
    """Record and print why a method has no figure (plain training must never fail)."""
    if name == "plain":
        raise RuntimeError(f"plain training failed on {result.case}: {reason}")
    result.skipped[name] = reason
    print(f"  skipped {name}: {reason}", flush=True)


def close_quietly(method: Method) -> None:
    """Detach a method's tool, ignoring errors of a half-set-up one."""
    with contextlib.suppress(Exception):
        method.close()


def measure(case: Case, methods: list[Method], args: argparse.Namespace) -> Result:
    """Median over ``args.rounds`` of each method's mean step time, methods interleaved round by round."""
    result = Result(case.name, case.description)
    runners = start_runners(case, methods, args, result)
    result.rounds = {name: [] for name in runners}
    for r in range(args.rounds):
        for name, runner in list(runners.items()):
            try:
                result.rounds[name].append(runner.run(case.batches, runner.steps))
            except Exception as e:  # noqa: BLE001
                close_quietly(runners.pop(name).method)
                del result.rounds[name]
                skip(name, failure(e), result)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    for name, runner in runners.items():
        if problem := runner.method.problems():
            result.problems[name] = problem
        close_quietly(runner.method)
    result.seconds = {name: statistics.median(values) for name, values in result.rounds.items()}
    result.steps = {name: runner.steps for name, runner in runners.items()}
    return result


def machine_info(device: str) -> dict[str, str]:
    """CPU model, threads, accelerator, OS, Python and the date."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "os": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def versions() -> dict[str, str]:
    """Installed versions of torch, nbdiag and every anchor's package ('-' when not installed)."""
    out = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def markdown(result: Result) -> str:
    """``method | ms/step | ratio`` table for one case, skipped methods listed under it."""
    ratio, most = result.ratio(), max(result.steps.values())
    lines = [f"### {result.case}: {result.description}", "", "| method | ms/step | ratio |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {s * 1e3:.3f} | {ratio[name]:.3f} |" for name, s in result.seconds.items()]
    notes = [f"{name}: {n} steps per round (too slow for more)" for name, n in result.steps.items() if n < most]
    notes += [f"skipped {name}: {why}" for name, why in result.skipped.items()]
    notes += [f"WARNING {name}: {why}" for name, why in result.problems.items()]
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def header(args: argparse.Namespace, info: dict[str, str], vers: dict[str, str]) -> str:
    """Machine, versions, date and settings, as markdown."""
    machine = ", ".join(f"{k} {v}" for k, v in info.items())
    installed = ", ".join(f"{k} {v}" for k, v in vers.items())
    settings = (
        f"rounds {args.rounds}, steps/round {args.steps} (at most {args.max_round_s:g} s a method-round), "
        f"warm-up {args.warmup} steps, SGD lr 0.01 momentum {args.momentum:g}, smoke {args.smoke}"
    )
    return f"## nbdiag overhead\n\n- machine: {machine}\n- versions: {installed}\n- settings: {settings}\n"


def check_steps(steps: int, methods: list[Method]) -> None:
    """Warn when ``steps`` is not a multiple of every sampling period (sampled steps would be over/under-counted)."""
    period = math.lcm(*(m.period for m in methods))
    if steps % period:
        print(f"note: --steps {steps} is not a multiple of {period}: sampled steps are not counted at their true rate")


def select_methods(patterns: list[str] | None) -> list[Method]:
    """All methods, or those whose name contains one of ``patterns`` (plain always included)."""
    methods = all_methods()
    if not patterns:
        return methods
    return [m for m in methods if m.name == "plain" or any(p in m.name for p in patterns)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS, help="cases (default: mlp cnn on CPU, all on CUDA)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round (a multiple of 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per method before the first round")
    parser.add_argument(
        "--max-round-s",
        type=float,
        default=4.0,
        help="a method whose warm-up says STEPS would take longer times fewer steps (whole sampling periods)",
    )
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0: Cockpit's documented setting)")
    parser.add_argument("--batch-size", type=int, help="override the case's batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--methods", nargs="+", help="only methods whose name contains one of these (and plain)")
    parser.add_argument("--smoke", action="store_true", help="tiny GPU-case models (runs on a CPU, for tests)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = list(CPU_MODELS) + (list(GPU_MODELS) if args.device.startswith("cuda") else [])
    return args


def run(args: argparse.Namespace) -> list[Result]:
    """Measure every requested case; print and optionally write the results."""
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    info, vers = machine_info(args.device), versions()
    print(header(args, info, vers), flush=True)
    check_steps(args.steps, select_methods(args.methods))
    results = []
    try:
        for name in args.model:
            print(f"case {name} ...", flush=True)
            case = make_case(name, steps=args.steps, device=args.device, smoke=args.smoke, batch_size=args.batch_size)
            results.append(measure(case, select_methods(args.methods), args))
            print("\n" + markdown(results[-1]) + "\n", flush=True)
    finally:
        wandb_finish()
    if args.json:
        write_json(args.json, args, info, vers, results)
    return results


def write_json(path: str, args: argparse.Namespace, info: dict, vers: dict, results: list[Result]) -> None:
    """Settings, machine, versions and, per case, seconds (median and per round), ratios and skipped methods."""
    payload = {
        "args": vars(args),
        "machine": info,
        "versions": vers,
        "cases": {
            r.case: {
                "description": r.description,
                "seconds": r.seconds,
                "ratio": r.ratio(),
                "rounds": r.rounds,
                "steps_per_round": r.steps,
                "skipped": r.skipped,
                "problems": r.problems,
            }
            for r in results
        },
    }
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Entry point (``argv`` for tests)."""
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
