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

# Fixed since the corpus found them (kept as corpus programs): float64 (time_sequence_prediction, pinn_float64),
# torch.func vmap (per_sample_grads, dp_sgd), spectral_norm power iteration (spectral_norm_gan), deepcopy keeping
# hooks (ema_averaged_model, cleanrl_dqn), SAM's inner optimizer (sam), dead_units/update_ratio on 10 programs,
# preflight loss.initial_mismatch (super_resolution), model.frozen (spatial_transformer), a pruned model (pruning),
# an idle MoE expert's empty activation read as NaN (switch_moe), the update ratio of mnist_forward_forward.
FUNC = (
    "silently blind: every training forward runs under torch.func vmap(grad(functional_call)), whose calls nbdiag "
    "skips (said as info), so no activation is recorded to compare"
)

KNOWN: dict[tuple[str, str], str] = {
    # -- not recorded (owner: robust) --
    ("stats", "per_sample_grads"): FUNC,
    ("stats", "dp_sgd"): FUNC,
    # -- false alarms of live rules (owner: rules) --
    ("live", "mnist_forward_forward"): "act.dead_units warn at the threshold: 24 of layer1's 48 ReLU units (50%) never "
    "fire over the whole 256-sample batch for 10 sampled steps (Forward-Forward layers fed the previous layer's "
    "normalized non-negative output; Adam lr=0.03 as in the example); the loss falls meanwhile",
}
