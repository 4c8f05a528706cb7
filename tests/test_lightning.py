"""The Lightning callback: a short ``Trainer.fit`` on CPU records what ``watch`` records by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import nbdiag

pl = pytest.importorskip("lightning.pytorch")
from nbdiag.integrations.lightning import NbdiagCallback  # noqa: E402  (needs lightning)


class Classifier(pl.LightningModule):
    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(callback: NbdiagCallback, model: Classifier) -> None:
    data = TensorDataset(torch.randn(96, 8), torch.randint(0, 3, (96,)))
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(data, batch_size=16))


def test_callback_watches_fit_and_writes_a_run(tmp_path):
    callback = NbdiagCallback(every=4, dense=2, run_dir=str(tmp_path / "run"), display=False)
    fit(callback, Classifier())
    mon = callback.monitor
    assert mon.closed and mon.errors == []
    assert list(mon.scalars().index) == list(range(12))  # 2 epochs x 6 batches, one step each
    assert mon.record.steps() == [0, 1, 4, 8]
    assert set(mon.frame().kind) >= {"activation", "gradient", "weight", "update"}
    assert mon.layers == ["net.0", "net.1", "net.2"]
    assert nbdiag.open_run(tmp_path / "run").frame().equals(mon.frame())


def test_callback_closes_the_monitor_when_training_fails():
    callback = NbdiagCallback(every=1, display=False)
    with pytest.raises(RuntimeError, match="boom"):
        fit(callback, Classifier(fail_at=3))
    assert callback.monitor.closed
    assert len(callback.monitor.scalars()) == 3
