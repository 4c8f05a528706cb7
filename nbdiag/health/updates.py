"""Update/weight ratio rule (train.update_ratio): how much one optimizer step changes the weights, vs ~1e-3.

Per parameter, the median ratio ||dw|| / ||w|| over the recent window; then the median over parameters weighted by
their weight norms, so a few odd ones (a bias, a norm layer's gain) do not decide, and neither do zero-initialised
biases whose small norms make any update look large (issue 25: in a 4-parameter model two zero-initialised biases
set the plain median). Parameters without a gradient (frozen) or with a zero
gradient (dead) say nothing about the learning rate and are left out, and so are parameters that were ~zero before
the step (a zero-initialized bias: the ratio is undefined). Source: seeds/004 (CS231n lecture 5) babysitting the
learning process: "update/weight should be about 0.001" (much lower: LR too low; much higher: too high).
The bounds sit two orders of magnitude either side: Adam's first steps at lr=1e-3 on PyTorch's default init give
lr / rms(w) ~ 1e-2 (0.01-0.02 in the zoo's clean runs), so 1e-1 still leaves 5-10x of room above healthy runs.
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, count_of, make_finding
from nbdiag.health.window import LOSS_HEAD, LOSS_TAIL, MIN_WINDOW_ENTRIES, Window, layers_of, steps_text
from nbdiag.record import stat_matrix

UPDATE_RATIO_TARGET = 1e-3  # seeds/004, babysitting: update/weight ~ 0.001
UPDATE_RATIO_LOW = 1e-5  # 100x below the target: the weights barely move (learning rate too low)
UPDATE_RATIO_HIGH = 1e-1  # 100x above: each step rewrites 10% of the weights (learning rate too high)
MIN_WEIGHT_NORM = 1e-12  # below this pre-step norm the ratio is undefined (zero-initialized parameters)
# Severity policy (docs/findings.md): a ratio outside the bounds is one signal; it warns when the loss agrees that
# the learning rate hurts (it kept at least LOSS_KEPT_FOR_LR of its start: stalled or rising), or when nothing moves
# at all (ratio 0). The corpus (issue 25) runs its sources' settings at 0.13-0.16 with a falling loss: pytorch/examples
# mnist_forward_forward (Adam lr 0.03), torchdiffeq ode_demo (RMSprop lr 1e-3 on 4 parameters).
LOSS_KEPT_FOR_LR = 0.9


def update_ratio(window: Window) -> list[Finding]:
    """train.update_ratio: the median update/weight ratio of the recent window is outside [LOW, HIGH]."""
    ratios, norms = per_parameter_ratios(window)
    if not ratios:
        return []
    median = weighted_median(np.array(list(ratios.values())), np.array(list(norms.values())))
    if UPDATE_RATIO_LOW <= median <= UPDATE_RATIO_HIGH:
        return []
    low = median < UPDATE_RATIO_LOW
    ordered = sorted(ratios, key=ratios.get)
    extreme = ordered[0] if low else ordered[-1]
    entries = tuple(e for e in window.recent if "update" in e.blocks)
    kept = _loss_kept(window)
    corroborated = median == 0 or kept >= LOSS_KEPT_FOR_LR  # NaN (no loss logged): one signal only
    message = (
        f"the median update/weight ratio over {count_of(len(ratios), 'parameter')} is {median:.2g} in "
        f"{steps_text(entries)}, {'below' if low else 'above'} the ~{UPDATE_RATIO_TARGET:g} rule of thumb "
        f"(bounds {UPDATE_RATIO_LOW:g}-{UPDATE_RATIO_HIGH:g})"
    )
    if corroborated:
        message += f": the learning rate looks too {'low' if low else 'high'}"
        if np.isfinite(kept):
            message += f" (the loss kept {kept:.0%} of its start)"
    else:
        message += (
            "; the loss falls, so this is a note"
            if np.isfinite(kept)
            else "; no loss logged to tell whether it hurts (mon.step(loss=...))"
        )
    evidence = {"median_ratio": median, "parameters": len(ratios), "extreme_parameter": extreme}
    evidence |= {"extreme_ratio": ratios[extreme], "loss_kept": kept}
    severity = "warn" if corroborated else "info"
    return [make_finding("train.update_ratio", severity, message, step=entries[-1].step, evidence=evidence)]


def _loss_kept(window: Window) -> float:
    """The recent loss (median of the last ``LOSS_TAIL``) as a fraction of its start (median of the first
    ``LOSS_HEAD``), for a positive loss; NaN when too few losses were logged."""
    loss = window.loss[np.isfinite(window.loss)]
    if len(loss) < LOSS_HEAD + LOSS_TAIL or not np.median(loss[:LOSS_HEAD]) > 0:
        return float("nan")
    return float(np.median(loss[-LOSS_TAIL:]) / np.median(loss[:LOSS_HEAD]))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the cumulative weight of the sorted ``values`` first reaches half of the total (the plain
    median when all weights are equal and the count is odd; the lower middle value when even)."""
    if not np.isfinite(weights).all() or weights.sum() <= 0:
        return float(np.median(values))
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def per_parameter_ratios(window: Window) -> tuple[dict[str, float], dict[str, float]]:
    """(parameter -> median update/weight ratio, parameter -> median weight norm before the step) over the window's
    sampled steps where the ratio is defined."""
    entries = tuple(e for e in window.recent if "update" in e.blocks)
    if len(entries) < MIN_WINDOW_ENTRIES:
        return {}, {}
    names = layers_of(entries[-1], "update")
    ratio = stat_matrix(entries, "update", "update_ratio", names)  # (entries, parameters)
    update_norm = stat_matrix(entries, "update", "update_norm", names)
    grad_norm = stat_matrix(entries, "weight", "grad_norm", names)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight_before = np.where(ratio > 0, update_norm / ratio, np.inf)  # ratio 0: no update, weight norm unknown
    defined = np.isfinite(ratio) & (grad_norm > 0) & (weight_before >= MIN_WEIGHT_NORM)
    kept = defined.any(axis=0)
    kept_names = np.array(names)[kept].tolist()
    medians = np.nanmedian(np.where(defined, ratio, np.nan)[:, kept], axis=0)
    norms = np.nanmedian(np.where(defined, weight_before, np.nan)[:, kept], axis=0)
    return dict(zip(kept_names, medians.tolist(), strict=True)), dict(zip(kept_names, norms.tolist(), strict=True))
