"""Every measured kind, one module each, behind one protocol (:mod:`nbdiag.quantities.base`).

:func:`quantities_for` lists the kinds a monitor records, in the order their blocks are assembled and searched for
the first non-finite value. A new kind is a module here and one line in that list.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.filters import first_filters
from nbdiag.modes import mode_modules
from nbdiag.predictions import PredictionProbe
from nbdiag.quantities.activation import Activations
from nbdiag.quantities.base import FromTensor, Quantity
from nbdiag.quantities.dynamic_range import DynamicRange
from nbdiag.quantities.frozen import FrozenAtInitLayers
from nbdiag.quantities.gradient import OutputGradients
from nbdiag.quantities.inputs import Inputs
from nbdiag.quantities.mode import TrainingModes
from nbdiag.quantities.scalars import DeviceScalars
from nbdiag.quantities.stale_grad import StaleGradients
from nbdiag.quantities.units import Units
from nbdiag.quantities.update import Updates
from nbdiag.quantities.weight import Weights
from nbdiag.record import Record
from nbdiag.sharding import OutputLayouts


def quantities_for(
    model: nn.Module,
    leaves: list[tuple[str, nn.Module]],
    params: list[tuple[str, nn.Parameter]],
    optimizer: torch.optim.Optimizer | None,
    tracked: list[tuple[str, nn.Parameter]],
    *,
    buffer: StepBuffer,
    record: Record,
    hist_sample: int | None,
    fixed_batch: Any = None,
    keep_inputs: bool = False,
    layouts: OutputLayouts | None = None,
) -> list[Quantity]:
    """The quantities of one monitor: per layer (when ``leaves``, the recorded layers, is not empty), per parameter,
    per step; ``tracked`` are the parameters the optimizer holds; ``layouts`` tells sharded and replicated outputs
    apart (tensor parallelism, :mod:`nbdiag.sharding`)."""
    kinds: list[Any] = [DeviceScalars(record)]
    if leaves:
        kinds += [Activations(leaves, buffer, hist_sample, layouts), OutputGradients(buffer, hist_sample, layouts)]
    weights = Weights(params, optimizer, buffer)
    if layouts is not None:  # what cannot be read on shards is said once, with the parameters' gaps
        weights.unrecorded = layouts.unrecorded
    kinds.append(weights)
    if tracked:
        kinds.append(Updates(tracked, optimizer, buffer))
    zeroed = [p for _, p in (tracked if optimizer is not None else params)]  # what zero_grad() clears
    kinds.append(StaleGradients(zeroed, buffer))
    filters = first_filters(model)
    if filters is not None:
        kinds.append(FromTensor(filters, {"filters": filters.meta()}))
    if fixed_batch is not None:
        kinds.append(FromTensor(PredictionProbe(model, fixed_batch)))
    if leaves:
        kinds.append(Units(leaves, buffer, layouts))
    kinds += [TrainingModes(mode_modules(model)), FrozenAtInitLayers(model, optimizer)]
    if keep_inputs:
        kinds.append(Inputs(model, buffer))
    if leaves:
        kinds.append(DynamicRange(buffer))
    return kinds
