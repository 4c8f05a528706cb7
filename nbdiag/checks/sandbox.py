"""Isolation for checks: deep copies of the model and optimizer (RNG isolation: nbdiag.rng.forked_rng)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from nbdiag.checks.calls import Inputs, map_inputs, run_model
from nbdiag.probe import model_device

CHECK_SEED = 0  # every check runs under nbdiag.rng.forked_rng(seed=CHECK_SEED), so a report is reproducible


def model_copy(model: nn.Module, train: bool = True) -> nn.Module:
    """A deep copy of ``model`` in train (or eval) mode with its gradients cleared.

    Tensors that a module holds as plain attributes but computes from its parameters (``torch.nn.utils.prune``'s
    ``weight = weight_orig * weight_mask``, recomputed before each forward) are not graph leaves and refuse to be
    deep-copied; the copy gets them detached (issue 25: preflight raised on a pruned model)."""
    memo = {
        id(value): value.detach().clone()
        for module in model.modules()
        for value in vars(module).values()
        if isinstance(value, torch.Tensor) and value.grad_fn is not None
    }
    clone = copy.deepcopy(model, memo)
    clone.train(train)
    for parameter in clone.parameters():
        parameter.grad = None
    return clone


def clone_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, clone: nn.Module) -> torch.optim.Optimizer:
    """An optimizer of ``optimizer``'s class and state that updates ``clone`` (a copy of ``model``) instead.

    Raises:
        ValueError: the optimizer holds a parameter that is not in ``model``.
    """
    by_id = _names_by_id(model)
    clone_params = dict(clone.named_parameters(remove_duplicate=False))
    groups = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in by_id]
        if missing:
            raise ValueError(
                f"got an optimizer holding {len(missing)} parameter(s) that are not in the model, expected "
                "optimizer = Optimizer(model.parameters()); pass the optimizer of this model"
            )
        params = [clone_params[by_id[id(p)]] for p in group["params"]]
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    twin = type(optimizer)(groups, **optimizer.defaults)
    twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return twin


def _names_by_id(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}


def optimized_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> set[str]:
    """Names of the model's parameters that ``optimizer`` updates, every alias of a tied parameter included
    (GPT-2's ``transformer.wte.weight`` is ``lm_head.weight``: holding one holds both)."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return {name for name, p in model.named_parameters(remove_duplicate=False) if id(p) in held}


@torch.no_grad()
def forward_copy(model: nn.Module, x: Inputs, train: bool = True) -> object:
    """The output of a fresh copy of ``model`` (train or eval mode) on ``x``, without gradients."""
    clone = model_copy(model, train=train)
    device = model_device(clone)
    return run_model(clone, map_inputs(x, lambda t: t.to(device)))
