"""The standalone prediction tracker: a :class:`~nbdiag.predictions.PredictionProbe` writing into a record of its
own, read back as a :class:`~nbdiag.predictions.PredictionHistory`, with a widget and a PNG on demand."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from nbdiag.errors import NbdiagWarning
from nbdiag.labs.lab import Lab
from nbdiag.predictions import KIND, PredictionHistory, PredictionProbe
from nbdiag.record import Record, StepEntry


class PredictionTracker(PredictionHistory, Lab):
    """Records ``model(x)`` on a fixed batch: class probabilities (classification) or predictions (regression).

    Memory is bounded: past ``capacity`` recorded steps, the older half is thinned to every other step.
    ``record`` never raises: a failure is kept in ``errors`` (with its traceback), warns once
    (``NbdiagWarning``), and the step is skipped. A monitor given ``fixed_batch`` records the same block into its
    own record instead (``mon.predictions``).
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
        if capacity < 2:
            raise ValueError(f"got capacity={capacity}; expected >= 2")
        Lab.__init__(self)
        self.probe = PredictionProbe(model, batch, task=task, max_samples=max_samples)
        PredictionHistory.__init__(self, Record(capacity=max(capacity, 4)))
        self.capacity = capacity
        self.images = _images(self.probe.inputs)

    @property
    def model(self) -> nn.Module | None:
        """The model run at each :meth:`record` (None: released, nothing more is recorded)."""
        return self.probe.model

    @model.setter
    def model(self, model: nn.Module | None) -> None:
        self.probe.model = model

    @property
    def task(self) -> str:
        return self.probe.task

    @property
    def targets(self) -> np.ndarray:
        return self.probe.targets

    @property
    def errors(self) -> list:
        """Failures of :meth:`record` (:class:`nbdiag.errors.ErrorReport`, each with its traceback)."""
        return self._record.errors.reports()

    def record(self, step: int) -> None:
        """Run the model on the fixed batch (no grad, eval mode, RNG untouched) and keep the outputs on the host."""
        try:
            captured = self.probe.capture()
            if captured is None:
                return
            names, values = captured
            block = self.probe.block(names, values.double().cpu().numpy())
        except Exception as error:  # never break training
            report = self._record.errors.add("prediction", error, step=step)
            if len(self._record.errors) == 1:
                message = f"prediction tracking failed and skips such steps: {report.message}"
                warnings.warn(message, NbdiagWarning, stacklevel=2)
            return
        self._record.append(StepEntry(int(step), {KIND: block}))

    def refresh(self) -> None:
        """Bring the widget (if built) up to date with the steps recorded since."""
        self._changed()

    def frame(self) -> pd.DataFrame:
        """See :meth:`nbdiag.predictions.PredictionHistory.frame`."""
        return PredictionHistory.frame(self)

    def summary(self) -> pd.DataFrame:
        """One row per recorded step: accuracy and mean p(true) (classification), or RMSE (regression)."""
        frame = self.frame()
        if frame.empty:
            return pd.DataFrame()
        if self.task == "classification":
            correct = (frame["pred"] == frame["target"]).rename("accuracy")
            return pd.concat([frame["step"], correct, frame["p_true"]], axis=1).groupby("step").mean()
        error = ((frame["pred"] - frame["target"]) ** 2).rename("rmse")
        return pd.concat([frame["step"], error], axis=1).groupby("step").mean() ** 0.5


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


def _images(inputs: Any) -> np.ndarray | None:
    """(N, H, W) first-channel images when the inputs look like images ((N, H, W) or (N, C, H, W), C <= 4)."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (3, 4):
        return None
    if inputs.dim() == 4 and inputs.shape[1] > 4:
        return None
    images = inputs if inputs.dim() == 3 else inputs[:, 0]
    return images.float().cpu().numpy()
