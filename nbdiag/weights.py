"""Per-parameter statistics: weights, their gradients, and the update/weight ratio across an optimizer step."""

from __future__ import annotations

import torch

WEIGHT_STATS = ("norm", "mean", "std", "nonfinite", "grad_norm", "grad_max", "grad_nonfinite")
UPDATE_STATS = ("update_ratio", "update_norm")


@torch.no_grad()
def weight_row(p: torch.Tensor) -> torch.Tensor:
    """(4,) fp32 on p's device: norm, mean, population std, non-finite count of a parameter."""
    flat = p.detach().reshape(-1).float()
    centered = flat - flat[0]  # shifted sums: cheap on CPU (unlike var_mean) and free of cancellation
    mean_shifted = centered.mean()
    var = (torch.dot(centered, centered) / flat.numel() - mean_shifted**2).clamp_min(0)
    nonfinite = torch.count_nonzero(flat - flat).float()  # NaN, ±Inf give NaN, finite values 0: 3x isfinite().sum()
    return torch.stack([torch.linalg.vector_norm(flat), flat[0] + mean_shifted, var.sqrt(), nonfinite.float()])


@torch.no_grad()
def grad_row(grad: torch.Tensor) -> torch.Tensor:
    """(3,) fp32 on grad's device: norm, max |g|, non-finite count of a parameter gradient."""
    flat = grad.detach().reshape(-1).float()
    return torch.stack(
        [
            torch.linalg.vector_norm(flat),
            flat.abs().max() if flat.numel() else flat.new_zeros(()),
            torch.count_nonzero(flat - flat).float(),
        ]
    )


@torch.no_grad()
def grad_matrix(grads: list[torch.Tensor]) -> torch.Tensor:
    """(P, 3) fp32: norm, max |g|, non-finite count per gradient."""
    norms = torch.stack([n.float() for n in torch._foreach_norm(grads)])
    extremes = [torch.aminmax(g.detach().reshape(-1)) for g in grads]  # 10x cheaper on CPU than an inf-norm foreach
    maxima = torch.maximum(
        -torch.stack([lo.float() for lo, _ in extremes]), torch.stack([hi.float() for _, hi in extremes])
    )
    nonfinite = torch.stack([torch.count_nonzero(g - g).float() for g in grads])  # see weight_row
    return torch.stack([norms, maxima, nonfinite], dim=1)


class UpdateTracker:
    """Snapshot parameters before ``optimizer.step()`` and measure ||dw|| / ||w|| after it.

    Holds one copy of the tracked parameters only between the pre- and post-step hooks of a sampled step.
    """

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self._before: list[torch.Tensor] | None = None
        self._before_norms: torch.Tensor | None = None

    @torch.no_grad()
    def before_step(self) -> None:
        self._before = [p.detach().clone() for p in self.params]
        self._before_norms = torch.stack([n.float() for n in torch._foreach_norm(self._before)])

    @torch.no_grad()
    def after_step(self) -> torch.Tensor | None:
        """(P, 2) fp32: update_ratio, update_norm per parameter; None if no snapshot was taken."""
        if self._before is None:
            return None
        torch._foreach_sub_(self._before, [p.detach() for p in self.params])  # before - after = -dw
        update_norms = torch.stack([n.float() for n in torch._foreach_norm(self._before)])
        ratios = update_norms / self._before_norms.clamp_min(torch.finfo(torch.float32).tiny)
        self._before, self._before_norms = None, None
        return torch.stack([ratios, update_norms], dim=1)
