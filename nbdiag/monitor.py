"""Monitor = probe + quantities + record + sampling schedule: the lifecycle (attach, step, validate, close);
``watch()`` builds one. What is measured is :mod:`nbdiag.quantities`'; how a sampled step becomes a record entry,
:mod:`nbdiag.step`'s."""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import nn

from nbdiag.activation_types import activation_kind
from nbdiag.buffer import StepBuffer
from nbdiag.capture import MAX_PASSES_PER_STEP, Capture
from nbdiag.config import DEFAULT_HIST_SAMPLE, WatchConfig
from nbdiag.environment import resolve_display
from nbdiag.errors import ErrorReport, NbdiagWarning
from nbdiag.findings import findings_text
from nbdiag.inputs import latest_sample
from nbdiag.meta import TRANSFORM_CALLS
from nbdiag.predictions import PredictionHistory
from nbdiag.probe import layer_type, leaf_modules, named_parameters, unwrap_model, unwrap_optimizer
from nbdiag.quantities import quantities_for
from nbdiag.quantities.base import Quantity
from nbdiag.quantities.mode import TrainingModes
from nbdiag.quantities.scalars import DeviceScalars, split_scalars
from nbdiag.record import Record
from nbdiag.record_reader import RecordReader
from nbdiag.schedule import Schedule
from nbdiag.sharding import OutputLayouts
from nbdiag.step import flush_step, update_meta
from nbdiag.watched import check_inputs, records_activations, reshape_only, tracked_params, usable_optimizer

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
    config = WatchConfig(
        every=every,
        dense=dense,
        capacity=capacity,
        hist_sample=hist_sample,
        num_classes=num_classes,
        run_dir=run_dir,
        per_rank=per_rank,
        activations=activations,
        objective=objective,
        inputs=inputs,
        display=display,
    )
    return Monitor(model, optimizer, config, fixed_batch=fixed_batch)


class Monitor(RecordReader):
    """Hooks on a model, a sampling schedule and the record they fill. Build it with :func:`watch`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        config: WatchConfig | None = None,
        *,
        fixed_batch: Any = None,
    ) -> None:
        """See :func:`watch`; ``config`` holds its keywords (default: ``WatchConfig()``)."""
        config = WatchConfig() if config is None else config
        if not isinstance(config, WatchConfig):
            raise TypeError(f"got config of type {type(config).__name__}, expected a WatchConfig; try watch(model)")
        optimizer = usable_optimizer(unwrap_optimizer(optimizer))
        check_inputs(model, optimizer)
        shown = resolve_display(config.display)
        self.config = config
        self.schedule = Schedule(every=config.every, dense=config.dense)
        self.record = Record(capacity=config.capacity)
        self.num_classes = config.num_classes
        self._step = 0
        self._closed = False
        self._reported_errors = 0
        self._warned_sources: set[str] = set()
        self._dashboard = None
        self._model: nn.Module | None = unwrap_model(model)
        self.model_name = layer_type(self._model)  # the user's class name, also under FSDP2
        record_activations = records_activations(model, config.activations)
        self._claim(self._model)
        leaves = leaf_modules(self._model) if record_activations else []
        params = named_parameters(self._model)
        buffer = StepBuffer()
        tracked = tracked_params(params, optimizer)
        # off in run directories unless asked, and with activations (a compiled model keeps one whole graph)
        keep_inputs = (config.run_dir is None and record_activations) if config.inputs is None else config.inputs
        layouts = OutputLayouts(leaves)  # sharded / replicated outputs under tensor parallelism
        self._quantities = quantities_for(
            self._model,
            leaves,
            params,
            optimizer,
            tracked,
            buffer=buffer,
            record=self.record,
            hist_sample=config.hist_sample,
            fixed_batch=fixed_batch,
            keep_inputs=keep_inputs,
            layouts=layouts,
        )
        self._scalars = _one(self._quantities, DeviceScalars)
        self._modes = _one(self._quantities, TrainingModes)
        stepped = None if optimizer is None else [p for _, p in (tracked or params)]  # whose optimizer steps count
        self._capture = Capture(self._model, leaves, self._quantities, buffer, self.record.errors, stepped)
        self.predictions = PredictionHistory(self.record) if fixed_batch is not None else None
        self.record.update_meta(
            model=self.model_name,
            layer_types={name: layer_type(m) for name, m in leaves},
            activation_kinds={name: kind for name, m in leaves if (kind := activation_kind(m))},
            not_recorded=reshape_only(self._model),
            num_classes=config.num_classes,
            parameters=sum(p.numel() for _, p in params),
            objective=config.objective,
        )
        update_meta(self.record, self._quantities)
        self._aggregate = _distributed_aggregator(self._model, config.per_rank)
        if self._aggregate is not None:  # which outputs are sharded or replicated over ranks
            self._aggregate.outputs = layouts
        self._writer = _run_writer(config.run_dir, self)
        # A monitor dropped without close() (a re-run notebook cell) still detaches its hooks and ends its writer;
        # the callback holds the parts, never the monitor, so it cannot keep the monitor alive.
        self._finalizer = weakref.finalize(self, _release, self._capture, self._writer)
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
        numbers, device_tensors = split_scalars(values)
        self.record.add_scalars(self._step, numbers)
        self._scalars.add(self._step, device_tensors)
        if self._capture.attached:
            self._flush(self._step)
        elif self._scalars.full:
            self._scalars.read_now()
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
        numbers, device_tensors = split_scalars({k: v for k, v in values.items() if v is not None})
        step = max(self._step - 1, 0)
        if not self._closed:  # count validate() calls that found dropout/batch norm in train mode (health.mode)
            self.record.update_meta(validation_mode=self._modes.at_validation(self.record.meta.validation_mode))
        self.record.add_scalars(step, numbers)
        self._scalars.add(step, device_tensors)

    def close(self) -> None:
        """Remove every hook and release the model. Idempotent; the record stays readable."""
        if self._closed:
            return
        self._capture.detach()
        self._scalars.read_now()
        self._finalizer()  # writer closed (queue drained), hooks and model references released
        if self._dashboard is not None:
            self._finish_dashboard()
        self._closed = True
        if self._model is not None and _WATCHED.get(id(self._model)) is self:
            del _WATCHED[id(self._model)]
        self._model = None

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

        save_record(self.record, path, self.config)

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

    def _flush(self, step: int) -> None:
        capture = self._capture
        if capture.failed:
            capture.detach()
            return
        try:
            capture.drop_unfinished_pass()  # an exception mid-step must not leak partial stats into this one
            if capture.passes > MAX_PASSES_PER_STEP:
                self._warn_overflow(step, capture.passes)
            flush_step(step, self._quantities, capture.buffer, self.record, self._aggregate)
            if capture.transformed_calls and TRANSFORM_CALLS not in self.record.meta.skipped:  # said once
                self.record.update_meta(skipped={**self.record.meta.skipped, TRANSFORM_CALLS: step})
        except Exception as error:  # never break training
            capture.failed = True
            self.record.errors.add("flush", error, step=step)
            capture.detach()
        finally:
            capture.new_step()

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

    return RunWriter(run_dir, monitor.record, config=monitor.config)


def _release(capture: Capture, writer: Any) -> None:
    """Detach every hook, finish the run directory and drop the model (close(), or a monitor collected unclosed)."""
    capture.release()
    if writer is not None:
        writer.close()


def _one(quantities: list[Quantity], kind: type) -> Any:
    """The quantity of class ``kind`` (the monitor talks to the scalars and modes directly)."""
    return next(q for q in quantities if isinstance(q, kind))


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
