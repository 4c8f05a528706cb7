"""Dashboard refresh cost with 50 layers (issue 7: p95 <= 50 ms in the kernel), and its share of a training loop.

Run: ``python benchmarks/dashboard_refresh.py [--layers 50] [--steps 512] [--refreshes 100] [--shape gpt]
[--no-training]``.

``--shape mlp`` (default) names the layers ``0..L-1`` (Linear / Tanh, no repeated blocks); ``--shape gpt`` names
them as ``benchmarks/overhead_models.GPT`` does (``blocks.<i>.attn.qkv``...), so the depth x role views are drawn.
Each refresh is timed in wall time and in this process's CPU time (``time.process_time``: the figure to quote on a
shared, loaded machine).

1. Refresh: a record of ``--steps`` sampled steps of a 50-layer net; before each refresh one new step is
   appended (as during training), so every refresh sends new data. Times ``Dashboard.refresh()`` (snapshot, panels,
   diff, one batched FigureWidget update, findings, status). Without a front end the comm send is a no-op.
2. Share of training: a 50-layer MLP trains under ``nbdiag.watch`` with and without a running dashboard
   renderer; reports the renderer's CPU time as a share of the loop's wall time, and the loop's slowdown.
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
from tests.synthetic import gpt_layers, synthetic_entry  # noqa: E402


def refresh_times(n_layers: int, n_steps: int, refreshes: int, shape: str = "mlp") -> tuple[np.ndarray, np.ndarray]:
    """(wall, CPU) seconds of each of ``refreshes`` refreshes."""
    from nbdiag.views.dashboard import Dashboard

    rng = np.random.default_rng(0)
    record = Record(capacity=512)
    if shape == "gpt":
        types = gpt_layers(n_layers)
        names: tuple[str, ...] | None = tuple(types)
    else:
        types = {str(i): "Linear" if i % 2 == 0 else "Tanh" for i in range(n_layers)}
        names = None
    record.update_meta(num_classes=10, layer_types=types)
    for step in range(n_steps):
        record.append(synthetic_entry(10 * step, n_layers, rng, names))
        record.add_scalars(10 * step, {"loss": 2.3 / (1 + step), "acc": step / n_steps})
    dashboard = Dashboard(SimpleNamespace(record=record, findings=list, predictions=None))
    dashboard.widget  # noqa: B018 - builds the FigureWidget once
    wall, cpu = [], []
    for i in range(refreshes):
        step = 10 * (n_steps + i)
        record.append(synthetic_entry(step, n_layers, rng, names))
        record.add_scalars(step, {"loss": 0.1, "acc": 0.9})
        start, start_cpu = time.perf_counter(), time.process_time()
        dashboard.refresh()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    dashboard.close()
    return np.array(wall), np.array(cpu)


def training_share(n_layers: int, steps: int) -> dict[str, float]:
    import torch
    from torch import nn

    import nbdiag
    from nbdiag.views.dashboard import Dashboard

    def run(with_dashboard: bool) -> tuple[float, Dashboard | None]:
        torch.manual_seed(0)
        blocks = [m for _ in range(n_layers // 2) for m in (nn.Linear(64, 64), nn.Tanh())]
        model = nn.Sequential(*blocks)
        opt = torch.optim.SGD(model.parameters(), lr=1e-2)
        x = torch.randn(64, 64)
        dashboard = None
        with nbdiag.watch(model, opt, every=10, display=False) as mon:
            if with_dashboard:
                dashboard = Dashboard(mon)
                dashboard.start()
            start = time.perf_counter()
            for _ in range(steps):
                loss = model(x).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                mon.step(loss=loss)
            wall = time.perf_counter() - start
        if dashboard is not None:
            dashboard.close()
        return wall, dashboard

    base, _ = run(False)
    wall, dashboard = run(True)
    render = float(np.sum(dashboard.renderer.costs))
    return {"loop_s": wall, "baseline_s": base, "render_cpu_s": render, "refreshes": dashboard.renderer.refreshes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--refreshes", type=int, default=100)
    # long enough for the renderer's budget to govern: its first redraw is immediate, later ones are spaced
    parser.add_argument("--train-steps", type=int, default=4000)
    parser.add_argument("--shape", choices=("mlp", "gpt"), default="mlp")
    parser.add_argument("--no-training", action="store_true", help="skip the share-of-training measurement")
    args = parser.parse_args()
    wall, cpu = refresh_times(args.layers, args.steps, args.refreshes, args.shape)
    for what, times in (("wall", wall * 1e3), ("CPU", cpu * 1e3)):
        print(
            f"refresh ({what}), {args.layers} layers ({args.shape}) x {args.steps} sampled steps: median "
            f"{np.median(times):.1f} ms, p95 {np.percentile(times, 95):.1f} ms, max {times.max():.1f} ms "
            "(bar: p95 <= 50 ms)"
        )
    if args.no_training:
        return
    share = training_share(args.layers, args.train_steps)
    print(
        f"training {args.layers}-layer MLP, {args.train_steps} steps: loop {share['loop_s']:.2f} s with the renderer, "
        f"{share['baseline_s']:.2f} s without; renderer CPU {share['render_cpu_s'] * 1e3:.0f} ms in "
        f"{share['refreshes']} refreshes = {100 * share['render_cpu_s'] / share['loop_s']:.2f}% of the loop "
        "(bar: <= 1%)"
    )


if __name__ == "__main__":
    main()
