"""Regularization that strangles training (issue 19, class 4), found by its cause in the model and the batches.

The overfit-one-batch check turns dropout off and lets batch norm use running statistics, so neither shows there.
Two causes are measured instead, each needing a calibrated threshold and a measured effect to agree:

- batch norm normalising each channel over a handful of samples: its batch mean wiggles from batch to batch (Karpathy 4,
  "decrease the batch size": the batch's mean/variance estimate the dataset's, and small batches make scale and offset
  wiggle more; at 2 samples per channel a BatchNorm1d output is just the sign, ±1);
- dropout with p >= 0.8, which in PyTorch's convention (p = the probability to drop) usually means a keep probability
  carried over as p: the noise it puts on the output dwarfs the signal across samples.

Source: seeds/001 (Karpathy) 4 "regularize" (batch size, dropout); seeds/000 (37 reasons) 4 "reduce regularization".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nbdiag.checks.batches import collect_batches, to_device
from nbdiag.checks.calls import prediction, run_model
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.findings import Finding, count_of, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

BN_MIN_SAMPLES = 8  # samples per channel below which a batch statistic is a poor estimate (noise 1/sqrt(n) > 0.35)
BN_NOISE = 0.25  # measured: std over batches of a channel's batch mean, relative to the channel's spread
DROPOUT_P = 0.8  # dropping 80% or more of the units
DROPOUT_NOISE = 10.0  # measured: output variance over dropout masks / output variance over samples (eval mode)
DROPOUT_MASKS = 8


def check_regularization(model: nn.Module, data: object) -> list[Finding]:
    """Batch norm over too few samples per channel, or dropout that drowns the signal (``model.over_regularized``).

    Batch norm: a forward pass per batch (up to 8) on a train-mode copy records, at each batch-norm layer that trains,
    the samples per channel ``n`` and each channel's batch mean; 'warn' when ``n < BN_MIN_SAMPLES`` and the batch
    means move by more than ``BN_NOISE`` of the channel's spread from batch to batch. Dropout: for layers with
    ``p >= DROPOUT_P`` that train, the first batch goes through ``DROPOUT_MASKS`` times in train mode; 'warn' when
    the output's variance over masks is more than ``DROPOUT_NOISE`` times its variance over samples in eval mode
    (p = 0.5 on every layer of a 4-layer MLP measured 30 at init: it is not flagged, its p is below the threshold).

    Returns:
        At most one finding per cause.
    """
    batches = collect_batches(data)
    if not isinstance(batches[0][0], torch.Tensor) or not batches[0][0].is_floating_point():
        return []
    training = {name for name, module in model.named_modules() if module.training}
    with forked_rng(seed=CHECK_SEED), torch.no_grad():
        clone = model_copy(model, train=True)
        for name, module in clone.named_modules():
            module.train(name in training)
        device = model_device(clone)
        batches = [to_device(batch, device) for batch in batches]
        return _batch_norm(clone, batches) + _dropout(clone, batches[0][0])


def _batch_norm(model: nn.Module, batches: list) -> list[Finding]:
    layers = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
    }
    if not layers:
        return []
    seen: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {name: [] for name in layers}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]
            channels = x.shape[1] if x.ndim > 1 else 1
            flat = x.detach().float().transpose(0, 1).reshape(channels, -1) if x.ndim > 1 else x.detach()[None]
            seen[name].append((flat.shape[1], flat.mean(dim=1), flat.var(dim=1, unbiased=False)))

        return hook

    handles = [module.register_forward_pre_hook(record(name)) for name, module in layers.items()]
    try:
        for x, _ in batches:
            run_model(model, x)
    finally:
        for handle in handles:
            handle.remove()
    worst = max((_bn_noise(name, rows) for name, rows in seen.items() if rows), key=lambda found: found[2])
    name, samples, noise = worst
    if samples >= BN_MIN_SAMPLES or not noise >= BN_NOISE:
        return []
    kind = type(layers[name]).__name__
    message = (
        f"{kind} '{name}' normalises each channel over {count_of(samples, 'sample')} per batch: its batch mean "
        f"moves by {noise:.2f} of the channel's spread from batch to batch, so in training its outputs are mostly "
        f"batch noise (expected 1/sqrt(n) = {1 / math.sqrt(samples):.2f}). Use batches of at least "
        f"{2 * BN_MIN_SAMPLES} samples, GroupNorm/LayerNorm, or freeze the statistics (the batch norm layers in "
        "eval mode)"
    )
    evidence = {"cause": "batch_norm", "samples_per_channel": samples, "batch_mean_noise": noise}
    return [make_finding("model.over_regularized", "warn", message, layer=name, evidence=evidence)]


def _bn_noise(name: str, rows: list[tuple[int, torch.Tensor, torch.Tensor]]) -> tuple[str, int, float]:
    """(layer, samples per channel, median over channels of the std of the batch means / the channel's spread)."""
    samples = min(n for n, _, _ in rows)
    means = torch.stack([mean for _, mean, _ in rows])  # (batches, channels)
    spread = torch.stack([var for _, _, var in rows]).mean(dim=0) + means.var(dim=0, unbiased=False)
    if len(rows) < 2:
        return name, samples, 1 / math.sqrt(samples)  # one batch: the expected wiggle
    noise = means.std(dim=0) / spread.clamp_min(1e-12).sqrt()
    return name, samples, float(noise.median())


def _dropout(model: nn.Module, x: torch.Tensor) -> list[Finding]:
    heavy = [
        (name, module.p)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p >= DROPOUT_P
    ]
    if not heavy or len(x) < 2:
        return []
    modes = {name: module.training for name, module in model.named_modules()}
    model.eval()
    clean = prediction(run_model(model, x)).float()
    for name, module in model.named_modules():
        module.train(modes[name])
    noisy = torch.stack([prediction(run_model(model, x)).float() for _ in range(DROPOUT_MASKS)])
    signal = float(clean.var(dim=0).mean())
    ratio = float(noisy.var(dim=0).mean()) / signal if signal > 0 else math.inf
    if not ratio > DROPOUT_NOISE:
        return []
    shown = ", ".join(f"'{name}' p={p:g}" for name, p in heavy[:4])
    message = (
        f"dropout drops {heavy[0][1]:.0%} or more of the units ({shown}): the output's variance over dropout masks is "
        f"{ratio:.3g}x its variance over samples, so training sees mostly noise. In PyTorch p is the probability to "
        f"drop: if {heavy[0][1]:g} was meant as the probability to keep (TensorFlow's keep_prob), use "
        f"p={1 - heavy[0][1]:.2g}; 0.1-0.5 is usual"
    )
    evidence = {"cause": "dropout", "p": [p for _, p in heavy], "noise_to_signal": ratio}
    return [make_finding("model.over_regularized", "warn", message, layer=heavy[0][0], evidence=evidence)]
