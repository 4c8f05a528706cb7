"""Dashboard refresh cost with 50 layers (issue 7: p95 <= 50 ms in the kernel), and its share of a training loop.

Run: ``python benchmarks/dashboard_refresh.py [--layers 50] [--steps 512] [--refreshes 100]``.

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
from tests.synthetic import synthetic_entry  # noqa: E402


def refresh_times(n_layers: int, n_steps: int, refreshes: int) -> np.ndarray:
    from nbdiag.views.dashboard import Dashboard

    rng = np.random.default_rng(0)
    record = Record(capacity=512)
    record.update_meta(
        num_classes=10, layer_types={str(i): "Linear" if i % 2 == 0 else "Tanh" for i in range(n_layers)}
    )
    for step in range(n_steps):
        record.append(synthetic_entry(10 * step, n_layers, rng))
        record.add_scalars(10 * step, {"loss": 2.3 / (1 + step), "acc": step / n_steps})
    dashboard = Dashboard(SimpleNamespace(record=record, findings=list, predictions=None))
    dashboard.widget  # noqa: B018 - builds the FigureWidget once
    times = []
    for i in range(refreshes):
        step = 10 * (n_steps + i)
        record.append(synthetic_entry(step, n_layers, rng))
        record.add_scalars(step, {"loss": 0.1, "acc": 0.9})
        start = time.perf_counter()
        dashboard.refresh()
        times.append(time.perf_counter() - start)
    dashboard.close()
    return np.array(times)


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
    args = parser.parse_args()
    times = refresh_times(args.layers, args.steps, args.refreshes) * 1e3
    print(
        f"refresh, {args.layers} layers x {args.steps} sampled steps: median {np.median(times):.1f} ms, "
        f"p95 {np.percentile(times, 95):.1f} ms, max {times.max():.1f} ms (bar: p95 <= 50 ms)"
    )
    share = training_share(args.layers, args.train_steps)
    print(
        f"training {args.layers}-layer MLP, {args.train_steps} steps: loop {share['loop_s']:.2f} s with the renderer, "
        f"{share['baseline_s']:.2f} s without; renderer CPU {share['render_cpu_s'] * 1e3:.0f} ms in "
        f"{share['refreshes']} refreshes = {100 * share['render_cpu_s'] / share['loop_s']:.2f}% of the loop "
        "(bar: <= 1%)"
    )


if __name__ == "__main__":
    main()
