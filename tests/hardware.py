"""What this machine can run: probes for the hardware features a test's subject needs (see tests/README.md).

Each probe runs the op once, plainly (no nbdiag), and returns None when it runs here, else why not. A test declares
the need with ``@pytest.mark.needs("name")`` (or ``pytest.param(..., marks=pytest.mark.needs("name"))``); conftest
skips it with that reason, so a verdict never depends on the CPU the suite lands on. Probes run once per session.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn


def _cpu_bf16_lstm() -> None:
    """nn.LSTM under CPU bf16 autocast (oneDNN's bf16 RNN primitive: AVX-512 CPUs only)."""
    lstm = nn.LSTM(3, 4, batch_first=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = lstm(torch.randn(2, 3, 3))
    out.float().sum().backward()


PROBES: dict[str, Callable[[], None]] = {
    "cpu_bf16_lstm": _cpu_bf16_lstm,
}


@functools.cache
def missing(feature: str) -> str | None:
    """None when ``feature`` runs on this machine, else a skip reason naming the feature and what failed.

    Raises:
        KeyError: ``feature`` is not a known probe (the message lists them).
    """
    if feature not in PROBES:
        raise KeyError(f"got hardware need {feature!r}, expected one of {sorted(PROBES)} (tests/hardware.py)")
    probe = PROBES[feature]
    try:
        with torch.random.fork_rng():  # a probe leaves the tests' random streams as they were
            probe()
    except RuntimeError as error:  # torch's way of saying a kernel does not exist here
        summary = (probe.__doc__ or feature).strip().splitlines()[0].rstrip(".")
        said = str(error).strip().split(". ")[0]  # oneDNN's first sentence; the rest is how to debug it
        return f"needs {feature}: {summary}; here it raised {type(error).__name__}: {said}"
    return None
