"""Live health rules: read a monitor's record, return findings. Never touches the model.

One module per rule family (loss, gan, gradients, updates, activations, nonfinite); each rule is a function
``Window -> list[Finding]``. Every rule reads only the first and last few sampled steps (see
:mod:`nbdiag.health.window`), so :func:`evaluate` stays cheap enough for a dashboard to call several times a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbdiag.findings import SEVERITY_RANK, Finding, Findings
from nbdiag.health import (
    activations,
    filters,
    frozen,
    gan,
    generalization,
    gradients,
    loss,
    mode,
    nonfinite,
    own_errors,
    skipped,
    too_good,
    updates,
)
from nbdiag.health.causes import defer
from nbdiag.health.window import Window

Rule = Callable[[Window], list[Finding]]

RULES: tuple[Rule, ...] = (
    own_errors.own_errors,
    skipped.calls_skipped,
    nonfinite.nonfinite,
    loss.diverging,
    loss.stalled,
    gan.discriminator_wins,
    gradients.across_depth,
    gradients.over_time,
    gradients.accumulation,
    gradients.cleared_before_step,
    updates.update_ratio,
    activations.dead_units,
    activations.saturation,
    activations.depth_trend,
    generalization.overfitting,
    generalization.underfitting,
    mode.trained_in_eval_mode,
    mode.validated_in_train_mode,
    too_good.too_good,
    filters.first_layer_filters,
    frozen.frozen_at_init_rule,
)


def evaluate(source: Any) -> Findings:
    """All live findings for ``source``: a :class:`~nbdiag.Monitor`, anything with a ``record``, or a record.

    Args:
        source: what to judge; only its record is read.

    Returns:
        The findings, most severe first, at most one per (id, layer): the most severe, then the latest. A finding
        caused by another one (tiny updates under saturation, say) is an ``info`` note naming its cause.
    """
    window = Window.of(getattr(source, "record", source))
    found = defer([finding for rule in RULES for finding in rule(window)])
    return Findings(sorted(_one_per_place(found), key=lambda f: SEVERITY_RANK[f.severity]))


def _one_per_place(findings: list[Finding]) -> list[Finding]:
    """Keep one finding per (id, layer): the most severe, and among equals the latest step."""
    best: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        key = (finding.id, finding.layer)
        kept = best.get(key)
        if kept is None or _rank(finding) < _rank(kept):
            best[key] = finding
    return list(best.values())


def _rank(finding: Finding) -> tuple[int, int]:
    return SEVERITY_RANK[finding.severity], -(finding.step if finding.step is not None else -1)


__all__ = ["RULES", "Rule", "Window", "evaluate"]
