"""The methods the overhead benchmark compares: plain training, nbdiag, and the tools users would otherwise reach for.

Every method sees the same training step (``overhead.Runner.run``)::

    out = model(x); loss = method.loss(out, y)     # under bf16 autocast for the GPU cases
    method.backward(loss, out, y, step)            # loss.backward() plus whatever the tool does around it
    opt.step(); opt.zero_grad(set_to_none=True)
    method.end_step(loss, step)                    # the tool's per-step call (mon.step, wandb.log, ...)

Optional packages are imported inside the methods; ``unavailable()`` names what is missing so the harness can skip
the method with a note instead of crashing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import tempfile
import types
import warnings
from typing import Any

import torch
from torch import nn

import nbdiag


class Method:
    """Plain training: the baseline every ratio divides by."""

    name = "plain"
    period = 1  # sampling period: steps per round must be a multiple of it
    modules: tuple[str, ...] = ()  # importable modules the method needs

    def unavailable(self) -> str | None:
        """None when every needed module imports, else the reason."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except Exception as e:  # noqa: BLE001 - any import failure means "skip"
                return f"{module}: {type(e).__name__}: {e}"
        return None

    def setup(self, model: nn.Module, opt: torch.optim.Optimizer, case: Any) -> nn.Module:
        """Attach the tool to ``model`` (this method's own copy); return the model to train."""
        self.case = case
        return model

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss (mean cross-entropy)."""
        return self.case.loss(out, y)

    def backward(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """Backward pass (and whatever the tool hooks around it)."""
        loss.backward()

    def end_step(self, loss: torch.Tensor, step: int) -> None:
        """The tool's per-step call, after ``optimizer.step()``."""

    def problems(self) -> str | None:
        """Anything that makes the figure suspect (e.g. capture switched off by an error), else None."""
        return None

    def close(self) -> None:
        """Detach the tool."""


# --- nbdiag ---------------------------------------------------------------------------------------------------


class Nbdiag(Method):
    """``nbdiag.watch(model, opt, every=N, dense=0)``; ``every=None``: attached but idle after its first step."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self.period = every or 1
        self.name = f"nbdiag every={every}" if every else "nbdiag idle"

    def setup(self, model, opt, case):
        super().setup(model, opt, case)
        if self.every is None:
            self.monitor = nbdiag.watch(model, opt, every=10**9, dense=0, display=False)
            self.monitor.step()  # step 0 was sampled; from here on nothing is
        else:
            self.monitor = nbdiag.watch(model, opt, every=self.every, dense=0, display=False)
        return model

    def end_step(self, loss, step):
        self.monitor.step(loss=loss)

    def problems(self):
        errors = self.monitor.errors
        return f"capture switched off by {errors[0]}" if errors else None

    def close(self):
        self.monitor.close()


# --- Weights & Biases -------------------------------------------------------------------------------------------

_WANDB: dict[str, Any] = {}  # the one offline run every wandb method logs to


def wandb_run():
    """Start (once) an offline, silent wandb run in a temporary directory; return the module."""
    if "run" not in _WANDB:
        _WANDB["dir"] = tempfile.TemporaryDirectory(prefix="nbdiag-bench-wandb-")
        os.environ.update(WANDB_MODE="offline", WANDB_DIR=_WANDB["dir"].name, WANDB_SILENT="true")
        import wandb

        # console capture and system-metrics sampling are switched off: they are not part of watch() and would
        # load the machine while the other methods are timed.
        settings = wandb.Settings(console="off", x_disable_stats=True)
        _WANDB["run"] = wandb.init(project="nbdiag-overhead", dir=_WANDB["dir"].name, settings=settings)
    import wandb

    return wandb


def wandb_finish() -> None:
    """Finish the shared wandb run, if one was started, and remove its directory."""
    run = _WANDB.pop("run", None)
    if run is not None:
        run.finish()
        _WANDB.pop("dir").cleanup()


class WandbWatch(Method):
    """``wandb.watch(model, log="all", log_freq=N)`` + ``wandb.log({"loss": loss})`` every step (offline mode).

    watch() logs parameter histograms from a forward hook on the model and gradient histograms from a hook on
    each parameter, every ``log_freq`` calls, into the pending history row; ``wandb.log`` commits the row.
    """

    modules = ("wandb",)

    def __init__(self, log_freq: int) -> None:
        self.period = log_freq
        self.name = f"wandb.watch log_freq={log_freq}"

    def setup(self, model, opt, case):
        super().setup(model, opt, case)
        self.wandb = wandb_run()
        self.model = model
        self.wandb.watch(model, log="all", log_freq=self.period)
        return model

    def end_step(self, loss, step):
        self.wandb.log({"loss": loss})

    def close(self):
        self.wandb.unwatch(self.model)


# --- TensorBoard ------------------------------------------------------------------------------------------------


class TensorBoardHistograms(Method):
    """``SummaryWriter.add_histogram`` of every parameter and its gradient, plus ``add_scalar("loss")``, each step."""

    name = "tensorboard histograms"
    modules = ("tensorboard", "torch.utils.tensorboard")

    def setup(self, model, opt, case):
        super().setup(model, opt, case)
        from torch.utils.tensorboard import SummaryWriter

        self.dir = tempfile.TemporaryDirectory(prefix="nbdiag-bench-tb-")
        self.writer = SummaryWriter(log_dir=self.dir.name)
        self.params = list(model.named_parameters())
        return model

    def backward(self, loss, out, y, step):
        loss.backward()
        for name, p in self.params:
            self.writer.add_histogram(name, p, step)
            if p.grad is not None:
                self.writer.add_histogram(f"{name}.grad", p.grad, step)

    def end_step(self, loss, step):
        self.writer.add_scalar("loss", loss, step)

    def close(self):
        self.writer.close()
        self.dir.cleanup()


# --- fastai ActivationStats (reproduced) ------------------------------------------------------------------------


def _detach_cpu(b: Any) -> Any:
    """fastai's ``to_detach(b, cpu=True)``: detach every tensor in a (nested) tuple/list and move it to the CPU."""
    if isinstance(b, torch.Tensor):
        return b.detach().cpu()
    if isinstance(b, (tuple, list)):
        return type(b)(_detach_cpu(x) for x in b)
    return b


def _flatten_tuple(o: tuple) -> list:
    """fastai's ``ActivationStats._flatten_tuple``."""
    out = []
    for it in o:
        out += _flatten_tuple(it) if isinstance(it, tuple) else [it]
    return out


def activation_stats(o: Any) -> Any:
    """fastai's ``ActivationStats.hook`` with ``with_hist=True``: three ``.item()`` syncs and a 40-bin ``histc``."""
    if isinstance(o, tuple):
        return [activation_stats(t) for t in _flatten_tuple(o) if isinstance(t, torch.Tensor)]
    o = o.float()
    res = {"mean": o.mean().item(), "std": o.std().item(), "near_zero": (o <= 0.05).long().sum().item() / o.numel()}
    res["hist"] = o.histc(40, 0, 10)
    return res


class FastaiActivationStats(Method):
    """fastai ``ActivationStats(with_hist=True)`` as a Learner runs it, reproduced from fastai 2.8 source.

    ``HookCallback`` defaults: forward hooks on every leaf module with parameters, ``detach=True, cpu=True`` (the
    module's input and output are detached and copied to the CPU before the stats), every batch; after each batch
    the stored results of all hooks are appended to ``stats``.
    """

    name = "fastai ActivationStats (reproduced)"

    def setup(self, model, opt, case):
        super().setup(model, opt, case)
        self.stats: list[list[Any]] = []
        self.hooks = []
        for m in model.modules():
            if next(m.children(), None) is None and any(True for _ in m.parameters()):
                self.hooks.append(_FastaiHook(m))
        return model

    def end_step(self, loss, step):
        self.stats.append([h.stored for h in self.hooks])

    def close(self):
        for h in self.hooks:
            h.remove()


class _FastaiHook:
    """fastai's ``Hook(m, ActivationStats.hook, is_forward=True, detach=True, cpu=True)``."""

    def __init__(self, m: nn.Module) -> None:
        self.stored = None
        self.handle = m.register_forward_hook(self.hook_fn)

    def hook_fn(self, module: nn.Module, input: Any, output: Any) -> None:
        _input, output = _detach_cpu(input), _detach_cpu(output)
        self.stored = activation_stats(output)

    def remove(self) -> None:
        self.handle.remove()


# --- Cockpit ----------------------------------------------------------------------------------------------------


def ensure_pkg_resources() -> None:
    """Give Cockpit the ``pkg_resources`` it imports when setuptools no longer ships it.

    cockpit-for-pytorch 1.0.2 runs ``from pkg_resources import DistributionNotFound, get_distribution`` (for its
    ``__version__`` only). setuptools dropped ``pkg_resources`` (81+) and torch 2.13 requires setuptools>=77.0.3, so
    pinning ``setuptools<70`` would conflict with torch. When the import fails, a stand-in with those two names,
    backed by ``importlib.metadata``, goes into ``sys.modules`` (this process only). It runs once, at import.
    """
    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError:
        shim = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            """No such installed distribution."""

        def get_distribution(name: str) -> types.SimpleNamespace:
            try:
                return types.SimpleNamespace(version=importlib.metadata.version(name))
            except importlib.metadata.PackageNotFoundError as e:
                raise DistributionNotFound(name) from e

        shim.DistributionNotFound, shim.get_distribution = DistributionNotFound, get_distribution
        sys.modules["pkg_resources"] = shim


class CockpitEconomy(Method):
    """Cockpit with ``configuration("economy")``, following its basic example.

    Model and loss are extended with BackPACK; each step computes the individual losses and runs
    ``loss.backward(create_graph=cockpit.create_graph(step))`` inside ``with cockpit(step, info=...)``.
    """

    name = "cockpit economy"
    modules = ("backpack", "cockpit")

    def unavailable(self):
        ensure_pkg_resources()
        return super().unavailable()

    def setup(self, model, opt, case):
        super().setup(model, opt, case)
        from backpack import extend
        from cockpit import Cockpit
        from cockpit.utils.configuration import configuration

        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # torch, on every BackPACK step
        self.opt = opt
        model = extend(model)
        self.loss_fn = extend(nn.CrossEntropyLoss(reduction="mean"))
        self.cockpit = Cockpit(model.parameters(), quantities=configuration("economy"))
        return model

    def loss(self, out, y):
        return self.loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def backward(self, loss, out, y, step):
        losses = self.case.loss(out, y, reduction="none").detach()
        info = {"batch_size": len(losses), "individual_losses": losses, "loss": loss, "optimizer": self.opt}
        with self.cockpit(step, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(step))


# --- registry ---------------------------------------------------------------------------------------------------


def all_methods() -> list[Method]:
    """Every method, plain first (fresh instances: methods hold per-run state)."""
    return [
        Method(),
        Nbdiag(None),
        Nbdiag(100),
        Nbdiag(10),
        Nbdiag(1),
        WandbWatch(10),
        WandbWatch(1),
        TensorBoardHistograms(),
        FastaiActivationStats(),
        CockpitEconomy(),
    ]


DISTRIBUTIONS = (
    "torch",
    "nbdiag",
    "numpy",
    "wandb",
    "tensorboard",
    "backpack-for-pytorch",
    "cockpit-for-pytorch",
    "setuptools",
    "fastai",
)
