"""Loss-curve rules: the loss explodes (train.diverging) or does not move (train.stalled).

They judge only a loss that is meant to fall (objective "supervised", see :mod:`nbdiag.health.objective`): a GAN's
generator loss, a policy-gradient loss or a declared custom objective get no verdict on their trend, only on
non-finite values (NaN/Inf is wrong for every objective). Both compare where the loss is now (median of the last
``LOSS_TAIL`` logged losses) with where it started (median of the first ``LOSS_HEAD``); medians ignore single noisy
batches. Ratios need a positive starting loss, so losses that start at or below zero (log-likelihoods, GAN losses)
are judged only for non-finite values. Source: seeds/002 (CS231n training recipes) "Learning rate schedules" (very
high LR: loss exploding; low LR: loss barely falls) and "Choosing hyperparameters" step 2 ("loss not going down: LR
too low; loss explodes: LR too high"); seeds/004 (CS231n lecture 5) "babysitting the learning process".
"""

from __future__ import annotations

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.gradients import total_grad_norm
from nbdiag.health.updates import UPDATE_RATIO_HIGH, per_parameter_ratios, weighted_median
from nbdiag.health.window import LOSS_HEAD, LOSS_TAIL, Window

DIVERGING_WARN_FACTOR = 2.0  # loss now >= 2x its start: training is making it worse (a classifier passes chance)
DIVERGING_FAIL_FACTOR = 10.0  # >= 10x: exploding (seeds/002 "very high learning rate: loss exploding")
# Severity policy (docs/findings.md): a rising loss alone is not divergence. A REINFORCE loss grows with the episode
# length and a GAN generator's loss with the discriminator's skill, both with healthy gradients and updates
# (issue 25). Divergence needs a second, independent signal from the parameters: the total gradient norm grew
# DIVERGING_GRAD_GROWTH x since the first sampled steps, or the update/weight ratio is above UPDATE_RATIO_HIGH.
# Without it the rising loss is an info note that asks for objective=. A gradient norm scales with the loss it comes
# from, so healthy rising losses grow it too: 11x for a DCGAN-style generator whose discriminator wins
# (tests/test_objective.py), ~20x for a REINFORCE loss whose episodes grow from 10 to 200 steps; 100x is beyond both.
DIVERGING_GRAD_GROWTH = 100.0
STALL_MIN_STEPS = 50  # judge a stall only after this many logged losses (seeds/002: ~100 iters show a good LR)
STALL_MIN_DROP = 0.01  # the loss fell by less than 1% of its start: it does not move


def diverging(window: Window) -> list[Finding]:
    """train.diverging: a recent loss is non-finite (fail, any objective) or far above its start (warn/fail,
    supervised only)."""
    nonfinite = [_nonfinite_loss(name, *window.series(name)) for name in _judged_losses(window)]
    nonfinite = [finding for finding in nonfinite if finding is not None]
    loss, steps = window.loss, window.loss_steps
    if nonfinite or len(loss) == 0 or not window.objective.loss_should_fall:
        return nonfinite[:1]
    tail = loss[-LOSS_TAIL:]
    start, now = _diverging_start(loss), float(np.median(tail))
    if not start > 0 or now < DIVERGING_WARN_FACTOR * start:
        return []
    growth, ratio = parameter_signals(window)
    signal = _second_signal(growth, ratio)
    severity = "fail" if now >= DIVERGING_FAIL_FACTOR * start else "warn"
    message = (
        f"the loss rose from {start:.4g} at the start to {now:.4g} ({now / start:.1f}x) over "
        f"steps {steps[-len(tail)]}-{steps[-1]}"
    )
    if signal:
        message += f", and {signal}"
    else:
        severity = "info"
        message += (
            " while the gradients and updates stay healthy: not divergence. If this loss is not meant to fall "
            "(a GAN generator, a policy-gradient loss), declare it: watch(..., objective='gan' | 'policy_gradient' "
            "| 'custom')"
        )
    evidence = {"start_loss": start, "recent_loss": now, "factor": now / start, "grad_norm_growth": growth}
    return [
        make_finding(
            "train.diverging",
            severity,
            message,
            step=int(steps[-1]),
            evidence={**evidence, "update_ratio": ratio},
        )
    ]


def parameter_signals(window: Window) -> tuple[float, float]:
    """(growth of the total gradient norm since the first sampled steps, median update/weight ratio now); NaN for
    what was not recorded."""
    growth = float("nan")
    if window.baseline and window.recent:
        start, now = total_grad_norm(window.baseline), total_grad_norm(window.recent)
        if np.isfinite(start) and start > 0:
            growth = now / start
    ratios, norms = per_parameter_ratios(window)
    ratio = weighted_median(np.array(list(ratios.values())), np.array(list(norms.values()))) if ratios else np.nan
    return growth, float(ratio)


def _second_signal(growth: float, ratio: float) -> str:
    """What in the parameters agrees with a rising loss ("" when nothing does)."""
    if growth >= DIVERGING_GRAD_GROWTH:  # NaN (not recorded) is no signal; Inf is
        return f"the total gradient norm grew {growth:.3g}x since the start"
    if ratio > UPDATE_RATIO_HIGH:
        return f"the median update/weight ratio is {ratio:.2g} (above {UPDATE_RATIO_HIGH:g})"
    return ""


def stalled(window: Window) -> list[Finding]:
    """train.stalled: after ``STALL_MIN_STEPS`` logged losses, the loss moved by less than ``STALL_MIN_DROP`` of its
    start, either way (a loss that rose is not stalled: it moves, in the wrong direction). Supervised only."""
    loss, steps = window.loss, window.loss_steps
    if not window.objective.loss_should_fall:
        return []
    if len(loss) < STALL_MIN_STEPS or not np.isfinite(loss[-LOSS_TAIL:]).all():
        return []
    start, now = _start(loss), float(np.median(loss[-LOSS_TAIL:]))
    if not start > 0:
        return []
    drop = (start - now) / start
    if abs(drop) >= STALL_MIN_DROP:
        return []
    return [
        make_finding(
            "train.stalled",
            "warn",
            f"the loss moved from {start:.4g} (first {LOSS_HEAD} steps) to {now:.4g} by step {steps[-1]}: "
            f"{abs(100 * drop):.2g}% {'lower' if drop >= 0 else 'higher'} after {len(loss)} steps",
            step=int(steps[-1]),
            evidence={"start_loss": start, "recent_loss": now, "relative_drop": drop, "steps_logged": len(loss)},
        )
    ]


def _start(loss: np.ndarray) -> float:
    head = loss[:LOSS_HEAD]
    head = head[np.isfinite(head)]
    return float(np.median(head)) if len(head) else float("nan")


def _diverging_start(loss: np.ndarray) -> float:
    """The lower of the first loss and the head's median: a loss that explodes within the first steps would
    otherwise raise its own baseline (2.3 -> 163 -> 2e5 has a head median of 2e5)."""
    first = loss[0] if np.isfinite(loss[0]) else np.inf
    return float(min(first, _start(loss)))


def _judged_losses(window: Window) -> list[str]:
    """The scalars judged for NaN/Inf: ``loss`` and, for a GAN, the discriminator's and generator's losses."""
    roles = window.objective.roles
    return list(dict.fromkeys(["loss", *(roles[r] for r in ("d_loss", "g_loss") if r in roles)]))


def _nonfinite_loss(name: str, steps: np.ndarray, loss: np.ndarray) -> Finding | None:
    """train.diverging (fail) when the last ``LOSS_TAIL`` values of the scalar ``name`` are not all finite."""
    if len(loss) == 0 or np.isfinite(loss[-LOSS_TAIL:]).all():
        return None
    first_bad = int(np.flatnonzero(~np.isfinite(loss))[0])
    before = f" after {loss[first_bad - 1]:.4g} at step {steps[first_bad - 1]}" if first_bad else ""
    what = "the loss" if name == "loss" else f"the loss {name!r}"
    return make_finding(
        "train.diverging",
        "fail",
        f"{what} became {loss[first_bad]} at step {steps[first_bad]}{before} and is still non-finite "
        f"(first value {loss[0]:.4g})",
        step=int(steps[first_bad]),
        evidence={"scalar": name, "first_nonfinite_step": int(steps[first_bad]), "first_loss": float(loss[0])},
    )
