"""||Δw|| across one optimizer step without a copy of the parameters: exact for small ones, sampled for large ones.

A parameter of at most :data:`EXACT_ELEMENTS` elements is copied whole before the step (its ``update_norm`` is
exact). A larger one keeps only :data:`SAMPLE_ELEMENTS` of its elements: one drawn uniformly at random from each of
``SAMPLE_ELEMENTS`` equal consecutive strata of its memory (a stratified sample, fixed per size and device by a
seeded generator, so every sampled step reads the same elements). ``||Δw||^2`` is estimated by the sample's sum of
squared changes, each weighted by its stratum's size (unbiased). Extra memory per sampled step: at most
``SAMPLE_ELEMENTS`` values per parameter (32 KB in fp32), plus one index tensor per distinct size and device, kept
(64 KB), whatever the parameter's size: O(layers), not O(parameters).

The estimate's relative error is about ``0.5 * sqrt(c / SAMPLE_ELEMENTS)`` with ``c = E[d^4] / E[d^2]^2 - 1`` of
the changes ``d`` (c = 2 for Gaussian-like changes: 0.8%; Adam's near-constant step sizes: less). Measured against
whole copies in ``tests/test_update_norms.py`` (SGD, Adam, AdamW, Adadelta; MLP, channels-last CNN, transformer
layer, corpus mnist and cifar10_lenet): at most 1.8%, median 0.1-1%. It is large for updates concentrated on a few
elements (SGD on an embedding table that a batch touches a few rows of), so the result is never below the exact
lower bound ``| ||w_after|| - ||w_before|| |`` (the norms are exact): an update is recorded 0 only when the sample
and the norm both say nothing moved, and an exact zero update reads exactly 0.

Exact, whatever the size, for what cannot be sampled safely: a sparse parameter (its stored values may change
count across the step) and one whose memory is not dense (overlapping or gapped strides). A sharded (DTensor)
parameter is sampled on this rank's local shard; :mod:`nbdiag.runs.shards` adds the shards' squared norms up.
"""

from __future__ import annotations

import torch

from nbdiag.weights import norms_fp32, stored_values

EXACT_ELEMENTS = 8192  # parameters up to this many elements: ||dw|| from a whole copy (exact)
SAMPLE_ELEMENTS = 8192  # larger ones: this many elements, one per stratum
SAMPLE_SEED = 0x5EED  # the strata's draws: fixed, so every sampled step reads the same elements


class _Sample:
    """The flat indices (one per stratum) and the strata's sizes of a parameter of ``n`` elements on ``device``."""

    def __init__(self, n: int, device: torch.device) -> None:
        bounds = torch.div(
            torch.arange(SAMPLE_ELEMENTS + 1, dtype=torch.int64) * n, SAMPLE_ELEMENTS, rounding_mode="floor"
        )
        sizes = bounds[1:] - bounds[:-1]
        generator = torch.Generator().manual_seed(SAMPLE_SEED + n)
        offsets = (torch.rand(SAMPLE_ELEMENTS, generator=generator, dtype=torch.float64) * sizes).long()
        self.index = (bounds[:-1] + offsets.clamp_max(sizes - 1)).to(device, non_blocking=True)
        self.scale = sizes.to(torch.float32).sqrt_().to(device, non_blocking=True)  # sqrt of each stratum weight


def _dense_flat(t: torch.Tensor) -> torch.Tensor | None:
    """``t``'s elements as a 1-D view in memory order (a channels-last weight included), or None when its memory
    is not dense (an overlapping or gapped view) or it is not strided (sparse)."""
    if t.layout != torch.strided:
        return None
    order = sorted(range(t.ndim), key=lambda d: (-t.stride(d), -t.shape[d]))
    permuted = t.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else None


class UpdateTracker:
    """Measure ||dw|| / ||w|| of parameters across an optimizer step (see the module docstring).

    Between the pre- and post-step hooks of a sampled step it holds, per parameter, a whole copy (at most
    :data:`EXACT_ELEMENTS` elements, or a parameter that cannot be sampled) or :data:`SAMPLE_ELEMENTS` values.
    """

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self._samples: dict[tuple[int, torch.device], _Sample] = {}
        self._held: list[int] = []
        self._before: list[torch.Tensor] | None = None
        self._sampled: list[_Sample | None] = []
        self._before_norms: list[torch.Tensor] = []
        self.base_norms: torch.Tensor | None = None  # ||w|| before the last measured step, per held parameter

    def sample_of(self, t: torch.Tensor) -> _Sample | None:
        """The fixed sample of a (local, detached) parameter tensor ``t``; None when it is copied whole."""
        if t.numel() <= EXACT_ELEMENTS or _dense_flat(t) is None:
            return None
        key = (t.numel(), t.device)
        if key not in self._samples:
            self._samples[key] = _Sample(t.numel(), t.device)
        return self._samples[key]

    @torch.no_grad()
    def before_step(self, held: list[int] | None = None) -> None:
        """Keep what is needed of the parameters at indices ``held`` (all when None): those the stepping
        optimizer holds; and their exact norms."""
        self._held = list(range(len(self.params))) if held is None else list(held)
        values = [stored_values(self.params[i]) for i in self._held]
        self._sampled = [self.sample_of(v) for v in values]
        self._before = [
            v.clone() if s is None else _dense_flat(v).index_select(0, s.index)
            for v, s in zip(values, self._sampled, strict=True)
        ]
        self._before_norms = norms_fp32(values)

    @torch.no_grad()
    def after_step(self) -> tuple[list[int], torch.Tensor] | None:
        """(indices, (len(indices), 2) fp32: update_ratio, update_norm per parameter); None without a snapshot."""
        if self._before is None:
            return None
        values = [stored_values(self.params[i]) for i in self._held]
        now = [
            v if s is None else _dense_flat(v).index_select(0, s.index)
            for v, s in zip(values, self._sampled, strict=True)
        ]
        torch._foreach_sub_(self._before, now)  # before - after = -dw (on the sample)
        sampled = [j for j, s in enumerate(self._sampled) if s is not None]
        if sampled:  # each sampled change weighted by sqrt(its stratum's size), in fp32
            weighted = torch._foreach_mul(
                [self._before[j].float() for j in sampled], [self._sampled[j].scale for j in sampled]
            )
            for j, w in zip(sampled, weighted, strict=True):
                self._before[j] = w
        update_norms = norms_fp32(self._before)
        if sampled:  # never below the exact | ||w_after|| - ||w_before|| |
            before = [self._before_norms[j] for j in sampled]
            change = torch._foreach_sub(norms_fp32([values[j] for j in sampled]), before)
            torch._foreach_abs_(change)
            bounded = torch._foreach_maximum([update_norms[j] for j in sampled], change)
            for j, b in zip(sampled, bounded, strict=True):
                update_norms[j] = b
        update_norms = torch.stack(update_norms)
        self.base_norms = torch.stack(self._before_norms)
        ratios = update_norms / self.base_norms.clamp_min(torch.finfo(torch.float32).tiny)
        self._before, self._before_norms, self._sampled = None, [], []
        return self._held, torch.stack([ratios, update_norms], dim=1)
