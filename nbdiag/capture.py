"""The hooks of a sampled step: they reduce tensors to stats vectors on the device and never keep a tensor."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from nbdiag.buffer import StepBuffer
from nbdiag.errors import ErrorLog
from nbdiag.probe import Hooks, in_backward, module_outputs, under_transform
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
        self._pass_modules: set[int] = set()  # modules recorded in this pass (a recomputation skips them)
        self.transformed_calls = 0  # forward calls skipped inside torch.func transforms, since watch()
        self.param_grad_rows: dict[str, torch.Tensor] = {}
        self.stale_grad_norm: torch.Tensor | None = None  # (2,): stale norm, carried (1) / reset (0) / unknown (NaN)
        self._held_grads: list[tuple[torch.Tensor, weakref.ref | None]] | None = None  # (param, its grad) at flush
        self.errors = errors
        self.step: int | None = None  # the step being captured (for error reports)
        self.failed = False
        self._bounds = {id(m): output_bounds(m) for _, m in leaves}
        # the modules whose forward is recorded, by id, identity-checked through a weak reference
        self._watched = {id(m): (name, weakref.ref(m)) for name, m in leaves}
        self._step_depth = 0  # optimizer steps open on the watched parameters (a wrapper's step holds its inner one)
        self.update_rows: dict[str, torch.Tensor] = {}  # this step's update rows, by parameter name
        self.base_rows: dict[str, torch.Tensor] = {}  # and ||w|| before the step (sharded merges)
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
        registrations: list[tuple[torch.Tensor | None, Callable[[], Any]]] = []
        if self.leaves:  # per-pass statistics exist only with layer hooks (a compiled model keeps one whole graph)
            registrations += [  # global hooks, filtered by identity: a deep copy of the model never inherits them
                (None, functools.partial(register_module_forward_pre_hook, self._guard(self._on_any_pre_forward))),
                (None, functools.partial(register_module_forward_hook, self._guard(self._on_any_forward))),
            ]
        on_first_grad = self._guard(self._on_incoming_grad)
        registrations += [(p, functools.partial(p.register_hook, on_first_grad)) for p in self._zeroed_params]
        if self.optimizer is not None:  # gradients read just before the step (after DDP's all-reduce)
            # global step hooks: whichever optimizer steps the watched parameters is measured (a wrapper's inner
            # optimizer, SAM's base_optimizer), found by parameter identity; a copied optimizer inherits nothing
            registrations += [
                (None, functools.partial(register_optimizer_step_pre_hook, self._guard(self._before_step))),
                (None, functools.partial(register_optimizer_step_post_hook, self._guard(self._after_step))),
            ]
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
        self._unit_specs, self.unit_counts, self._watched = {}, {}, {}

    def new_step(self) -> None:
        """Forget per-step state (called after the step's statistics were flushed); note which gradient tensors
        the parameters hold now, by weak reference, to tell at the next sampled step whether they were kept."""
        self.param_grad_rows = {}
        self.update_rows, self.base_rows = {}, {}
        self._step_depth = 0
        self.unit_counts = {}
        self.stale_grad_norm = None
        self._grad_seen = False
        self._in_backward = False
        self.passes = 0
        self._pass_modules = set()
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

    def _on_any_pre_forward(self, module: nn.Module, inputs: Any) -> None:
        """The global forward pre-hook: only the watched model's own root counts."""
        if module is self.model:
            self._on_pass_start(module, inputs)

    def _on_any_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """The global forward hook: a watched leaf (the very module, not a copy with a reused id), then the root."""
        entry = self._watched.get(id(module))
        if entry is not None and entry[1]() is module:
            self._on_forward(entry[0], module, inputs, output)
        if module is self.model:
            self._on_pass_end(module, inputs, output)

    def _on_forward(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return  # an evaluation pass under no_grad
        if under_transform(output):  # torch.func (per-sample gradients, DP-SGD): noted once, never reduced
            self.transformed_calls += 1
            return
        if in_backward():  # activation checkpointing recomputes the forward: record a module once per pass
            if id(module) in self._pass_modules:
                return
        elif self._in_backward or not self.passes:  # the step's first forward, or the first after a backward
            self._in_backward, self.passes = False, self.passes + 1
            self._pass_modules = set()
        self._pass_modules.add(id(module))
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
        if not torch.is_grad_enabled() or in_backward():
            return  # an evaluation pass, or a recomputation (activation checkpointing)
        self.drop_unfinished_pass()
        self._pass_mark = (self.buffer.mark(), dict(self.unit_counts))
        self._forward_open = True

    def _on_pass_end(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if torch.is_grad_enabled() and not in_backward():
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

    def _held_by(self, optimizer: Any) -> list[int]:
        """Indices (into the tracked parameters) of those ``optimizer`` holds, by identity."""
        held = {id(p) for group in getattr(optimizer, "param_groups", ()) for p in group["params"]}
        tracked = self.updates.params if self.updates is not None else [p for _, p in self.params]
        return [i for i, p in enumerate(tracked) if id(p) in held]

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Any optimizer's step is about to run: the first (outermost) one that holds watched parameters is read."""
        if self._step_depth:  # an optimizer stepped inside another's step (a wrapper's inner optimizer)
            self._step_depth += 1
            return
        held = self._held_by(optimizer)
        if not held:
            return  # another model's optimizer, or a copy's
        self._step_depth = 1
        self._read_grads()
        if self.updates is not None:
            self.updates.before_step(held)

    def _read_grads(self, missing_only: bool = False) -> None:
        names = [name for name, p in self.params if p.grad is not None and not self._partial(name, p.grad)]
        if missing_only:
            names = [name for name in names if name not in self.param_grad_rows]
        if names:
            rows = grad_matrix([self._param_by_name[name].grad for name in names])
            self.param_grad_rows.update(zip(names, rows, strict=True))

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self._step_depth:
            return
        self._step_depth -= 1
        if self._step_depth:
            return
        self._read_grads(missing_only=True)  # a closure (LBFGS) computed them inside step()
        measured = None if self.updates is None else self.updates.after_step()
        if measured is not None:
            indices, values = measured
            self.update_rows.update((self.update_names[i], row) for i, row in zip(indices, values, strict=True))
            self.buffer.add_group("update", list(self.update_rows), torch.stack(list(self.update_rows.values())))
            if self._sharded_updates:  # the shards' ||w|| before the step: the merged ratio's denominator
                bases = zip(indices, self.updates.base_norms, strict=True)
                self.base_rows.update((self.update_names[i], norm) for i, norm in bases)
                base_norms = torch.stack(list(self.base_rows.values()))[:, None]
                self.buffer.add_group(UPDATE_BASE_GROUP, list(self.base_rows), base_norms)
