"""Train/eval mode check: a model about to train should have its dropout and batch norm layers in train mode."""

from __future__ import annotations

from torch import nn

from nbdiag.findings import Finding, make_finding
from nbdiag.modes import follows_training, mode_modules


def check_train_mode(model: nn.Module) -> list[Finding]:
    """Dropout or batch norm layers in eval mode when training is about to start (``model.train_eval_mode``).

    'warn' naming the layers (in eval mode dropout is off and batch norm normalizes with its running statistics
    instead of the batch's); a layer put in eval mode on its own inside a module that trains is deliberate (QAT's
    ``freeze_bn_stats``, frozen batch-norm statistics: :func:`nbdiag.modes.follows_training`); 'info' when the
    model is in eval mode but has no such layer (no effect today).
    Source: seeds/003 (37 reasons) 4.6 "train/test mode switching".

    Args:
        model: the model about to train (only read).

    Returns:
        At most one finding.
    """
    in_eval = [name or type(module).__name__ for name, module in model.named_modules() if not module.training]
    dependent = [name for name, module in mode_modules(model) if not follows_training(module)]
    if dependent:
        shown = ", ".join(dependent[:5]) + (", ..." if len(dependent) > 5 else "")
        message = f"{len(dependent)} dropout/batch-norm layer(s) are in eval mode before training: {shown}"
        evidence = {"layers": dependent}
        return [make_finding("model.train_eval_mode", "warn", message, layer=dependent[0], evidence=evidence)]
    if in_eval:
        message = "the model is in eval mode; no dropout or batch norm, so nothing changes yet, but call model.train()"
        return [make_finding("model.train_eval_mode", "info", message, evidence={"modules_in_eval": len(in_eval)})]
    return []
