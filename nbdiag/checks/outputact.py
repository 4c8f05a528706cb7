"""An activation at the very end of the model (ReLU, sigmoid, softmax, ...) in front of a loss that expects logits.

The module is found by name wherever it sits: the leaf module whose output the model returns (the same storage,
so a final view or reshape does not hide it). Source: seeds/003 (37 reasons) 3.4 "check the loss input";
seeds/001 (Karpathy, recipe) 2 "verify loss @ init".
"""

from __future__ import annotations

import torch
from torch import nn

from nbdiag.checks.batches import collect_batches
from nbdiag.checks.calls import Inputs, map_inputs, prediction, run_model
from nbdiag.checks.losskind import loss_kind
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

# What each activation does to logits, for the message.
CLIPPING: dict[type, str] = {
    nn.ReLU: "drops every negative logit (set to 0)",
    nn.ReLU6: "clips logits to [0, 6]",
    nn.Sigmoid: "squashes logits into (0, 1)",
    nn.Softmax: "turns logits into probabilities",
    nn.Tanh: "squashes logits into (-1, 1)",
    nn.Hardtanh: "clips logits to [-1, 1]",
    nn.Hardsigmoid: "squashes logits into [0, 1]",
    nn.Softplus: "makes every logit positive",
}


def check_output_activation(model: nn.Module, data: object, loss_fn: object) -> list[Finding]:
    """The model's output comes straight out of a clipping activation while ``loss_fn`` expects logits
    (``loss.output_activation``, fail): CrossEntropyLoss or BCEWithLogitsLoss after a ReLU, sigmoid, softmax, ...

    One eval-mode forward of a copy on the first batch with a forward hook on every leaf module.

    Args:
        model: the model; a copy of it runs.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.
        loss_fn: the loss.

    Returns:
        At most one finding.
    """
    kind = loss_kind(loss_fn)
    if kind.expects != "logits":
        return []
    with forked_rng(seed=CHECK_SEED):
        name, module = _output_module(model, collect_batches(data)[0][0])
    effect = next((text for cls, text in CLIPPING.items() if isinstance(module, cls)), None)
    if effect is None:
        return []
    message = (
        f"the model's output comes straight out of {name} ({type(module).__name__}), which {effect}, but "
        f"{kind.name} expects raw logits: remove {name} (the loss applies its own softmax/sigmoid)"
    )
    evidence = {"module": name, "type": type(module).__name__, "loss_fn": kind.name}
    return [make_finding("loss.output_activation", "fail", message, layer=name, evidence=evidence)]


@torch.no_grad()
def _output_module(model: nn.Module, x: Inputs) -> tuple[str, nn.Module | None]:
    """The last-run leaf module whose output shares storage with the model's output. Outputs are kept alive until
    the end, so the allocator cannot hand a freed intermediate's address to the final output."""
    clone = model_copy(model, train=False)
    outputs: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = []
    for name, module in clone.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(_recorder(name, outputs)))
    try:
        device = model_device(clone)
        result = prediction(run_model(clone, map_inputs(x, lambda t: t.to(device))))
    finally:
        for handle in handles:
            handle.remove()
    target = result.untyped_storage().data_ptr()
    for name, module, output in reversed(outputs):
        if output.untyped_storage().data_ptr() == target:
            return name, module
    return "", None


def _recorder(name: str, outputs: list):
    def hook(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append((name, module, output))

    return hook
