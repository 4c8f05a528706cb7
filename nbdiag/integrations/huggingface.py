"""Hugging Face: ``Trainer(..., callbacks=[NbdiagCallback(...)])`` watches the model while ``Trainer.train`` runs.

The Trainer runs on Accelerate: the optimizer a callback receives is Accelerate's ``AcceleratedOptimizer``, which
``watch`` unwraps to the torch optimizer it holds.
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as error:
    raise ImportError(
        "nbdiag.integrations.huggingface needs transformers, which is not installed; "
        'try `pip install transformers accelerate "torch==<your torch version>"` (pinning torch keeps your build)'
    ) from error

import torch
from torch import nn

from nbdiag.config import WatchConfig
from nbdiag.monitor import Monitor


class NbdiagCallback(TrainerCallback):
    """Watch the model while ``Trainer.train`` runs: hooks on train begin, one ``mon.step(loss=...)`` per optimizer
    step (the mean of its micro-batches' ``outputs.loss``), closed on train end.

    Args:
        every: sample every ``every``-th optimizer step (see :func:`nbdiag.watch`).
        run_dir: also write a run directory there (read it with ``nbdiag.open_run``).
        **watch_kwargs: any other :func:`nbdiag.watch` argument (``dense``, ``num_classes``, ``display``,
            ``fixed_batch``, ...), checked here: a bad value raises now, not when training starts.

    The loss is read from the model's output (``outputs.loss``, as ``Trainer.compute_loss`` uses it); a custom
    ``compute_loss`` whose model returns no loss gets the Trainer's logged loss at each logging step instead.

    ``Trainer`` has no event for an exception: if ``train()`` raises, the hooks stay until :meth:`close`, the next
    ``train()``, or the end of a ``with callback:`` block around ``trainer.train()``.

    Attributes:
        monitor: the :class:`~nbdiag.Monitor` of the latest ``train()`` (None before the first), e.g. ``.frame()``.
    """

    def __init__(self, every: int = 10, run_dir: str | None = None, **watch_kwargs: Any) -> None:
        self.fixed_batch = watch_kwargs.pop("fixed_batch", None)
        self.config = WatchConfig(every=every, run_dir=run_dir, **watch_kwargs)
        self.monitor: Monitor | None = None
        self._loss_hook: Any = None
        self._losses: list[torch.Tensor] = []
        self._model_has_loss = False

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any):
        self.close()
        if model is None:
            return
        self.monitor = Monitor(model, kwargs.get("optimizer"), self.config, fixed_batch=self.fixed_batch)
        self._model_has_loss = False
        self._loss_hook = model.register_forward_hook(self._read_loss)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
        if self.monitor is None:
            return
        losses, self._losses = self._losses, []
        if losses:
            self.monitor.step(loss=torch.stack(losses).float().mean())
        else:
            self.monitor.step()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        """Without ``outputs.loss``, the logged training loss stands for the step just ended."""
        mon = self.monitor
        if mon is None or self._model_has_loss or not logs or "loss" not in logs or mon.current_step == 0:
            return
        mon.record.add_scalars(mon.current_step - 1, {"loss": float(logs["loss"])})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
        self.close()

    def close(self) -> None:
        """Remove every hook (idempotent); the monitor's record stays readable."""
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._losses = []
        if self.monitor is not None:
            self.monitor.close()

    def __enter__(self) -> NbdiagCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @torch.compiler.disable
    def _read_loss(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """Keep the detached 0-d ``loss`` of a training forward (nothing else; never raises)."""
        if not (module.training and torch.is_grad_enabled()):
            return
        try:
            loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        except Exception:  # noqa: BLE001 - an odd output type: no loss to read
            return
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._model_has_loss = True
            self._losses.append(loss.detach().reshape(()))
