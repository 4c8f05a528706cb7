"""PyTorch Lightning: ``Trainer(callbacks=[NbdiagCallback(...)])`` watches the LightningModule during ``fit``."""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:
    try:
        from pytorch_lightning import Callback, LightningModule, Trainer
    except ImportError as error:
        raise ImportError(
            "nbdiag.integrations.lightning needs PyTorch Lightning, which is not installed; "
            'try `pip install lightning "torch==<your torch version>"` (pinning torch keeps your build)'
        ) from error

import torch

from nbdiag.config import WatchConfig
from nbdiag.monitor import Monitor


class NbdiagCallback(Callback):
    """Watch the module while ``Trainer.fit`` runs: hooks on fit start, ``step(loss=...)`` after each training
    batch, closed at fit end or on an exception (the record and run directory stay readable).

    Args:
        every: sample every ``every``-th training batch (see :func:`nbdiag.watch`).
        run_dir: also write a run directory there (rank 0 only under DDP).
        **watch_kwargs: any other :func:`nbdiag.watch` argument (``dense``, ``num_classes``, ``display``,
            ``fixed_batch``, ...), checked here: a bad value raises now, not when training starts.

    With several optimizers, update/weight ratios are not recorded (``watch`` takes one optimizer).

    Attributes:
        monitor: the :class:`~nbdiag.Monitor` of the latest fit (None before the first), e.g. ``.frame()``.
    """

    def __init__(self, every: int = 10, run_dir: str | None = None, **watch_kwargs: Any) -> None:
        self.fixed_batch = watch_kwargs.pop("fixed_batch", None)
        self.config = WatchConfig(every=every, run_dir=run_dir, **watch_kwargs)
        self.monitor: Monitor | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        optimizers = trainer.optimizers
        optimizer = optimizers[0] if len(optimizers) == 1 else None
        self.monitor = Monitor(pl_module, optimizer, self.config, fixed_batch=self.fixed_batch)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is not None:
            self.monitor.step(loss=_loss(outputs))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def _loss(outputs: Any) -> torch.Tensor | None:
    """The loss ``training_step`` returned: a tensor, or a dict's ``"loss"``; None under manual optimization."""
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return outputs if isinstance(outputs, torch.Tensor) and outputs.numel() == 1 else None
