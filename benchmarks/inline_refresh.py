"""The inline render path's cost (issue 12): ms per refresh and bytes per update at 10 and 50 layers.

Run: ``python benchmarks/inline_refresh.py [--layers 10 50] [--steps 512] [--refreshes 30]``.

A record of ``--steps`` sampled steps (the default capacity: a long run's full record) of a net alternating
Linear and Tanh; before each refresh one new step is appended, so every update carries new data. Times what the
renderer thread does per update on the inline path (snapshot, panels, figure JSON, text) with
``time.thread_time`` (CPU seconds) and ``time.perf_counter``, and the size of each bundle as JSON. The PNG is
timed apart: the inline path draws it only when training is quiet and at close.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nbdiag.record import Record

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for the shared synthetic entries
from tests.synthetic import synthetic_entry  # noqa: E402


def filled_record(n_layers: int, n_steps: int, rng: np.random.Generator) -> Record:
    record = Record(capacity=512)
    record.update_meta(
        model="MLP",
        num_classes=10,
        layer_types={str(i): "Linear" if i % 2 == 0 else "Tanh" for i in range(n_layers)},
    )
    for step in range(n_steps):
        record.append(synthetic_entry(10 * step, n_layers, rng))
        record.add_scalars(10 * step, {"loss": 2.3 / (1 + step), "acc": step / n_steps})
    return record


def measure(n_layers: int, n_steps: int, refreshes: int) -> dict[str, float]:
    from nbdiag.views import inline
    from nbdiag.views.dashboard import Dashboard

    rng = np.random.default_rng(0)
    record = filled_record(n_layers, n_steps, rng)
    dashboard = Dashboard(SimpleNamespace(record=record, findings=list, predictions=None), display="inline")
    dashboard._inline = inline.InlineView()
    dashboard._inline_bundle(png=False)  # the first one builds the figure
    cpu, wall, sizes = [], [], []
    for i in range(refreshes):
        step = 10 * (n_steps + i)
        record.append(synthetic_entry(step, n_layers, rng))
        record.add_scalars(step, {"loss": 0.1, "acc": 0.9})
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        bundle = dashboard._inline_bundle(png=False)
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
        sizes.append(inline.bundle_bytes(bundle))
    start = time.thread_time()
    dashboard.png()
    png_s = time.thread_time() - start
    return {
        "cpu_ms_median": 1e3 * float(np.median(cpu)),
        "cpu_ms_p95": 1e3 * float(np.percentile(cpu, 95)),
        "wall_ms_median": 1e3 * float(np.median(wall)),
        "kb_median": float(np.median(sizes)) / 1e3,
        "kb_max": float(np.max(sizes)) / 1e3,
        "png_ms": 1e3 * png_s,
        "interval_s": max(1 / inline.MAX_HZ, float(np.max(sizes)) / inline.MAX_BYTES_PER_S),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--refreshes", type=int, default=30)
    args = parser.parse_args()
    print(f"inline refresh, record of {args.steps} sampled steps, {args.refreshes} refreshes")
    print("layers  cpu ms (median, p95)  wall ms  KB/update (median, max)  PNG ms  seconds between updates")
    for n_layers in args.layers:
        r = measure(n_layers, args.steps, args.refreshes)
        print(
            f"{n_layers:>6}  {r['cpu_ms_median']:>8.1f} {r['cpu_ms_p95']:>8.1f}   {r['wall_ms_median']:>7.1f}  "
            f"{r['kb_median']:>10.0f} {r['kb_max']:>8.0f}     {r['png_ms']:>6.0f}  {r['interval_s']:>6.2f}"
        )


if __name__ == "__main__":
    main()
