"""The hooks of a sampled step: they reduce tensors to stats vectors on the device and never keep a tensor."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nbdiag.buffer import StepBuffer
from nbdiag.errors import ErrorLog
from nbdiag.probe import Hooks, module_outputs
from nbdiag.probe import named_hook as _named
from nbdiag.sharding import PARTIAL_REASON, UPDATE_BASE_GROUP, is_dtensor, is_partial
from nbdiag.stats import output_bounds, raw_stats
from nbdiag.units import UnitSpec, add_counts, unit_counts, unit_specs
from nbdiag.weights import UpdateTracker, grad_matrix, norms_fp32, stored_values

# More forward/backward passes than this between two mon.step() calls: mon.step() was probably forgotten. Nothing
# is dropped (repeated calls of a layer merge exactly, in bounded memory); the monitor only warns.
MAX_PASSES_PER_STEP = 64
# The "model" kind, one row per sampled step: see _on_incoming_grad and _carried.
MODEL_STATS = ("stale_grad_norm", "grad_carried")
CARRIED_PROBES = 8  # gradients (of the first zeroed parameters) followed by weak reference from one sampled step on


class Capture:
    """Owns the hooks of one model and the buffer they fill. ``attach()`` / ``detach()`` are idempotent.

    Every hook body is guarded: an exception is logged in ``errors`` (source "capture", with its traceback),
    capture switches itself off, and the user's forward/backward continue untouched. KeyboardInterrupt and other
    BaseExceptions pass through.
    """

    def __init__(
        self,
        model: nn.Module,
        leaves: list[tuple[str, nn.Module]],
        params: list[tuple[str, nn.Parameter]],
        optimizer: torch.optim.Optimizer | None,
        tracked: list[tuple[str, nn.Parameter]],
        hist_sample: int | None,
        errors: ErrorLog,
    ) -> None:
        self.model = model
        self.leaves = leaves
        self.params = params
        self.optimizer = optimizer
        self.hist_sample = hist_sample
        self.updates = UpdateTracker([p for _, p in tracked]) if tracked else None
        self.update_names = [n for n, _ in tracked]
        self._sharded_updates = any(is_dtensor(p) for _, p in tracked)
        self.unrecorded: dict[str, str] = {}  # "<name> (<what>)" -> why it is not recorded (sharded tensors)
        self.buffer = StepBuffer()
        self.passes = 0  # forward passes in this step: a forward after a backward starts a new one
        self.param_grad_rows: dict[str, torch.Tensor] = {}
        self.stale_grad_norm: torch.Tensor | None = None  # (2,): stale norm, carried (1) / reset (0) / unknown (NaN)
        self._held_grads: list[tuple[torch.Tensor, weakref.ref | None]] | None = None  # (param, its grad) at flush
        self.errors = errors
        self.step: int | None = None  # the step being captured (for error reports)
        self.failed = False
        self._bounds = {id(m): output_bounds(m) for _, m in leaves}  # also the set of modules we watch
        self.bounded_layers: set[str] = set()
        self._unit_specs = unit_specs(leaves)  # modules whose units can die or saturate
        self.unit_layers: dict[str, UnitSpec] = {}
        self.unit_counts: dict[str, torch.Tensor] = {}  # this step's per-unit counts, (3, units) on the device
        self._param_by_name = dict(params)
        # gradients that zero_grad() clears: the optimizer's parameters (all parameters without an optimizer)
        self._zeroed_params = [p for _, p in (tracked if optimizer is not None else params)]
        self._hooks = Hooks()
        self._grad_seen = False
        self._attached = False
        self._in_backward = False
        self._output_grad_hooks: dict[str, Callable] = {}  # layer -> its guarded hook, made once
        # A forward or backward pass that raised (or was interrupted) leaves partial statistics in the buffer:
        # they are dropped at the next pass or at the flush, back to the mark taken when that pass began.
        self._pass_mark: tuple[dict, dict] = ({}, {})  # (buffer mark, unit counts) when the pass began
        self._forward_open = False
        self._backward_open = False
        self._registrations = self._make_registrations()

    def _make_registrations(self) -> list[tuple[torch.Tensor | None, Callable[[], Any]]]:
        """(tensor, register) pairs; a tensor hook is registered only while its tensor requires a gradient.

        Each hook function is made once: re-attaching registers the same objects, so torch.compile's guards on
        them hold and a toggled model switches between two cached graphs instead of recompiling.
        """
        on_forward = self._guard(self._on_forward)
        registrations: list[tuple[torch.Tensor | None, Callable[[], Any]]] = [
            (None, functools.partial(module.register_forward_hook, _named(on_forward, name)))
            for name, module in self.leaves
        ]
        if self.leaves:  # per-pass statistics exist only with layer hooks (a compiled model keeps one whole graph)
            registrations += [  # after the leaves' hooks: the root's forward hook then runs last
                (None, functools.partial(self.model.register_forward_pre_hook, self._guard(self._on_pass_start))),
                (None, functools.partial(self.model.register_forward_hook, self._guard(self._on_pass_end))),
            ]
        on_first_grad = self._guard(self._on_incoming_grad)
        registrations += [(p, functools.partial(p.register_hook, on_first_grad)) for p in self._zeroed_params]
        if self.optimizer is not None:  # gradients read just before the step (after DDP's all-reduce)
            optimizer = self.optimizer
            for register, hook in (
                (optimizer.register_step_pre_hook, self._before_step),
                (optimizer.register_step_post_hook, self._after_step),
            ):
                registrations.append((None, functools.partial(register, self._guard(hook))))
        else:  # no optimizer: read each gradient as it is accumulated
            for name, p in self.params:
                hook = self._guard(functools.partial(self._on_grad, name))
                registrations.append((p, functools.partial(p.register_post_accumulate_grad_hook, hook)))
        return registrations

    @property
    def attached(self) -> bool:
        return self._attached

    def attach(self) -> None:
        """Register every hook, or none: if one registration fails, the ones made are removed, the error is kept
        in :attr:`errors` and capture switches itself off (training goes on unobserved)."""
        if self._attached or self.failed:
            return
        try:
            for tensor, register in self._registrations:
                if tensor is None or tensor.requires_grad:  # a frozen parameter takes no gradient hook
                    self._hooks.add(register())
        except Exception as error:
            self._hooks.remove()
            self.failed = True
            self.errors.add("capture", error, step=self.step, context="while attaching hooks")
            return
        self._attached = True

    def detach(self) -> None:
        self._hooks.remove()
        self._attached = False

    def release(self) -> None:
        """Detach and drop every reference to the model, its parameters and the optimizer."""
        self.detach()
        self._registrations, self.model, self.params, self.leaves, self.optimizer = [], None, [], [], None
        self._param_by_name, self._zeroed_params, self.updates, self._held_grads = {}, [], None, None
        self._unit_specs, self.unit_counts = {}, {}

    def new_step(self) -> None:
        """Forget per-step state (called after the step's statistics were flushed); note which gradient tensors
        the parameters hold now, by weak reference, to tell at the next sampled step whether they were kept."""
        self.param_grad_rows = {}
        self.unit_counts = {}
        self.stale_grad_norm = None
        self._grad_seen = False
        self._in_backward = False
        self.passes = 0
        probes = self._zeroed_params[:CARRIED_PROBES]
        self._held_grads = [(p, weakref.ref(p.grad) if p.grad is not None else None) for p in probes]
        self._pass_mark, self._forward_open, self._backward_open = ({}, {}), False, False

    def drop_unfinished_pass(self) -> bool:
        """Drop the statistics of a forward or backward pass that never finished (it raised, or was interrupted);
        returns whether there was one. The monitor calls this before flushing; the next pass calls it too."""
        unfinished = self._forward_open or self._backward_open
        if unfinished:
            buffer_mark, unit_counts_then = self._pass_mark
            self.buffer.rollback(buffer_mark)
            self.unit_counts = dict(unit_counts_then)
            self._forward_open = self._backward_open = False
        return unfinished

    # -- hooks ---------------------------------------------------------------------------------------------
    def _guard(self, hook: Callable) -> Callable:
        @torch.compiler.disable  # under torch.compile the hook runs eagerly: statistics are not traced
        def guarded(*args: Any) -> None:
            if self.failed:
                return None
            try:
                hook(*args)
            except Exception as error:  # never let monitoring break training
                self.failed = True
                self.errors.add("capture", error, step=self.step)
            return None

        return guarded

    def _on_forward(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled() or id(module) not in self._bounds:
            return  # an evaluation pass under no_grad, or a deep copy of the model that inherited the hook
        if self._in_backward or not self.passes:  # the step's first forward, or the first after a backward
            self._in_backward, self.passes = False, self.passes + 1
        bounds, spec = self._bounds[id(module)], self._unit_specs.get(id(module))
        for path, tensor in module_outputs(module, output):
            layer = name + path
            if bounds is not None:
                self.bounded_layers.add(layer)
            self.buffer.add(layer, "activation", raw_stats(tensor, bounds, self.hist_sample))
            if spec is not None:
                self._add_units(layer, spec, tensor)
            if tensor.requires_grad:
                tensor.register_hook(self._output_grad_hook(layer))

    def _output_grad_hook(self, layer: str) -> Callable:
        """The guarded gradient hook of ``layer``'s output, made (and compile-disabled) once per layer."""
        hook = self._output_grad_hooks.get(layer)
        if hook is None:
            hook = self._output_grad_hooks[layer] = self._guard(functools.partial(self._on_output_grad, layer))
        return hook

    def _add_units(self, layer: str, spec: UnitSpec, tensor: torch.Tensor) -> None:
        counts = unit_counts(tensor, spec)
        if counts is not None:
            self.unit_layers[layer] = spec
            self.unit_counts[layer] = add_counts(self.unit_counts.get(layer), counts)

    def _on_output_grad(self, layer: str, grad: torch.Tensor) -> None:
        self._in_backward = True
        if not self._backward_open:  # the pass's first gradient: the engine calls back when the pass completes
            self._backward_open = True
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_done)
        self.buffer.add(layer, "gradient", raw_stats(grad, None, self.hist_sample))

    def _on_backward_done(self) -> None:
        self._backward_open = False

    def _on_pass_start(self, module: nn.Module, inputs: Any) -> None:
        if not torch.is_grad_enabled() or module is not self.model:
            return  # an evaluation pass, or a deep copy of the model that inherited the hook
        self.drop_unfinished_pass()
        self._pass_mark = (self.buffer.mark(), dict(self.unit_counts))
        self._forward_open = True

    def _on_pass_end(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if torch.is_grad_enabled() and module is self.model:
            self._forward_open = False

    def _on_grad(self, name: str, param: torch.Tensor) -> None:
        if param.grad is not None and param is self._param_by_name.get(name) and not self._partial(name, param.grad):
            self.param_grad_rows[name] = grad_matrix([param.grad])[0]

    def _partial(self, name: str, grad: torch.Tensor) -> bool:
        """A gradient still pending a reduction across ranks (a ``Partial`` DTensor: a tensor-parallel replicated
        parameter's) is not read: its local values are not its values. Noted in :attr:`unrecorded`."""
        if not is_partial(grad):
            return False
        self.unrecorded.setdefault(f"{name} (gradient)", PARTIAL_REASON)
        return True

    def _on_incoming_grad(self, grad: torch.Tensor) -> None:
        """Before the step's first gradient accumulation (a leaf's tensor hook runs before its AccumulateGrad), any
        gradient still held is stale: zero_grad was skipped (zeros if it ran with set_to_none=False)."""
        if self._grad_seen:
            return
        self._grad_seen = True
        grads = [stored_values(p.grad) for p in self._zeroed_params if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack(norms_fp32(grads)))
            self.stale_grad_norm = torch.stack([norm, norm.new_tensor(self._carried())])

    def _carried(self) -> float:
        """1.0 when every probed parameter still holds the very gradient tensor it held at the previous sampled
        step's end (nothing released it since: ``zero_grad()`` was not called, or zeroed in place with
        ``set_to_none=False``), 0.0 when one was released or replaced (gradients were reset in between),
        NaN when no probed parameter held a gradient then or now (before the first flushed step, unused ones)."""
        known = [(param, held) for param, held in self._held_grads or () if held is not None or param.grad is not None]
        if not known:
            return float("nan")
        return 0.0 if any(held is None or held() is not param.grad for param, held in known) else 1.0

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is not self.optimizer:  # a deep-copied optimizer inherits the hook too
            return
        names = [name for name, p in self.params if p.grad is not None and not self._partial(name, p.grad)]
        if names:
            rows = grad_matrix([self._param_by_name[name].grad for name in names])
            self.param_grad_rows = dict(zip(names, rows, strict=True))
        if self.updates is not None:
            self.updates.before_step()

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is not self.optimizer or self.updates is None:
            return
        values = self.updates.after_step()
        if values is not None:
            self.buffer.add_group("update", self.update_names, values)
            if self._sharded_updates:  # the shards' ||w|| before the step: the merged ratio's denominator
                self.buffer.add_group(UPDATE_BASE_GROUP, self.update_names, self.updates.base_norms[:, None])
