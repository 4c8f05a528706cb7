"""The hook lifecycle of a sampled step: attach every quantity's hooks (all or none), guard them, tell the passes
apart, drop a pass that raised, and find the watched model's own calls among torch's global hooks. What the hooks
measure is the quantities' (:mod:`nbdiag.quantities`); the step's device state is the
:class:`~nbdiag.buffer.StepBuffer`'s alone.

Module forward (pre-)hooks and optimizer step hooks are torch's *global* ones, filtered by identity (a leaf by
``id`` confirmed through a weak reference, the root by ``is``, an optimizer by the parameters it holds): a deep copy
of the model inherits none, and whichever optimizer steps the watched parameters is measured (a wrapper's inner
optimizer, SAM's base optimizer; steps nested in another's count once, across the outermost)."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from nbdiag.buffer import Mark, StepBuffer
from nbdiag.errors import ErrorLog
from nbdiag.probe import Hooks, in_backward, module_outputs, under_transform
from nbdiag.sharding import style_output

# More forward/backward passes than this between two mon.step() calls: mon.step() was probably forgotten. Nothing
# is dropped (repeated calls of a layer merge exactly, in bounded memory); the monitor only warns.
MAX_PASSES_PER_STEP = 64


class Capture:
    """Owns the hooks of one model: a global forward hook that hands each output tensor of a recorded layer to the
    quantities' ``on_output`` (and marks the root's passes), global optimizer step hooks that call the quantities'
    ``before_step`` / ``after_step`` around the outermost step of the watched parameters, and every quantity's own
    registrations. ``attach()`` / ``detach()`` are idempotent.

    Args:
        stepped: the parameters whose optimizer steps are read (those the optimizer holds), or None without an
            optimizer (no step hooks: gradients are read as they accumulate).

    Every hook body is guarded: an exception is logged in ``errors`` (source "capture", with its traceback),
    capture switches itself off, and the user's forward/backward continue untouched. KeyboardInterrupt and other
    BaseExceptions pass through.
    """

    def __init__(
        self,
        model: nn.Module,
        leaves: list[tuple[str, nn.Module]],
        quantities: list[Any],
        buffer: StepBuffer,
        errors: ErrorLog,
        stepped: list[torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.leaves = leaves
        self.buffer = buffer
        self.errors = errors
        self.quantities = quantities
        self._readers = [q for q in quantities if q.reads_outputs]  # those with an on_output
        self._steppers = [q for q in quantities if q.reads_steps]  # those with before_step / after_step
        self._stepped = None if stepped is None else {id(p) for p in stepped}
        self._step_depth = 0  # optimizer steps open on the watched parameters (a wrapper's step holds its inner one)
        self._pass_modules: set[int] = set()  # modules recorded in this pass (a recomputation skips them)
        self.transformed_calls = 0  # forward calls skipped inside torch.func transforms, since watch()
        self.step: int | None = None  # the step being captured (for error reports)
        self.failed = False
        self.passes = 0  # forward passes in this step: a forward after a backward starts a new one
        # the modules whose forward is recorded, by id, identity-checked through a weak reference
        self._watched = {id(m): (name, weakref.ref(m)) for name, m in leaves}
        self._styled = {id(m) for _, m in leaves if style_output(m) is not None}  # tensor parallel
        self._hooks = Hooks()
        self._attached = False
        self._in_backward = False
        # A forward or backward pass that raised (or was interrupted) leaves partial statistics in the buffer:
        # they are dropped at the next pass or at the flush, back to the mark taken when that pass began.
        self._pass_mark: Mark = ({}, {})
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
                (None, functools.partial(register_module_forward_pre_hook, self.guard(self._on_any_pre_forward))),
                (None, functools.partial(register_module_forward_hook, self.guard(self._on_any_forward))),
            ]
            # A tensor-parallel style turns its module's output (a Partial DTensor under RowwiseParallel) into what
            # the next layer reads in a forward hook of the module's own, which runs after global hooks: read there.
            on_styled = self.guard(self._on_styled_forward)
            registrations += [
                (None, functools.partial(module.register_forward_hook, on_styled))
                for _, module in self.leaves
                if style_output(module) is not None
            ]
        for quantity in self.quantities:
            registrations += quantity.registrations(self)
        if self._stepped is not None and self._steppers:  # whichever optimizer steps the watched parameters
            registrations += [
                (None, functools.partial(register_optimizer_step_pre_hook, self.guard(self._before_step))),
                (None, functools.partial(register_optimizer_step_post_hook, self.guard(self._after_step))),
            ]
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
        """Detach and drop every reference to the model (the quantities drop theirs: ``release()``)."""
        self.detach()
        self._registrations, self.model, self.leaves, self._watched, self._stepped = [], None, [], {}, set()
        for quantity in self.quantities:
            quantity.release()
        self.quantities, self._readers, self._steppers = [], [], []

    def new_step(self) -> None:
        """Forget per-step state (called after the step's statistics were flushed)."""
        self.buffer.clear()
        self._in_backward = False
        self.passes = 0
        self._pass_modules, self._step_depth = set(), 0
        self._pass_mark, self._forward_open, self._backward_open = ({}, {}), False, False
        for quantity in self.quantities:
            quantity.new_step()

    def drop_unfinished_pass(self) -> bool:
        """Drop the statistics of a forward or backward pass that never finished (it raised, or was interrupted);
        returns whether there was one. The monitor calls this before flushing; the next pass calls it too."""
        unfinished = self._forward_open or self._backward_open
        if unfinished:
            self.buffer.rollback(self._pass_mark)
            self._forward_open = self._backward_open = False
        return unfinished

    # -- what a quantity's hooks may call (nbdiag.quantities.base.StepHooks) ----------------------------------
    def guard(self, hook: Callable) -> Callable:
        """``hook`` wrapped: compile-disabled, skipped once capture failed, and its exception logged, never raised."""

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

    def backward_started(self) -> None:
        """An output-gradient hook fired: a backward pass runs; the engine calls back when it completes."""
        self._in_backward = True
        if not self._backward_open:
            self._backward_open = True
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_done)

    # -- hooks ---------------------------------------------------------------------------------------------
    def _on_any_pre_forward(self, module: nn.Module, inputs: Any) -> None:
        """The global forward pre-hook: only the watched model's own root counts."""
        if module is self.model:
            self._on_pass_start(module, inputs)

    def _on_styled_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """The forward hook of a leaf with a tensor-parallel style: after the style's own output hook."""
        entry = self._watched.get(id(module))
        if entry is not None and entry[1]() is module:
            self._on_forward(entry[0], module, inputs, output)

    def _on_any_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """The global forward hook: a watched leaf (the very module, not a copy with a reused id), then the root."""
        entry = self._watched.get(id(module))
        if entry is not None and entry[1]() is module and id(module) not in self._styled:
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
        for path, tensor in module_outputs(module, output):
            for quantity in self._readers:
                quantity.on_output(name + path, module, tensor)

    def _on_backward_done(self) -> None:
        self._backward_open = False

    def _on_pass_start(self, module: nn.Module, inputs: Any) -> None:
        if not torch.is_grad_enabled() or in_backward():
            return  # an evaluation pass, or a recomputation (activation checkpointing)
        self.drop_unfinished_pass()
        self._pass_mark = self.buffer.mark()
        self._forward_open = True

    def _on_pass_end(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if torch.is_grad_enabled() and not in_backward():
            self._forward_open = False

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Any optimizer's step is about to run: the first (outermost) one that holds watched parameters is read."""
        if self._step_depth:  # an optimizer stepped inside another's step (a wrapper's inner optimizer)
            self._step_depth += 1
            return
        held = {id(p) for group in getattr(optimizer, "param_groups", ()) for p in group["params"]}
        if not held & self._stepped:
            return  # another model's optimizer, or a copy's
        self._step_depth = 1
        for quantity in self._steppers:
            quantity.before_step(optimizer)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self._step_depth:
            return
        self._step_depth -= 1
        if not self._step_depth:
            for quantity in self._steppers:
                quantity.after_step()
