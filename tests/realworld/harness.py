"""What every real-world program must satisfy: watching changes nothing, raises no alarm, leaves no hook."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import nbdiag
from tests.hooks import hook_count

ALARMS = ("warn", "fail")


@dataclass
class Setup:
    """One freshly built program: its models, a loop, and what preflight needs.

    ``train(monitors)`` runs the whole loop and returns the losses; ``monitors`` maps a model's key in ``models``
    to its Monitor (empty: run unwatched) and the loop calls ``mon.step(loss=...)`` where a user would.
    """

    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer | None]
    train: Callable[[dict[str, Any]], list[torch.Tensor]]
    preflight: dict[str, Any] | None  # nbdiag.preflight's arguments (model first), None for no preflight
    watch_kwargs: dict[str, Any] = field(default_factory=dict)
    expected_warning: str | None = None  # a NbdiagWarning that watch() must give (regex), e.g. for torch.compile


def build(make: Callable[[], Setup]) -> Setup:
    torch.manual_seed(0)
    return make()


def train_watched(make: Callable[[], Setup], **watch_kwargs: Any) -> tuple[list[torch.Tensor], dict, dict]:
    """Train once with a monitor per model; returns losses, final state dicts and the closed monitors."""
    setup = build(make)
    before = {k: hook_count(m, setup.optimizers.get(k)) for k, m in setup.models.items()}
    kwargs = {**setup.watch_kwargs, **watch_kwargs}
    expected = setup.expected_warning
    with pytest.warns(nbdiag.NbdiagWarning, match=expected) if expected else contextlib.nullcontext():
        monitors = {
            key: nbdiag.watch(m, setup.optimizers.get(key), display=False, **kwargs) for key, m in setup.models.items()
        }
    try:
        torch.manual_seed(1)
        losses = setup.train(monitors)
    finally:
        for mon in monitors.values():
            mon.close()
    for key, model in setup.models.items():
        left = hook_count(model, setup.optimizers.get(key)) - before[key]
        assert left == 0, f"{left} hook(s) left on {key}"
    return losses, _states(setup), monitors


def train_plain(make: Callable[[], Setup]) -> tuple[list[torch.Tensor], dict]:
    setup = build(make)
    torch.manual_seed(1)
    return setup.train({}), _states(setup)


def _states(setup: Setup) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": t.detach().clone() for k, m in setup.models.items() for n, t in m.state_dict().items()}


def alarms(findings: list) -> list[str]:
    return [f"{f.severity} {f.id} {f.layer or ''}: {f.message}" for f in findings if f.severity in ALARMS]


def step(monitors: dict[str, Any], key: str, **scalars: Any) -> None:
    """``mon.step(...)`` for the monitor of ``key`` when the program runs watched."""
    if key in monitors:
        monitors[key].step(**scalars)
