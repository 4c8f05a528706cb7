"""The dashboard of a deep model: ``savefig`` time and HTML report size of ``benchmarks/overhead_models.GPT``.

Run: ``python benchmarks/deep_dashboard.py [--blocks 48] [--steps 200]``.

Trains the GPT layout (d = 64, 4 heads, vocab 64, context 32; 48 blocks = 340 hooked layers) for ``--steps``
sampled steps (``every=1``) on random tokens, then writes ``savefig`` (PNG) and ``to_html`` once each (after one
warm-up ``savefig``) and reports this process's CPU time for each (``time.process_time``: the figure to quote on a
shared machine), the wall time, and the file sizes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import nbdiag

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead_models import GPT  # noqa: E402


def trained(blocks: int, steps: int) -> nbdiag.Monitor:
    torch.manual_seed(0)
    model = GPT(vocab=64, context=32, d=64, heads=4, layers=blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with nbdiag.watch(model, opt, every=1, display=False) as mon:
        for _ in range(steps):
            idx = torch.randint(0, 64, (4, 32))
            loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=loss)
    return mon


def timed(write: object, path: Path) -> tuple[float, float, int]:
    """(CPU s, wall s, bytes) of one ``write(path)``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    write(path)  # type: ignore[operator]
    return time.process_time() - start_cpu, time.perf_counter() - start, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=48)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mon = trained(args.blocks, args.steps)
    layers = len(mon.record.layers("activation"))
    with tempfile.TemporaryDirectory() as folder:
        mon.savefig(Path(folder) / "warm.png")
        for name, write in (("savefig", mon.savefig), ("to_html", mon.to_html)):
            cpu, wall, size = timed(write, Path(folder) / f"out.{'png' if name == 'savefig' else 'html'}")
            print(
                f"{name}, GPT {args.blocks} blocks ({layers} layers) x {args.steps} sampled steps: "
                f"CPU {cpu:.2f} s, wall {wall:.2f} s, {size / 1e6:.2f} MB"
            )


if __name__ == "__main__":
    main()
