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

VMAP = "exception: forward hooks under torch.func vmap(grad(functional_call)) fail (scatter_add_ under vmap)"
VMAP_STATS = "stats: capture switched off under torch.func vmap, nothing recorded"
DEEPCOPY = "hook left: a deepcopy of the model taken on a sampled step keeps nbdiag's hooks after close()"
DEAD = "false alarm act.dead_units: ReLU units quiet over 10 sampled steps in a correct, learning program"
RATIO = "false alarm train.update_ratio: median update/weight ratio > 0.1 with the source's own optimizer settings"

KNOWN: dict[tuple[str, str], str] = {
    # -- exceptions, observation changing training, hooks left (owner: robust) --
    ("bitwise", "per_sample_grads"): VMAP,
    ("bitwise", "dp_sgd"): VMAP,
    ("live", "per_sample_grads"): VMAP,
    ("live", "dp_sgd"): VMAP,
    ("stats", "per_sample_grads"): VMAP_STATS,
    ("stats", "dp_sgd"): VMAP_STATS,
    ("bitwise", "ema_averaged_model-every1"): DEEPCOPY,
    ("bitwise", "cleanrl_dqn-every1"): DEEPCOPY,
    ("update", "per_sample_grads"): VMAP_STATS,
    ("update", "dp_sgd"): VMAP_STATS,
    ("update", "sam"): "silently blind: SAM's first_step/second_step step the inner base_optimizer, never the "
    "SAM.step() nbdiag hooked, so no update ratio is recorded",
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
