"""Corpus programs that nbdiag still gets wrong: ``(test, program) -> "<class>: <one line>"``.

``test`` is one of ``bitwise`` (training changed, an exception, a hook left), ``live`` (a warn/fail finding from the
live rules), ``stats`` (recorded std differs from an independent hook, or nothing recorded), ``update`` (no update
ratio recorded although the optimizer was given to ``watch``) and ``preflight``.
``program`` is a program's name, or ``<name>-every1`` / ``<name>-every10`` for one watch setting only. Each entry turns
its test into ``xfail(strict=True)``: when nbdiag is fixed the test passes unexpectedly (XPASS fails the run) until
the entry is removed. The classes are listed with their evidence in /work/coord/corpus_status.md (during development)
and summarised in docs/findings.md.
"""

from __future__ import annotations

VMAP_STATS = (
    "stats: every forward runs inside torch.func vmap, which nbdiag skips by design: no recorded layer to compare"
)
DEAD = "false alarm act.dead_units: ReLU units quiet over 10 sampled steps in a correct, learning program"
RATIO = "false alarm train.update_ratio: median update/weight ratio > 0.1 with the source's own optimizer settings"

KNOWN: dict[tuple[str, str], str] = {
    # -- exceptions, observation changing training, hooks left (owner: robust) --
    ("stats", "per_sample_grads"): VMAP_STATS,
    ("stats", "dp_sgd"): VMAP_STATS,
    # -- false alarms of live rules (owner: rules) --
    ("live", "mnist_forward_forward"): DEAD + "; and " + RATIO,
    ("live", "time_sequence_prediction"): RATIO + " (LBFGS lr=0.8, max_iter, as in the example)",
    ("live", "switch_moe"): "false alarm train.nonfinite (fail): an MoE expert given no token this step has an empty "
    "activation whose mean/std are NaN; and act.dead_units on that expert's ReLU, which had no input to fire on",
    # -- preflight (owner: rules) --
    ("preflight", "super_resolution"): "false alarm preflight loss.initial_mismatch: MSE regression, initial loss "
    "0.2511 vs 'expected about 0.07259 (Var y + Var of the outputs)'",
    ("preflight", "pruning"): "exception: preflight raises RuntimeError deepcopying a pruned model (weight is a "
    "non-leaf computed by prune's forward pre-hook) instead of reporting check.error",
}
