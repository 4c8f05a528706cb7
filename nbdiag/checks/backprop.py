"""Backprop dependency check: the gradient of sample i's output must reach input i only."""

from __future__ import annotations

import torch
from torch import nn

from nbdiag.checks.batches import collect_batches
from nbdiag.checks.calls import prediction, run_model
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

MIXING_SAMPLES = 8  # batch size of the probe
# Another sample's input gradient counts as a leak above this fraction of sample i's own (float32 round-off
# stays far below it). Source: Karpathy 2 "use backprop to chart dependencies".
LEAK_TOLERANCE = 1e-6


def check_batch_mixing(model: nn.Module, data: object) -> list[Finding]:
    """Sample i's output depends on other samples' inputs (``model.batch_mixing``, fail).

    An eval-mode copy (batch norm uses its running statistics, so its legitimate batch mixing is out of the
    picture; dropout is off) runs on ``MIXING_SAMPLES`` samples; the sum of the outputs of sample i is
    back-propagated to the inputs, for the first and the last sample. Any other sample's input gradient above
    ``LEAK_TOLERANCE`` of sample i's own is a leak, typically a ``view``/``reshape`` across the batch dimension.
    Source: seeds/001 (Karpathy) 2 "use backprop to chart dependencies".

    Args:
        model: the model; a copy of it is probed. Its output must have the batch dimension first.
        data: a DataLoader, an ``(x, y)`` batch or an iterable of batches.

    Returns:
        At most one finding: 'fail' for a leak, 'info' (check.skipped) for integer inputs (token ids), a single
        sample, or outputs that do not depend on the input at all.
    """
    x = collect_batches(data)[0][0]
    if not isinstance(x, torch.Tensor):
        return [make_finding("check.skipped", "info", "batch mixing not checked: the inputs are a tuple or dict")]
    x = x[:MIXING_SAMPLES]
    if not x.is_floating_point() or len(x) < 2:
        reason = "integer inputs have no gradient" if not x.is_floating_point() else "one sample cannot leak"
        return [make_finding("check.skipped", "info", f"batch mixing not checked: {reason}")]
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(model, train=False)
        x = x.to(model_device(clone)).requires_grad_(True)
        output = prediction(run_model(clone, x))
        leaks = [_leak(output, x, i) for i in (0, len(x) - 1)]
    return _mixing_findings(leaks, len(x), tuple(output.shape))


def _leak(output: torch.Tensor, x: torch.Tensor, i: int) -> tuple[int, float, float]:
    """(i, own gradient magnitude, largest other-sample gradient magnitude) for sample i's summed output."""
    (grad,) = torch.autograd.grad(output[i].sum(), x, retain_graph=True, allow_unused=True)
    if grad is None:
        return i, 0.0, 0.0
    per_sample = grad.reshape(len(x), -1).abs().amax(dim=1)  # (N,) largest |d out_i / d x_j| per sample j
    others = torch.cat([per_sample[:i], per_sample[i + 1 :]])
    return i, float(per_sample[i]), float(others.max())


def _mixing_findings(leaks: list[tuple[int, float, float]], samples: int, shape: tuple) -> list[Finding]:
    for i, own, other in leaks:
        if other > LEAK_TOLERANCE * max(own, 1e-30):
            evidence = {"sample": i, "own_grad": own, "other_grad_max": other, "samples": samples}
            message = (
                f"the output of sample {i} has gradient {other:.3g} on other samples' inputs (own: {own:.3g}); "
                f"the model mixes the batch dimension (output {shape})"
            )
            return [make_finding("model.batch_mixing", "fail", message, evidence=evidence)]
    if all(own == 0 for _, own, _ in leaks):
        return [make_finding("check.skipped", "info", "batch mixing not checked: the output has no input gradient")]
    return []
