"""How long the init lab takes to re-run the lecture's 10 x 500 network (1,000 samples) after a control changes.

A benchmark, not a test: wall time depends on the machine's load. Run: ``python benchmarks/lab_rerun.py``.
"""

from __future__ import annotations

import statistics

from nbdiag.labs import init_lab


def main(rounds: int = 5) -> None:
    lab = init_lab(display=False)
    times = []
    for i in range(rounds):
        lab.update(activation="relu" if i % 2 else "tanh", init="he" if i % 2 else "xavier")
        times.append(lab.elapsed_s)
    median_ms, min_ms = statistics.median(times) * 1000, min(times) * 1000
    print(f"init lab re-run: median {median_ms:.0f} ms over {rounds} (min {min_ms:.0f})")


if __name__ == "__main__":
    main()
