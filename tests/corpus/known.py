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

DEAD = "false alarm act.dead_units: ReLU units quiet over 10 sampled steps in a correct, learning program"
RATIO = "false alarm train.update_ratio: median update/weight ratio > 0.1 with the source's own optimizer settings"

# Fixed since the corpus found them (kept as corpus programs): float64 (time_sequence_prediction, pinn_float64),
# torch.func vmap (per_sample_grads, dp_sgd), spectral_norm power iteration (spectral_norm_gan), deepcopy keeping
# hooks (ema_averaged_model, cleanrl_dqn), SAM's inner optimizer (sam), dead_units/update_ratio on 10 programs,
# preflight loss.initial_mismatch (super_resolution), model.frozen (spatial_transformer), a pruned model (pruning).
FUNC = (
    "silently blind: every training forward runs under torch.func vmap(grad(functional_call)), whose calls nbdiag "
    "skips (said as info), so no activation is recorded to compare"
)

KNOWN: dict[tuple[str, str], str] = {
    # -- not recorded (owner: robust) --
    ("stats", "per_sample_grads"): FUNC,
    ("stats", "dp_sgd"): FUNC,
    # -- false alarms of live rules (owner: rules) --
    ("live", "mnist_forward_forward"): DEAD + "; and " + RATIO + " (Adam lr=0.03 on one 2-parameter layer, as in the "
    "example)",
    ("live", "switch_moe"): "false alarm train.nonfinite (fail): an MoE expert given no token this step has an empty "
    "activation whose mean/std are NaN; and act.dead_units on that expert's ReLU, which had no input to fire on",
}
