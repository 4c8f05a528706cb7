"""Gradient flow check: every parameter meant to train receives a gradient and is in the optimizer."""

from __future__ import annotations

import torch
from torch import nn

from nbdiag.checks.batches import collect_batches, to_device
from nbdiag.checks.calls import loss_of, run_model
from nbdiag.checks.sandbox import CHECK_SEED, model_copy, optimized_names
from nbdiag.findings import Finding, make_finding
from nbdiag.frozen_init import INIT_TYPES, frozen_at_init
from nbdiag.names import owning_layer
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

GRADFLOW_BATCHES = 4  # batches whose gradients are summed before judging
GATE_PROBE_STD = 1e-2  # zero-initialised factors get values of this std to tell "gated at init" from "dead"


def check_gradient_flow(
    model: nn.Module, data: object, loss_fn: object, optimizer: torch.optim.Optimizer | None = None
) -> list[Finding]:
    """Parameters that never receive a gradient (``model.frozen``).

    One forward/backward of a train-mode copy on each of the first ``GRADFLOW_BATCHES`` (4) batches, gradients
    summed: a parameter that gets a gradient in any of them is reached (a top-1 mixture-of-experts router leaves
    some experts out of one batch, not out of all). Reported per parameter group of causes:
    ``requires_grad=False`` ('warn'; 'info' when an optimizer is given and holds none of them, which looks like
    deliberate freezing, or when every frozen Linear/Conv layer is trained: a pretrained base, as under LoRA); no
    gradient although their module ran (cut by ``.detach()``: 'warn'); no gradient because their module never ran
    on these batches (experts a router did not pick, or a layer never called: 'info'); a gradient that is exactly
    zero over the batches (dead units upstream: 'warn'; 'info' when the rest of the module does learn, so the model
    cancels the parameter: a bias inside a difference f(a) - f(b); 'info' when a zero-initialised factor gates it,
    as LoRA's B = 0 gates A: it gets a gradient once the zero parameters of a copy get small values); and
    trainable parameters missing from ``optimizer`` ('warn'). Source: seeds/003 (37 reasons) 3.8 "layers frozen by
    accident".

    Args:
        model: the model; a copy of it runs.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.
        optimizer: the optimizer meant to train ``model``, or None.

    Returns:
        One finding per cause that occurs, naming the parameters.
    """
    batches = collect_batches(data)[:GRADFLOW_BATCHES]
    in_optimizer = optimized_names(optimizer, model) if optimizer is not None else None
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(model, train=True)
        called = _backward(clone, batches, loss_fn)
        groups = _classify(clone, in_optimizer, called)
        if groups["zero_grad"]:
            groups["gated"] = _gated(model, batches, loss_fn, groups["zero_grad"])
            groups["zero_grad"] = [name for name in groups["zero_grad"] if name not in groups["gated"]]
        groups["pretrained"] = groups["frozen"] if _trained_frozen(model, groups["frozen"]) else []
    return _flow_findings(groups, in_optimizer, len(batches))


def _backward(clone: nn.Module, batches: list, loss_fn: object) -> set[int]:
    """Forward/backward ``clone`` on each batch (gradients summed); the ids of the modules the forward called."""
    called: set[int] = set()
    hooks = [m.register_forward_hook(lambda m, *_: called.add(id(m))) for m in clone.modules()]
    try:
        for batch in batches:
            x, y = to_device(batch, model_device(clone))
            loss = loss_of(loss_fn, run_model(clone, x), y)
            if loss.requires_grad:
                loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    return called


@torch.no_grad()
def _revive_zero_factors(clone: nn.Module) -> int:
    """Give every trainable parameter that is exactly zero small random values (std ``GATE_PROBE_STD``), as the
    first update would; returns how many there were."""
    zeros = [p for p in clone.parameters() if p.requires_grad and p.numel() and not bool(p.any())]
    for parameter in zeros:
        parameter.normal_(0.0, GATE_PROBE_STD)
    return len(zeros)


def _gated(model: nn.Module, batches: list, loss_fn: object, zero_grad: list[str]) -> list[str]:
    """The parameters of ``zero_grad`` whose gradient is zero only because a zero-initialised factor gates them
    (LoRA's B = 0, a ReZero gate): on a copy whose exactly-zero trainable parameters get small values they get a
    gradient. Dead units upstream stay dead."""
    clone = model_copy(model, train=True)
    if not _revive_zero_factors(clone):
        return []
    with torch.enable_grad():
        _backward(clone, batches, loss_fn)
    grads = dict(clone.named_parameters())
    return [name for name in zero_grad if grads[name].grad is not None and bool(grads[name].grad.any())]


def _trained_frozen(model: nn.Module, frozen: list[str]) -> bool:
    """Whether every frozen ``Linear``/``ConvNd`` layer looks trained (none is still at PyTorch's default init,
    :func:`nbdiag.frozen_init.frozen_at_init`) and there is at least one: a pretrained base, frozen on purpose."""
    if not frozen:
        return False
    at_init = {layer.layer for layer in frozen_at_init(model)}
    layers = {
        name
        for name, module in model.named_modules()
        if isinstance(module, INIT_TYPES) and any(owning_layer(f) == name for f in frozen)
    }
    return bool(layers) and not (layers & at_init)


def _classify(clone: nn.Module, in_optimizer: set[str] | None, called: set[int]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {
        "frozen": [],
        "unused": [],
        "cancelled": [],
        "no_grad": [],
        "zero_grad": [],
        "not_in_optimizer": [],
    }
    owner = {id(p): module for module in clone.modules() for p in module.parameters(recurse=False)}
    for name, parameter in clone.named_parameters():
        if not parameter.requires_grad:
            groups["frozen"].append(name)
        elif parameter.grad is None:
            groups["no_grad" if id(owner[id(parameter)]) in called else "unused"].append(name)
        elif not bool(parameter.grad.any()):
            module = owner[id(parameter)]
            siblings = [p.grad for p in module.parameters(recurse=False) if p is not parameter and p.grad is not None]
            groups["cancelled" if any(bool(g.any()) for g in siblings) else "zero_grad"].append(name)
        if in_optimizer is not None and parameter.requires_grad and name not in in_optimizer:
            groups["not_in_optimizer"].append(name)
    return groups


def _flow_findings(groups: dict[str, list[str]], in_optimizer: set[str] | None, batches: int = 1) -> list[Finding]:
    findings = []
    frozen = groups["frozen"]
    if frozen:
        deliberate = in_optimizer is not None and not any(name in in_optimizer for name in frozen)
        note = " and are not in the optimizer (deliberate freezing?)" if deliberate else ""
        if groups.get("pretrained"):
            deliberate, note = True, ": a trained (pretrained) base, frozen on purpose (fine-tuning, LoRA)"
        severity = "info" if deliberate else "warn"
        findings.append(_finding(severity, f"{len(frozen)} parameter(s) have requires_grad=False{note}", frozen))
    if groups.get("gated"):
        message = (
            f"{len(groups['gated'])} parameter(s) get an exactly zero gradient at init only: a zero-initialised "
            "factor gates them (LoRA's B = 0, a zero-init gate); they get a gradient once it moves"
        )
        findings.append(_finding("info", message, groups["gated"]))
    if groups["unused"]:
        message = (
            f"{len(groups['unused'])} parameter(s) belong to modules the forward did not call on any of {batches} "
            "batch(es): data-dependent routing (a mixture-of-experts router that picked other experts) or a layer "
            "defined but never used"
        )
        findings.append(_finding("info", message, groups["unused"]))
    if groups["cancelled"]:
        message = (
            f"{len(groups['cancelled'])} parameter(s) get an exactly zero gradient while the rest of their module "
            "learns: the model cancels them (a bias in a difference |f(a) - f(b)|, as in a siamese head); they "
            "cannot train, but nothing else is wrong"
        )
        findings.append(_finding("info", message, groups["cancelled"]))
    causes = {
        "no_grad": f"receive no gradient in any of {batches} batch(es) (cut by .detach() or not on the loss's path)",
        "zero_grad": f"receive a gradient that is exactly zero on all {batches} batch(es) (dead units upstream?)",
        "not_in_optimizer": "are trainable but not in the optimizer, so they never update",
    }
    for group, text in causes.items():
        if groups[group]:
            findings.append(_finding("warn", f"{len(groups[group])} parameter(s) {text}", groups[group]))
    return findings


def _finding(severity: str, message: str, names: list[str]) -> Finding:
    shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
    layer = owning_layer(names[0]) if names else None
    return make_finding("model.frozen", severity, f"{message}: {shown}", layer=layer, evidence={"parameters": names})
