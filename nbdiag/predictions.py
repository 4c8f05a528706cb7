"""Prediction evolution as a record block: the model's outputs on one fixed batch at each sampled step
(seeds/001, "visualize prediction dynamics").

Block ``prediction`` (one per sampled step, like every other kind): rows are the batch's samples ``"0", "1", ...``;
columns are ``target`` then ``p/0 .. p/C-1`` (classification: class probabilities), or ``target/0 ..`` then
``output/0 ..`` (regression). The block carries its targets, so a run directory or another rank's record reads
back without the batch. :class:`PredictionProbe` fills it (never changing the model, its mode or the RNG);
:class:`PredictionHistory` reads it back as arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from nbdiag.probe import iter_tensors
from nbdiag.record import Block, Record, StepEntry
from nbdiag.rng import forked_rng

KIND = "prediction"
TASKS = ("classification", "regression")


class PredictionProbe:
    """Runs the model on a fixed batch (no grad, eval mode, RNG untouched): the monitor's ``prediction`` quantity.

    Args:
        model: the model to run (not changed).
        batch: ``(inputs, targets)``; inputs a tensor (or a tuple of tensors) with the batch first.
        task: "classification" or "regression"; default inferred: integer targets -> classification.
        max_samples: the first this many samples of the batch are tracked.

    Raises:
        ValueError: for a batch without targets, an unknown task, or a bad ``max_samples``.
    """

    kind = KIND

    def __init__(self, model: nn.Module, batch: Any, *, task: str | None = None, max_samples: int = 64) -> None:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"got a batch of type {type(batch).__name__}, expected (inputs, targets); try (xb, yb)")
        if max_samples < 1:
            raise ValueError(f"got max_samples={max_samples}; expected >= 1")
        inputs, targets = batch
        self.model: nn.Module | None = model
        self.inputs = _head(inputs, max_samples)
        targets = torch.as_tensor(targets)[:max_samples].detach()
        self.targets = targets.cpu().numpy()
        inferred = "regression" if np.issubdtype(self.targets.dtype, np.floating) else "classification"
        self.task = task or inferred
        if self.task not in TASKS:
            raise ValueError(f"got task={task!r}, expected one of {TASKS}; try task=None to infer it")
        n = len(self.targets)
        self.samples = [str(i) for i in range(n)]
        device = _tensors(self.inputs)[0].device
        self._targets = targets.reshape(n, -1).to(device=device, dtype=torch.float32)  # (N, Kt), copied once

    def capture(self) -> tuple[list[str], torch.Tensor] | None:
        """``(samples, (N, Kt + C) device tensor)``: targets then probabilities (or predictions); None once released."""
        if self.model is None:
            return None
        return self.samples, torch.cat([self._targets, self._outputs(self.model)], dim=1)

    def block(self, names: list[str], values: np.ndarray) -> Block:
        """The record block of one step's host ``values`` (as returned by :meth:`capture`)."""
        targets, width = self._targets.shape[1], values.shape[1]
        if self.task == "classification":
            stats = ("target", *(f"p/{c}" for c in range(width - 1)))
        else:
            stats = (*(f"target/{j}" for j in range(targets)), *(f"output/{k}" for k in range(width - targets)))
        return Block(tuple(names), stats, np.asarray(values, np.float64))

    def release(self) -> None:
        """Drop the model (the monitor calls this on close)."""
        self.model = None

    def _outputs(self, model: nn.Module) -> torch.Tensor:
        modes = [(module, module.training) for module in model.modules()]
        try:
            model.eval()
            with torch.no_grad(), forked_rng(self.inputs):
                output = model(*self.inputs) if isinstance(self.inputs, tuple) else model(self.inputs)
        finally:
            for module, training in modes:
                module.training = training
        logits = next(t for _, t in iter_tensors(output)).float()
        n = len(self.targets)
        if self.task == "regression":
            return logits.reshape(n, -1)
        if logits.dim() == 1 or logits.shape[1] == 1:  # one logit: binary, p(class 1) = sigmoid
            positive = torch.sigmoid(logits.reshape(n))
            return torch.stack([1 - positive, positive], dim=1)
        return torch.softmax(logits, dim=1)


class PredictionHistory:
    """The ``prediction`` blocks of a record read as arrays: ``mon.predictions``, ``run.predictions`` and the
    standalone tracker share this API.

    Args:
        record: the record holding the blocks.
        entries: a fixed list of entries to read instead of the record's live ones (see :meth:`frozen`).
    """

    def __init__(self, record: Record, entries: list[StepEntry] | None = None) -> None:
        self._record = record
        self._entries = entries

    def frozen(self) -> PredictionHistory:
        """A history over the entries held now: every read of it sees the same steps while training goes on."""
        return PredictionHistory(self._record, self._record.entries())

    def _blocks(self) -> list[tuple[int, Block]]:
        entries = self._entries if self._entries is not None else self._record.entries()
        return [(entry.step, entry.blocks[KIND]) for entry in entries if KIND in entry.blocks]

    @property
    def task(self) -> str | None:
        """ "classification" or "regression" (None before anything was recorded)."""
        blocks = self._blocks()
        if not blocks:
            return None
        return "classification" if "target" in blocks[-1][1].stats else "regression"

    @property
    def targets(self) -> np.ndarray:
        """(N,) class targets (int64) or (N,) / (N, K) regression targets."""
        blocks = self._blocks()
        if not blocks:
            return np.zeros(0)
        block = blocks[-1][1]
        columns = [j for j, stat in enumerate(block.stats) if stat.split("/")[0] == "target"]
        targets = block.values[:, columns]
        if self.task == "classification":
            return targets[:, 0].astype(np.int64)
        return targets[:, 0] if len(columns) == 1 else targets

    @property
    def steps(self) -> list[int]:
        """The recorded steps, ascending."""
        return [step for step, _ in self._blocks()]

    def outputs(self) -> np.ndarray:
        """(S, N, C) probabilities (classification) or (S, N, K) predictions (regression), one slice per step."""
        blocks = self._blocks()
        if not blocks:
            return np.zeros((0, len(self.targets), 0))
        first = [j for j, stat in enumerate(blocks[-1][1].stats) if stat.split("/")[0] != "target"]
        return np.stack([block.values[:, first] for _, block in blocks])

    def probabilities(self) -> np.ndarray:
        """(S, N, C) class probabilities per recorded step.

        Raises:
            ValueError: for a regression history.
        """
        if self.task == "regression":
            raise ValueError("got a regression tracker, expected classification; use outputs() for predictions")
        return self.outputs()

    def p_true(self) -> np.ndarray:
        """(S, N) probability of each sample's true class per step (the heatmap's values)."""
        probabilities = self.probabilities()
        return np.take_along_axis(probabilities, self.targets.reshape(1, -1, 1).astype(np.int64), axis=2)[..., 0]

    def predicted(self) -> np.ndarray:
        """(S, N) predicted class (classification) or (S, N, K) predictions (regression)."""
        return self.outputs().argmax(axis=2) if self.task == "classification" else self.outputs()

    def heatmap_values(self) -> np.ndarray:
        """(N, S): p(true class) for classification, prediction - target (first output) for regression."""
        targets = self.targets
        if not self.steps:
            return np.zeros((len(targets), 0))
        if self.task == "classification":
            return self.p_true().T
        return (self.outputs()[:, :, 0] - targets.reshape(len(targets), -1)[:, 0]).T

    def frame(self) -> pd.DataFrame:
        """Long table, one row per (step, sample): step, sample, target, pred and p_true (classification), or
        step, sample, output, target, pred (regression; ``output`` indexes the output dimension)."""
        steps, targets = self.steps, self.targets
        n = len(targets)
        if self.task == "classification":
            return pd.DataFrame(
                {
                    "step": np.repeat(steps, n),
                    "sample": np.tile(np.arange(n), len(steps)),
                    "target": np.tile(targets, len(steps)),
                    "pred": self.predicted().reshape(-1),
                    "p_true": self.p_true().reshape(-1),
                }
            )
        predictions = self.outputs()  # (S, N, K)
        k = predictions.shape[2] if len(steps) else 1
        targets = targets.reshape(n, -1)
        return pd.DataFrame(
            {
                "step": np.repeat(steps, n * k),
                "sample": np.tile(np.repeat(np.arange(n), k), len(steps)),
                "output": np.tile(np.arange(k), n * len(steps)),
                "target": np.tile(np.broadcast_to(targets, (n, k)).reshape(-1), len(steps)),
                "pred": predictions.reshape(-1),
            }
        )

    def summary_text(self) -> str:
        """One line on what is tracked, and the latest step's accuracy (or RMSE)."""
        steps = self.steps
        head = f"prediction tracker ({self.task}, {len(self.targets)} samples, {len(steps)} steps recorded)"
        if not steps:
            return head
        frame = self.frame()
        last = frame[frame["step"] == steps[-1]]
        if self.task == "classification":
            accuracy = float((last["pred"] == last["target"]).mean())
            return f"{head}\nstep {steps[-1]}: accuracy {accuracy:.1%}, mean p(true) {last['p_true'].mean():.3f}"
        rmse = float(np.sqrt(((last["pred"] - last["target"]) ** 2).mean()))
        return f"{head}\nstep {steps[-1]}: RMSE {rmse:.4g}"

    def __repr__(self) -> str:
        return self.summary_text()


def _head(inputs: Any, n: int) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs[:n].detach()
    if isinstance(inputs, (tuple, list)):
        return tuple(_head(item, n) for item in inputs)
    raise ValueError(f"got inputs of type {type(inputs).__name__}, expected a tensor or a tuple of tensors")


def _tensors(inputs: Any) -> list[torch.Tensor]:
    return list(inputs) if isinstance(inputs, tuple) else [inputs]
