"""What every corpus program must satisfy, and the registry the programs add themselves to.

A corpus program is a correct training program from public code (its source is named in ``Program.source``),
scaled down to run in about a second on generated or bundled data. Watching it must change nothing (losses and final
state bitwise equal), raise nothing, leave no hook (on the models or on any copy the program made), give no warn/fail
finding, and record the same activation std as an independent forward hook.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import nbdiag
from tests.hooks import hook_count

ALARMS = ("warn", "fail")


@dataclass
class Program:
    """One freshly built program.

    ``train(monitors)`` runs the whole loop and returns its losses; ``monitors`` maps a key of ``models`` to what the
    loop calls ``.step(...)`` on where a user would call ``mon.step`` (empty: run unwatched). ``copies`` lists the
    modules the program copied from a model (EMA, ``AveragedModel``, ``deepcopy``); the loop may append to it.
    """

    models: dict[str, nn.Module]
    optimizers: dict[str, Any]
    train: Callable[[dict[str, Any]], list[torch.Tensor]]
    preflight: dict[str, Any] | None = None  # nbdiag.preflight's arguments (model first); None: no preflight
    watch_kwargs: dict[str, Any] = field(default_factory=dict)
    copies: list[nn.Module] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    name: str
    source: str  # "owner/repo: path" of the public file the program follows
    make: Callable[[], Program]


CORPUS: dict[str, Entry] = {}


def program(source: str) -> Callable[[Callable[[], Program]], Callable[[], Program]]:
    """Register ``make_<name>`` under ``<name>``; ``source`` is the public file it follows (repo: path)."""

    def register(make: Callable[[], Program]) -> Callable[[], Program]:
        name = make.__name__.removeprefix("make_")
        assert name not in CORPUS, f"two corpus programs named {name}"
        CORPUS[name] = Entry(name, source, make)
        return make

    return register


def step(monitors: dict[str, Any], key: str, **scalars: Any) -> None:
    """``mon.step(...)`` for the monitor of ``key`` when the program runs watched."""
    if key in monitors:
        monitors[key].step(**scalars)


def build(name: str) -> Program:
    torch.manual_seed(0)
    return CORPUS[name].make()


# -- runs --------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    losses: list[torch.Tensor]
    state: dict[str, torch.Tensor]
    monitors: dict[str, Any] = field(default_factory=dict)
    hooks_left: dict[str, int] = field(default_factory=dict)
    spied: dict[str, dict[tuple[int, str], list]] = field(default_factory=dict)
    optimized: tuple[str, ...] = ()  # the models watched with their optimizer
    warned: list[str] = field(default_factory=list)  # NbdiagWarnings given while watching


def train_plain(name: str) -> Run:
    prog = build(name)
    torch.manual_seed(1)
    losses = prog.train({})
    return Run([torch.as_tensor(v).detach() for v in losses], _states(prog))


class _Counted:
    """Forwards ``step`` to the monitor and counts the steps, so the spy knows which step a forward pass belongs to."""

    def __init__(self, monitor: Any) -> None:
        self.monitor, self.count = monitor, 0

    def step(self, **scalars: Any) -> None:
        self.monitor.step(**scalars)
        self.count += 1


def train_watched(name: str, *, spy: bool = False, **watch_kwargs: Any) -> Run:
    """Train once with one monitor per model; with ``spy``, a global forward hook records each leaf's output std."""
    prog = build(name)
    before = {k: hook_count(m, prog.optimizers.get(k)) for k, m in prog.models.items()}
    spied: dict[str, dict[tuple[int, str], list]] = {k: {} for k in prog.models}
    with warnings.catch_warnings(record=True) as caught:  # recorded, whatever the warning filters say
        warnings.simplefilter("always", nbdiag.NbdiagWarning)
        monitors = {
            k: nbdiag.watch(m, prog.optimizers.get(k), display=False, **{**prog.watch_kwargs, **watch_kwargs})
            for k, m in prog.models.items()
        }
        counted = {k: _Counted(mon) for k, mon in monitors.items()}
        with _spy(prog.models, counted, spied) if spy else contextlib.nullcontext():
            try:
                torch.manual_seed(1)
                losses = prog.train(counted)
            finally:
                for mon in monitors.values():
                    mon.close()
    warned = [str(w.message)[:300] for w in caught if issubclass(w.category, nbdiag.NbdiagWarning)]
    left = {k: hook_count(m, prog.optimizers.get(k)) - before[k] for k, m in prog.models.items()}
    left.update({f"copy{i}": hook_count(c) for i, c in enumerate(prog.copies)})
    optimized = tuple(k for k in prog.models if prog.optimizers.get(k) is not None)
    losses = [torch.as_tensor(v).detach() for v in losses]
    return Run(losses, _states(prog), monitors, left, spied, optimized, warned)


@contextlib.contextmanager
def _spy(models: dict[str, nn.Module], counted: dict[str, _Counted], spied: dict) -> Any:
    """A global forward hook (nothing is added to the modules, so copies carry nothing) pooling each leaf's outputs
    per step: ``(count, sum, sum of squares)``, as a layer called several times in one step is one vector to nbdiag."""
    owners = {
        id(mod): (key, name or type(mod).__name__)  # nbdiag names a model that is one leaf by its class
        for key, model in models.items()
        for name, mod in model.named_modules()
        if next(mod.children(), None) is None
    }

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        owner = owners.get(id(module))
        if owner is None or not torch.is_grad_enabled() or type(output) is not torch.Tensor:
            return  # nbdiag records training passes only (an evaluation under no_grad is not training)
        if not output.is_floating_point() or torch._C._functorch.is_functorch_wrapped_tensor(output):
            return
        key, name = owner
        x = output.detach().double()
        pooled = spied[key].setdefault((counted[key].count, name), [0, 0.0, 0.0])
        pooled[0] += x.numel()
        pooled[1] += x.sum().item()
        pooled[2] += x.square().sum().item()

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _states(prog: Program) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": t.detach().clone() for k, m in prog.models.items() for n, t in m.state_dict().items()}


def alarms(findings: list) -> list[str]:
    return [f"{f.severity} {f.id} {f.layer or ''}: {f.message}" for f in findings if f.severity in ALARMS]
