"""Prediction evolution: the model's outputs on one fixed batch, recorded at chosen steps (seeds/001, "visualize
prediction dynamics"). Holds only numpy on the host; never changes the model, its mode or the RNG.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from nbdiag.errors import NbdiagWarning
from nbdiag.labs._widgets import LabView
from nbdiag.probe import iter_tensors
from nbdiag.record import thin_older_half

TASKS = ("classification", "regression")


class PredictionTracker(LabView):
    """Records ``model(x)`` on a fixed batch: class probabilities (classification) or predictions (regression).

    Memory is bounded: past ``capacity`` recorded steps, the older half is thinned to every other step.
    ``record`` never raises: a failure warns once (``NbdiagWarning``) and the step is skipped.
    """

    figsize = (13.0, 5.0)

    def __init__(
        self,
        model: nn.Module,
        batch: Any,
        *,
        task: str | None = None,
        capacity: int = 200,
        max_samples: int = 64,
    ) -> None:
        """Args:
            model: the model to run (not changed).
            batch: ``(inputs, targets)``; inputs a tensor (or a tuple of tensors) with the batch first.
            task: "classification" or "regression"; default inferred: integer targets -> classification.
            capacity: recorded steps kept (>= 2).
            max_samples: the first this many samples of the batch are tracked.

        Raises:
            ValueError: for a batch without targets, an unknown task, or a bad capacity / max_samples.
        """
        super().__init__()
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"got a batch of type {type(batch).__name__}, expected (inputs, targets); try (xb, yb)")
        if capacity < 2 or max_samples < 1:
            raise ValueError(f"got capacity={capacity}, max_samples={max_samples}; expected >= 2 and >= 1")
        inputs, targets = batch
        self.model = model
        self.inputs = _head(inputs, max_samples)
        self.targets = torch.as_tensor(targets)[:max_samples].detach().cpu().numpy()
        inferred = "regression" if np.issubdtype(self.targets.dtype, np.floating) else "classification"
        self.task = task or inferred
        if self.task not in TASKS:
            raise ValueError(f"got task={task!r}, expected one of {TASKS}; try task=None to infer it")
        self.capacity = capacity
        self.images = _images(self.inputs)
        self.errors: list[str] = []
        self._records: list[tuple[int, np.ndarray]] = []  # (step, (N, C) probabilities or (N, K) predictions)

    def record(self, step: int) -> None:
        """Run the model on the fixed batch (no grad, eval mode, RNG untouched) and keep the outputs on the host."""
        model = self.model
        if model is None:
            return
        try:
            values = self._outputs(model)
        except Exception as error:  # never break training
            self.errors.append(f"step {step}: {type(error).__name__}: {error}")
            if len(self.errors) == 1:
                warnings.warn(f"prediction tracking failed and skips such steps: {error}", NbdiagWarning, stacklevel=2)
            return
        if self._records and self._records[-1][0] == step:
            self._records.pop()
        self._records.append((int(step), values))
        if len(self._records) > self.capacity:
            self._records = thin_older_half(self._records)

    def _outputs(self, model: nn.Module) -> np.ndarray:
        modes = [(module, module.training) for module in model.modules()]
        devices = sorted({t.device.index or 0 for t in _tensors(self.inputs) if t.is_cuda})
        try:
            model.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                output = model(*self.inputs) if isinstance(self.inputs, tuple) else model(self.inputs)
        finally:
            for module, training in modes:
                module.training = training
        logits = next(t for _, t in iter_tensors(output)).float()
        n = len(self.targets)
        if self.task == "regression":
            return logits.reshape(n, -1).cpu().numpy()
        if logits.dim() == 1 or logits.shape[1] == 1:  # one logit: binary, p(class 1) = sigmoid
            positive = torch.sigmoid(logits.reshape(n))
            return torch.stack([1 - positive, positive], dim=1).cpu().numpy()
        return torch.softmax(logits, dim=1).cpu().numpy()

    @property
    def steps(self) -> list[int]:
        """The recorded steps, ascending."""
        return [step for step, _ in self._records]

    def outputs(self) -> np.ndarray:
        """(S, N, C) probabilities (classification) or (S, N, K) predictions (regression), one slice per step."""
        if not self._records:
            return np.zeros((0, len(self.targets), 0), dtype=np.float32)
        return np.stack([values for _, values in self._records])

    def probabilities(self) -> np.ndarray:
        """(S, N, C) class probabilities per recorded step.

        Raises:
            ValueError: for a regression tracker.
        """
        if self.task != "classification":
            raise ValueError("got a regression tracker, expected classification; use outputs() for predictions")
        return self.outputs()

    def p_true(self) -> np.ndarray:
        """(S, N) probability of each sample's true class per step (the heatmap's values)."""
        probabilities = self.probabilities()
        return np.take_along_axis(probabilities, self.targets.reshape(1, -1, 1).astype(np.int64), axis=2)[..., 0]

    def predicted(self) -> np.ndarray:
        """(S, N) predicted class (classification) or (S, N, K) predictions (regression)."""
        return self.outputs().argmax(axis=2) if self.task == "classification" else self.outputs()

    def frame(self) -> pd.DataFrame:
        """Long table, one row per (step, sample): step, sample, target, pred and p_true (classification), or
        step, sample, output, target, pred (regression; ``output`` indexes the output dimension)."""
        steps, n = self.steps, len(self.targets)
        if self.task == "classification":
            return pd.DataFrame(
                {
                    "step": np.repeat(steps, n),
                    "sample": np.tile(np.arange(n), len(steps)),
                    "target": np.tile(self.targets, len(steps)),
                    "pred": self.predicted().reshape(-1),
                    "p_true": self.p_true().reshape(-1),
                }
            )
        predictions = self.outputs()  # (S, N, K)
        k = predictions.shape[2] if len(steps) else 1
        targets = self.targets.reshape(n, -1)
        return pd.DataFrame(
            {
                "step": np.repeat(steps, n * k),
                "sample": np.tile(np.repeat(np.arange(n), k), len(steps)),
                "output": np.tile(np.arange(k), n * len(steps)),
                "target": np.tile(np.broadcast_to(targets, (n, k)).reshape(-1), len(steps)),
                "pred": predictions.reshape(-1),
            }
        )

    def refresh(self) -> None:
        """Bring the widget (if built) up to date with the steps recorded since."""
        if self._widget is not None:
            from nbdiag.labs.predictions_view import refresh

            refresh(self)

    def _build_widget(self):
        from nbdiag.labs.predictions_view import build_widget

        return build_widget(self)

    def _draw(self, fig) -> None:
        from nbdiag.labs.predictions_view import draw

        draw(self, fig)

    def summary_text(self) -> str:
        head = f"prediction tracker ({self.task}, {len(self.targets)} samples, {len(self.steps)} steps recorded)"
        if not self._records:
            return head
        last = self.frame().query("step == @self.steps[-1]")
        if self.task == "classification":
            accuracy = float((last["pred"] == last["target"]).mean())
            return f"{head}\nstep {self.steps[-1]}: accuracy {accuracy:.1%}, mean p(true) {last['p_true'].mean():.3f}"
        rmse = float(np.sqrt(((last["pred"] - last["target"]) ** 2).mean()))
        return f"{head}\nstep {self.steps[-1]}: RMSE {rmse:.4g}"


def track_predictions(model: nn.Module, batch: Any, **kwargs: Any) -> PredictionTracker:
    """A :class:`PredictionTracker` on ``batch``; call ``tracker.record(step)`` (the monitor does on sampled steps).

    Args:
        model: the model.
        batch: ``(inputs, targets)``.
        **kwargs: ``task``, ``capacity``, ``max_samples`` of :class:`PredictionTracker`.

    Returns:
        The tracker; ``.show()`` or ``.widget`` for the view, ``.frame()`` for the data.
    """
    return PredictionTracker(model, batch, **kwargs)


def _head(inputs: Any, n: int) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs[:n].detach()
    if isinstance(inputs, (tuple, list)):
        return tuple(_head(item, n) for item in inputs)
    raise ValueError(f"got inputs of type {type(inputs).__name__}, expected a tensor or a tuple of tensors")


def _tensors(inputs: Any) -> list[torch.Tensor]:
    return list(inputs) if isinstance(inputs, tuple) else [inputs]


def _images(inputs: Any) -> np.ndarray | None:
    """(N, H, W) first-channel images when the inputs look like images ((N, H, W) or (N, C, H, W), C <= 4)."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (3, 4):
        return None
    if inputs.dim() == 4 and inputs.shape[1] > 4:
        return None
    images = inputs if inputs.dim() == 3 else inputs[:, 0]
    return images.float().cpu().numpy()
