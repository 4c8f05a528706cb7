"""Monitor = probe + stats + record + sampling schedule; ``watch()`` builds one."""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from nbdiag.activation_types import activation_kind
from nbdiag.capture import MAX_PASSES_PER_STEP, MODEL_STATS, Capture
from nbdiag.environment import resolve_display
from nbdiag.errors import ErrorReport, NbdiagWarning
from nbdiag.filters import first_filters
from nbdiag.findings import findings_text
from nbdiag.frozen_init import as_meta, frozen_at_init
from nbdiag.health.objective import check_objective
from nbdiag.inputs import GROUP as INPUTS_GROUP
from nbdiag.inputs import InputSampler, inputs_block, latest_sample
from nbdiag.modes import mode_modules, training_flags
from nbdiag.predictions import PredictionHistory, PredictionProbe
from nbdiag.probe import (
    RESHAPE_ONLY,
    can_hook_steps,
    is_compiled,
    layer_type,
    leaf_modules,
    named_parameters,
    unwrap_model,
    unwrap_optimizer,
)
from nbdiag.quantity import StepQuantity
from nbdiag.record import Block, NonFinite, Record, StepEntry
from nbdiag.record_reader import RecordReader
from nbdiag.schedule import Schedule
from nbdiag.stats import ACTIVATION_STATS, GRADIENT_STATS, derive, histogram_counts
from nbdiag.units import COUNT_ROWS, GROUP_PREFIX, UnitWindow, split_groups
from nbdiag.weights import (
    GRAD_ROW_STATS,
    NONFINITE_STAT,
    UPDATE_STATS,
    WEIGHT_STATS,
    group_column,
    weight_matrix,
)

DEFAULT_HIST_SAMPLE = 4_096
MAX_PENDING_SCALARS = 256  # accelerator scalars read in one copy at the latest after this many


# id(model) -> the open monitor watching it. Weak values: the registry never keeps a monitor (or, through it, the
# model, optimizer and record) alive; a live monitor holds its model, so the id cannot be reused meanwhile.
_WATCHED: weakref.WeakValueDictionary[int, Monitor] = weakref.WeakValueDictionary()


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    every: int = 10,
    fixed_batch: Any = None,
    display: bool | str | None = None,
    dense: int = 10,
    capacity: int = 512,
    hist_sample: int | None = DEFAULT_HIST_SAMPLE,
    num_classes: int | None = None,
    run_dir: str | None = None,
    per_rank: bool | None = None,
    activations: bool | None = None,
    objective: str | None = None,
    inputs: bool | None = None,
) -> Monitor:
    """Attach nbdiag to a live model; statistics are recorded on sampled steps.

    Args:
        model: the ``nn.Module`` being trained (DDP and ``torch.compile`` wrappers are unwrapped for naming).
        optimizer: its optimizer, to measure the update/weight ratio across ``optimizer.step()``.
        every: sample every ``every``-th step (plus the first ``dense`` steps). Unsampled steps run no hook.
        fixed_batch: an ``(x, y)`` batch whose predictions are recorded on sampled steps.
        display: how the dashboard is shown: "widget" (FigureWidget and controls), "inline" (one output updated
            in place, no widget manager needed), "static" (PNG and text, drawn again at close) or False (nothing).
            None (auto): ``NBDIAG_DISPLAY`` if set, else chosen for the front end (inline on Colab and VS Code,
            widget in JupyterLab and Notebook 7, nothing outside a notebook); see :mod:`nbdiag.environment`.
        dense: how many first steps are all sampled.
        capacity: sampled steps held in memory; past it, older history is thinned.
        hist_sample: histogram at most this many elements per tensor (strided subsample); None = exact.
        num_classes: number of classes, for the chance-level loss -ln(1/C) in views and health rules.
        run_dir: also write the record there as it grows (Parquet segments; see ``nbdiag.open_run``).
        per_rank: under torch.distributed, also keep each rank's activation/gradient rows as ``<layer>@rank<r>``
            (None: the ``NBDIAG_PER_RANK`` environment variable).
        inputs: keep a few samples of the tensor entering ``model.forward`` on sampled steps (``mon.inputs()``);
            None: yes, unless ``run_dir`` is given (samples of user data are not written to disk unless asked) or
            activations are not recorded (its forward pre-hook would break a compiled graph too).
        activations: record per-layer activations and output gradients (forward hooks). None: yes, except for a
            ``torch.compile``d model, where hooks would break the compiled graph (parameters only, with a warning).
        objective: what the logged losses are meant to do, for the loss rules: "supervised" (the loss should
            fall), "gan" (a game: discriminator/generator rules instead), "policy_gradient" or "custom" (no verdict
            on the loss's trend). None: inferred from the scalar names given to ``step()`` (``loss_d``/``loss_g``,
            ``errD``/``errG``, ``D_x``/``D_G_z`` mean a GAN; ``reward``/``return``/``policy`` policy gradient), else
            supervised. See :mod:`nbdiag.health.objective`.

    Returns:
        The :class:`Monitor`; also a context manager that detaches every hook on exit.

    Raises:
        TypeError, ValueError: for a model that is not a module; a bad ``every``, ``dense``, ``capacity``, ``display``,
            ``objective``.
    """
    return Monitor(
        model,
        optimizer,
        every=every,
        fixed_batch=fixed_batch,
        display=display,
        dense=dense,
        capacity=capacity,
        hist_sample=hist_sample,
        num_classes=num_classes,
        run_dir=run_dir,
        per_rank=per_rank,
        activations=activations,
        objective=objective,
        inputs=inputs,
    )


class Monitor(RecordReader):
    """Hooks on a model, a sampling schedule and the record they fill. Build it with :func:`watch`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        every: int = 10,
        fixed_batch: Any = None,
        display: bool | str | None = None,
        dense: int = 10,
        capacity: int = 512,
        hist_sample: int | None = DEFAULT_HIST_SAMPLE,
        num_classes: int | None = None,
        run_dir: str | None = None,
        per_rank: bool | None = None,
        activations: bool | None = None,
        objective: str | None = None,
        inputs: bool | None = None,
    ) -> None:
        optimizer = _usable_optimizer(unwrap_optimizer(optimizer))
        _check_inputs(model, optimizer, hist_sample)
        shown = resolve_display(display)
        check_objective(objective)
        self.schedule = Schedule(every=every, dense=dense)
        self.record = Record(capacity=capacity)
        self._units = UnitWindow()
        self.num_classes = num_classes
        self._step = 0
        self._closed = False
        self._reported_errors = 0
        self._warned_sources: set[str] = set()
        self._pending_scalars: list[tuple[int, str, torch.Tensor]] = []
        self._dashboard = None
        self._model: nn.Module | None = unwrap_model(model)
        self.model_name = layer_type(self._model)  # the user's class name, also under FSDP2
        record_activations = _records_activations(model, activations)
        self._claim(self._model)
        params = named_parameters(self._model)
        self._params = params
        self._capture = Capture(
            self._model,
            leaf_modules(self._model) if record_activations else [],
            params,
            optimizer,
            _tracked_params(params, optimizer),
            hist_sample,
            self.record.errors,
        )
        self._filters = first_filters(self._model)
        # off in run directories unless asked, and with activations (a compiled model keeps one whole graph)
        keep_inputs = (run_dir is None and record_activations) if inputs is None else bool(inputs)
        self._inputs = InputSampler(self._model) if keep_inputs else None
        self._quantities = _quantities(self._model, fixed_batch, self._filters)
        self.predictions = PredictionHistory(self.record) if fixed_batch is not None else None
        self._mode_modules = mode_modules(self._model)
        self.record.meta.update(
            model=self.model_name,
            layer_types={name: layer_type(m) for name, m in self._capture.leaves},
            activation_kinds={name: kind for name, m in self._capture.leaves if (kind := activation_kind(m))},
            not_recorded=_reshape_only(self._model),
            num_classes=num_classes,
            parameters=sum(p.numel() for _, p in params),
            filters=None if self._filters is None else self._filters.meta(),
            frozen_at_init=as_meta(_frozen_outside_optimizer(self._model, optimizer)),
            every=every,
            dense=dense,
            hist_sample=hist_sample,
            objective=objective,
        )
        self._aggregate = _distributed_aggregator(self._model, per_rank)
        self._writer = _run_writer(run_dir, self)
        # A monitor dropped without close() (a re-run notebook cell) still detaches its hooks and ends its writer;
        # the callback holds the parts, never the monitor, so it cannot keep the monitor alive.
        self._finalizer = weakref.finalize(self, _release, self._capture, self._writer, self._quantities, self._inputs)
        self._sync_hooks()
        self._report_errors()
        if shown:
            self.show(shown)

    # -- the training loop's side --------------------------------------------------------------------------
    @property
    def current_step(self) -> int:
        """The step now being trained (0-based); ``step()`` advances it."""
        return self._step

    def sampled(self, step: int) -> bool:
        """Whether ``step`` is recorded."""
        return self.schedule.sampled(step)

    def step(self, loss: Any = None, **scalars: Any) -> None:
        """End the current step: log scalars, flush the step's statistics if it was sampled, advance.

        Args:
            loss: the step's loss (a float or a 0-d tensor; tensors are read without a graph).
            **scalars: any other per-step numbers (accuracy, learning rate, validation loss, ...).
        """
        if self._closed:
            warnings.warn("Monitor.step() after close(): nothing is recorded", NbdiagWarning, stacklevel=2)
            return
        values = dict(scalars) if loss is None else {"loss": loss, **scalars}
        numbers, device_tensors = _split_scalars(values)
        self.record.add_scalars(self._step, numbers)
        self._pending_scalars.extend((self._step, name, t) for name, t in device_tensors.items())
        if self._capture.attached:
            self._flush(self._step)
            self._note_unrecorded()
        elif len(self._pending_scalars) >= MAX_PENDING_SCALARS:
            self._read_pending_scalars()
        self._report_errors()
        self._step += 1
        self._sync_hooks()

    def inputs(self):
        """A few samples of the tensor that entered ``model.forward`` at the latest sampled step, or None.

        Returns:
            An :class:`nbdiag.inputs.InputSample`: ``values`` in the input's shape, its ``kind`` ('images',
            'token ids', 'tabular'), ``value_range`` and ``features()`` (per-feature mean/std); printing it says
            all that in a line.
        """
        return latest_sample(self.record)

    def validate(self, val_loss: Any = None, val_acc: Any = None, **scalars: Any) -> None:
        """Log validation results at the last trained step (call it after an evaluation pass, at any cadence).

        Same as passing ``val_loss=``/``val_acc=`` to the last ``step()``; they feed the train/validation gap
        rules (``train.overfitting``, ``train.underfitting``) and the dashboard's gap panel.

        Args:
            val_loss: the loss over the validation set (a float or a 0-d tensor).
            val_acc: the accuracy over the validation set, in [0, 1].
            **scalars: other validation numbers (names should start with ``val_``).
        """
        values = {"val_loss": val_loss, "val_acc": val_acc, **scalars}
        numbers, device_tensors = _split_scalars({k: v for k, v in values.items() if v is not None})
        step = max(self._step - 1, 0)
        self._note_validation_mode()
        self.record.add_scalars(step, numbers)
        self._pending_scalars.extend((step, name, t) for name, t in device_tensors.items())

    def _note_validation_mode(self) -> None:
        """Count validate() calls that found dropout/batch norm in train mode (read by health.mode)."""
        in_train = [name for name, module in self._mode_modules if module.training]
        seen = self.record.meta.setdefault("validation_mode", {"calls": 0, "train_mode_calls": 0, "layers": []})
        seen["calls"] += 1
        if in_train:
            seen["train_mode_calls"] += 1
            seen["layers"] = in_train[:8]

    def close(self) -> None:
        """Remove every hook and release the model. Idempotent; the record stays readable."""
        if self._closed:
            return
        self._capture.detach()
        if self._inputs is not None:
            self._inputs.detach()
            self._inputs.model = None
        self._read_pending_scalars()
        self._finalizer()  # writer closed (queue drained), hooks and model references released
        if self._dashboard is not None:
            self._finish_dashboard()
        self._closed = True
        if self._model is not None and _WATCHED.get(id(self._model)) is self:
            del _WATCHED[id(self._model)]
        self._model, self._params, self._mode_modules, self._filters = None, [], [], None

    def _finish_dashboard(self) -> None:
        try:
            self._dashboard.finish()
        except Exception as error:  # a view must never turn close() into a failure
            self.record.errors.add("dashboard", error, context="the final redraw")
            warnings.warn(f"the dashboard could not show the final state: {error}", NbdiagWarning, stacklevel=3)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def errors(self) -> list[ErrorReport]:
        """nbdiag's own failures, with tracebacks: hooks and flush (capture switched off), prediction probe, run
        writer, dashboard renderer, health rules. Training continued through every one of them."""
        return self.record.errors.reports()

    def save(self, path: str) -> None:
        """Write the record to a run directory at ``path`` (read it back with ``nbdiag.open_run``)."""
        from nbdiag.runs.writer import save_record

        save_record(self.record, path)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"step {self._step}"
        head = f"<nbdiag.Monitor {self.model_name}: {state}, every={self.schedule.every}, "
        head += f"{len(self.record.steps())} sampled steps>"
        table = self.summary()
        body = table.to_string(float_format=lambda v: f"{v:.3g}") if len(table) else "(nothing recorded yet)"
        skipped = table.attrs.get("not_recorded") if len(table) else None
        if skipped:
            body += "\nnot recorded (reshape only): " + ", ".join(f"{n} · {t}" for n, t in skipped.items())
        found = self.findings()
        return f"{head}\n{body}\n\nfindings:\n{findings_text(found)}"

    # -- internals -----------------------------------------------------------------------------------------
    def _claim(self, model: nn.Module) -> None:
        previous = _WATCHED.get(id(model))
        if previous is not None and previous._model is model and not previous.closed:
            warnings.warn(
                f"{type(model).__name__} was already watched by another Monitor; that one is closed now so hooks "
                "are not doubled (its record stays readable). Use one monitor per model.",
                NbdiagWarning,
                stacklevel=4,
            )
            previous.close()
        _WATCHED[id(model)] = self

    def _sync_hooks(self) -> None:
        if self._closed:
            return
        if self.sampled(self._step):
            self._capture.step = self._step
            self._capture.attach()
        else:
            self._capture.detach()
        if self._inputs is not None:  # with capture: only on sampled steps, and gone once capture failed
            if self.sampled(self._step) and not self._capture.failed:
                self._inputs.attach()
            else:
                self._inputs.detach()

    def _flush(self, step: int) -> None:
        capture = self._capture
        if capture.failed:
            capture.detach()
            return
        try:
            capture.drop_unfinished_pass()  # an exception mid-step must not leak partial stats into this one
            self._queue_param_stats()
            self._queue_quantities(step)
            pending, self._pending_scalars = self._pending_scalars, []
            if pending:
                capture.buffer.add_group("scalars", [n for _, n, _ in pending], torch.stack([t for *_, t in pending]))
            if capture.passes > MAX_PASSES_PER_STEP:
                self._warn_overflow(step, capture.passes)
            vectors, groups = capture.buffer.flush()
            if self._aggregate is not None:  # torch.distributed: exact statistics over all ranks
                vectors, groups = self._aggregate(vectors, groups)
            self._add_pending_scalars(pending, groups.pop("scalars", (None, None))[1])
            units = self._units.block(step, split_groups(groups), capture.unit_layers)
            blocks = _blocks(vectors, groups, capture.bounded_layers)
            blocks.update(self._quantity_blocks(step, groups))
            if units is not None:
                blocks["units"] = units
            blocks.update(self._recipe_blocks(groups))
            self.record.append(StepEntry(step, blocks))
            self._note_nonfinite(step, vectors, groups)
        except Exception as error:  # never break training
            capture.failed = True
            self.record.errors.add("flush", error, step=step)
            capture.detach()
        finally:
            capture.new_step()

    def _queue_quantities(self, step: int) -> None:
        """Each step quantity's device values join the step's one copy; a failing quantity skips this step only."""
        for quantity in self._quantities:
            try:
                captured = quantity.capture()
            except Exception as error:  # never break training (nor the other statistics)
                self.record.errors.add(quantity.kind, error, step=step)
                continue
            if captured is not None:
                self._capture.buffer.add_group(quantity.kind, *captured)

    def _quantity_blocks(self, step: int, groups: dict) -> dict[str, Block]:
        blocks = {}
        for quantity in self._quantities:
            if quantity.kind in groups:
                try:
                    blocks[quantity.kind] = quantity.block(*groups.pop(quantity.kind))
                except Exception as error:
                    self.record.errors.add(quantity.kind, error, step=step)
        return blocks

    def _queue_param_stats(self) -> None:
        capture = self._capture
        names = [n for n, _ in self._params]
        if names:
            capture.buffer.add_group("weight", names, weight_matrix([p for _, p in self._params]))
        if capture.param_grad_rows:
            grad_names = list(capture.param_grad_rows)
            capture.buffer.add_group("param_grad", grad_names, torch.stack(list(capture.param_grad_rows.values())))
        for layer, counts in capture.unit_counts.items():
            capture.buffer.add_group(GROUP_PREFIX + layer, COUNT_ROWS, counts)
        if capture.stale_grad_norm is not None:
            capture.buffer.add_group("model", ["(model)"], capture.stale_grad_norm.reshape(1, len(MODEL_STATS)))
        sample = None if self._inputs is None else self._inputs.take()
        if sample is not None:
            self.record.meta["inputs"] = {"shape": list(self._inputs.shape), "dtype": self._inputs.dtype}
            capture.buffer.add_group(INPUTS_GROUP, [f"sample {i}" for i in range(len(sample))], sample)

    def _recipe_blocks(self, groups: dict) -> dict[str, Block]:
        """The train/eval mode of dropout/batch norm (read now, on the host) and the sampled model inputs."""
        blocks = {}
        if self._mode_modules:
            names = tuple(name for name, _ in self._mode_modules)
            blocks["mode"] = Block(names, ("training",), training_flags(self._mode_modules))
        if INPUTS_GROUP in groups:
            blocks[INPUTS_GROUP] = inputs_block(*groups.pop(INPUTS_GROUP))
        return blocks

    def _read_pending_scalars(self) -> None:
        pending, self._pending_scalars = self._pending_scalars, []
        if pending:
            values = torch.stack([t.float() for *_, t in pending]).cpu().numpy()
            self._add_pending_scalars(pending, values)

    def _add_pending_scalars(self, pending: list, values: np.ndarray | None) -> None:
        by_step: dict[int, dict[str, float]] = {}
        for (step, name, _), value in zip(pending, [] if values is None else values.reshape(-1), strict=False):
            by_step.setdefault(step, {})[name] = float(value)
        for step, step_values in by_step.items():
            self.record.add_scalars(step, step_values)

    def _note_nonfinite(self, step: int, vectors: dict, groups: dict) -> None:
        """Record the first non-finite tensor: activations in forward order, then output gradients, then parameters."""
        for kind in ("activation", "gradient"):
            if kind in vectors:
                layers, values = vectors[kind]
                if self._note_first_bad(step, kind, layers, derive(values, ("nonfinite",))[:, 0]):
                    return
        for group, kind in (("param_grad", "gradient"), ("weight", "weight")):
            if group in groups:
                names, values = groups[group]
                column = group_column(group, NONFINITE_STAT[group])
                if self._note_first_bad(step, kind, names, values[:, column]):
                    return

    def _note_unrecorded(self) -> None:
        """Say once (record meta ``not_recorded_sharded`` and a warning) which sharded tensors are not recorded."""
        said = self.record.meta.get("not_recorded_sharded", {})
        new = {name: why for name, why in self._capture.unrecorded.items() if name not in said}
        if new:
            self.record.meta["not_recorded_sharded"] = {**said, **new}
            reasons = "; ".join(f"{name}: {why}" for name, why in new.items())
            warnings.warn(f"not recorded for these layers: {reasons}", NbdiagWarning, stacklevel=3)

    def _note_first_bad(self, step: int, kind: str, names: list[str], counts: np.ndarray) -> bool:
        bad = np.flatnonzero(counts > 0)
        if len(bad):
            self.record.note_nonfinite(NonFinite(step, names[bad[0]], kind, float(counts[bad[0]])))
        return len(bad) > 0

    def _warn_overflow(self, step: int, passes: int) -> None:
        warnings.warn(
            f"step {step} ran {passes} forward/backward passes (more than {MAX_PASSES_PER_STEP}): its statistics "
            "merge all of them. Call mon.step() once per optimizer step.",
            NbdiagWarning,
            stacklevel=4,
        )

    def _report_errors(self) -> None:
        """Warn (on the training thread, once per failing part) about failures logged since the last step."""
        errors = self.record.errors
        if len(errors) == self._reported_errors:
            return
        self._reported_errors = len(errors)
        for report in errors.reports():
            if report.source in self._warned_sources:
                continue
            self._warned_sources.add(report.source)
            warnings.warn(_error_warning(report), NbdiagWarning, stacklevel=3)


_COMPILED_PARAMS_ONLY = (
    "the model is torch.compile'd, so nbdiag records parameters only (weights, gradients, update ratios): hooks "
    "inside the compiled region would break its graph at every layer, and torch.compile keeps running that broken "
    "graph on unsampled steps too (it does not guard on module hooks). Pass activations=True to also record "
    "activations and output gradients at that cost (benchmarks/compile_overhead.py), or watch an uncompiled copy."
)
_COMPILED_ACTIVATIONS = (
    "the model is torch.compile'd and activations=True: nbdiag's forward hooks run eagerly, so the compiled model "
    "breaks into one graph per layer, on unsampled steps too (torch.compile does not guard on module hooks). Call "
    "watch before the compiled model first runs: hooks added after its first compile are never called."
)


def _records_activations(model: nn.Module, activations: bool | None) -> bool:
    """Whether forward hooks are used: by default not on a compiled model (a warning says why and what it costs)."""
    if activations is not None and not isinstance(activations, bool):
        raise TypeError(f"activations must be True, False or None (auto), got {type(activations).__name__}")
    compiled = is_compiled(model)
    if compiled and activations is None:
        warnings.warn(_COMPILED_PARAMS_ONLY, NbdiagWarning, stacklevel=4)
    elif compiled and activations:
        warnings.warn(_COMPILED_ACTIVATIONS, NbdiagWarning, stacklevel=4)
    return not compiled if activations is None else activations


def _check_inputs(model: Any, optimizer: Any, hist_sample: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"nbdiag.watch expects a torch.nn.Module, got {type(model).__name__}; pass the model itself, "
            "e.g. watch(model, optimizer)"
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}; "
            "e.g. watch(model, torch.optim.SGD(model.parameters(), lr=0.1))"
        )
    if hist_sample is not None and (not isinstance(hist_sample, int) or hist_sample < 1):
        raise ValueError(f"hist_sample must be a positive int or None (exact), got {hist_sample!r}")


def _frozen_outside_optimizer(model: nn.Module, optimizer: Any) -> list:
    """Layers frozen at their random init that the optimizer does not hold either: a fine-tune that froze an
    untrained layer. A layer the optimizer holds may be unfrozen later (a freezing schedule); without an
    optimizer nbdiag cannot tell, and says nothing."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        return []
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    modules = dict(model.named_modules())
    return [
        layer
        for layer in frozen_at_init(model)
        if not any(id(p) in held for p in modules.get(layer.layer, nn.Module()).parameters(recurse=False))
    ]


def _usable_optimizer(optimizer: Any) -> Any:
    """The optimizer, or None (with a warning) for an ``Optimizer`` whose step hooks cannot be registered."""
    if isinstance(optimizer, torch.optim.Optimizer) and not can_hook_steps(optimizer):
        warnings.warn(
            f"{type(optimizer).__name__} never ran torch.optim.Optimizer.__init__, so its steps cannot be hooked: "
            "update/weight ratios are not recorded and gradients are read as they accumulate. Pass the optimizer "
            "it wraps, e.g. watch(model, wrapped.optimizer)",
            NbdiagWarning,
            stacklevel=4,
        )
        return None
    return optimizer


def _reshape_only(model: nn.Module) -> dict[str, str]:
    """Layer name -> type of the reshape-only leaves that are not recorded (their rows would repeat the input's)."""
    return {name: type(m).__name__ for name, m in model.named_modules() if name and isinstance(m, RESHAPE_ONLY)}


def _tracked_params(params: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer | None):
    if optimizer is None:
        return []
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    tracked = [(n, p) for n, p in params if id(p) in in_optimizer]
    if not tracked:
        warnings.warn(
            "the optimizer holds none of the model's parameters, so update/weight ratios are not recorded; "
            "expected an optimizer built from model.parameters()",
            NbdiagWarning,
            stacklevel=5,
        )
    return tracked


def _split_scalars(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Numbers (and CPU tensors) as floats now; accelerator tensors kept (detached) to read later in one copy."""
    numbers, device_tensors = {}, {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"scalar {name!r} must be a number or a 1-element tensor, got shape {tuple(value.shape)}; "
                    "log a reduction such as loss.mean()"
                )
            if value.device.type == "cpu":
                numbers[name] = float(value.detach())
            else:
                device_tensors[name] = value.detach().reshape(())
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            numbers[name] = float(value)
        else:
            raise TypeError(f"scalar {name!r} must be a number or a 1-element tensor, got {type(value).__name__}")
    return numbers, device_tensors


def _blocks(vectors: dict, groups: dict, bounded: set[str]) -> dict[str, Block]:
    blocks = {}
    if "activation" in vectors:
        layers, values = vectors["activation"]
        derived = derive(values, ACTIVATION_STATS)
        saturated = ACTIVATION_STATS.index("saturated_frac")
        derived[[layer.split("@rank")[0] not in bounded for layer in layers], saturated] = np.nan
        blocks["activation"] = Block(
            tuple(layers), ACTIVATION_STATS, derived, histogram_counts(values).astype(np.float32)
        )
    if "gradient" in vectors:
        layers, values = vectors["gradient"]
        blocks["gradient"] = Block(
            tuple(layers),
            GRADIENT_STATS,
            derive(values, GRADIENT_STATS),
            histogram_counts(values).astype(np.float32),
        )
    if "weight" in groups:
        blocks["weight"] = _weight_block(groups)
    if "update" in groups:
        names, values = groups["update"]
        blocks["update"] = Block(tuple(names), UPDATE_STATS, values)
    if "model" in groups:
        names, values = groups["model"]
        blocks["model"] = Block(tuple(names), MODEL_STATS, values)
    return blocks


def _weight_block(groups: dict) -> Block:
    names, weights = groups["weight"]
    grads = np.full((len(names), len(GRAD_ROW_STATS)), np.nan)
    if "param_grad" in groups:
        row = {n: i for i, n in enumerate(names)}
        for name, values in zip(*groups["param_grad"], strict=True):
            grads[row[name]] = values
    return Block(tuple(names), WEIGHT_STATS, np.concatenate([weights, grads], axis=1))


def _distributed_aggregator(model: nn.Module, per_rank: bool | None):
    """Under an initialized torch.distributed process group, the function that merges statistics over ranks."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    from nbdiag.runs.distributed import aggregator

    return aggregator(model, per_rank)


def _run_writer(run_dir: str | None, monitor: Monitor):
    if run_dir is None:
        return None
    from nbdiag.runs.writer import RunWriter

    return RunWriter(run_dir, monitor.record)


def _release(capture: Capture, writer: Any, quantities: list[StepQuantity], inputs: InputSampler | None) -> None:
    """Detach every hook, finish the run directory and drop the model (close(), or a monitor collected unclosed)."""
    capture.release()
    if inputs is not None:
        inputs.detach()
        inputs.model = None
    if writer is not None:
        writer.close()
    for quantity in quantities:
        quantity.release()


def _quantities(model: nn.Module, fixed_batch: Any, filters: StepQuantity | None) -> list[StepQuantity]:
    """The step quantities recorded beside the hooks' statistics (see :mod:`nbdiag.quantity`)."""
    quantities: list[StepQuantity] = [] if filters is None else [filters]
    if fixed_batch is not None:
        quantities.append(PredictionProbe(model, fixed_batch))
    return quantities


def _error_warning(report: ErrorReport) -> str:
    if report.source in ("capture", "flush"):
        return (
            "nbdiag switched monitoring off after an error in its own hooks; training is unaffected. "
            f"Please report it (mon.errors holds the traceback): {report.message}"
        )
    return (
        f"nbdiag's {report.source} failed: {report.message}; training is unaffected. mon.errors holds the "
        "traceback: please report it"
    )
