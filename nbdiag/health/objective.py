"""What the logged losses are meant to do: fall (supervised), play a game (GAN), or follow a return (policy gradient).

The loss rules of :mod:`nbdiag.health.loss` judge a loss that should fall. A GAN's generator loss rises when the
discriminator improves, and a REINFORCE loss grows with the episode length as the policy improves: judging those
as supervised losses gives "lower the learning rate" for a healthy run. So the rules first ask for the objective:

- declared: ``watch(..., objective="supervised" | "gan" | "policy_gradient" | "custom")`` (kept in
  ``record.meta.objective``, so a run directory read back is judged the same way);
- otherwise inferred from the scalar names given to ``mon.step()``, only where the names leave no doubt:
  a discriminator *and* a generator loss (``loss_d``/``loss_g``, ``errD``/``errG`` as in pytorch/examples dcgan,
  ``d_loss``/``g_loss``, ``loss_disc``/``loss_gen``), or the discriminator's outputs (``D_x`` and ``D_G_z``/
  ``D_G_z1``/``d_real``/``d_fake``) mean a GAN; a reward, return, policy, actor or advantage scalar means policy
  gradient (reinforcement learning);
- else "supervised".

Two optimizers alone do not mean a GAN (an encoder/decoder pair trains with two as well), so they decide nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

OBJECTIVES = ("supervised", "gan", "policy_gradient", "custom")
ROLE_PATTERNS: dict[str, re.Pattern[str]] = {  # matched against the lower-cased scalar name
    "d_loss": re.compile(r"(loss_?(d|disc|discriminator|critic)|(d|disc|discriminator)_?loss|errd)"),
    "g_loss": re.compile(r"(loss_?(g|gen|generator)|(g|gen|generator)_?loss|errg)"),
    "d_real": re.compile(r"(d_?x|d_?real)"),
    "d_fake": re.compile(r"(d_?fake|d_?g_?z[12]?)"),
}
_RL_WORDS = frozenset({"reward", "rewards", "return", "returns", "policy", "actor", "advantage", "advantages"})


@dataclass(frozen=True)
class Objective:
    """What the loss rules judge.

    Attributes:
        kind: one of ``OBJECTIVES``.
        roles: GAN role -> scalar name (``d_loss``, ``g_loss``, ``d_real``, ``d_fake``), those that were logged.
        source: ``"declared"`` or why it was inferred, for messages.
    """

    kind: str
    roles: dict[str, str] = field(default_factory=dict)
    source: str = "declared"

    @property
    def loss_should_fall(self) -> bool:
        """Whether ``loss`` is meant to fall, so that a rising or flat loss means something is wrong."""
        return self.kind == "supervised"


def check_objective(objective: object) -> str | None:
    """``objective`` itself when valid (None means: infer it).

    Raises:
        ValueError: an unknown objective.
    """
    if objective is None or objective in OBJECTIVES:
        return objective  # type: ignore[return-value]
    raise ValueError(
        f"got objective={objective!r}, expected None (inferred from the scalar names) or one of {OBJECTIVES}; "
        "e.g. watch(netG, optimizerG, objective='gan')"
    )


def resolve(declared: str | None, scalar_names: Iterable[str]) -> Objective:
    """The objective of a run: ``declared`` if given, else inferred from the names of its logged scalars."""
    names = sorted(scalar_names)
    roles = gan_roles(names)
    if declared is not None:
        return Objective(declared, roles if declared == "gan" else {}, "declared")
    if ("d_loss" in roles and "g_loss" in roles) or ("d_real" in roles and "d_fake" in roles):
        return Objective("gan", roles, f"inferred from the scalars {', '.join(sorted(roles.values()))}")
    rl = [name for name in names if _words(name) & _RL_WORDS]
    if rl:
        return Objective("policy_gradient", {}, f"inferred from the scalar {rl[0]!r}")
    return Objective("supervised", {}, "no objective declared")


def gan_roles(names: Iterable[str]) -> dict[str, str]:
    """GAN role -> the first logged scalar (in sorted order) whose whole lower-cased name matches the role."""
    roles: dict[str, str] = {}
    for name in sorted(names):
        for role, pattern in ROLE_PATTERNS.items():
            if role not in roles and pattern.fullmatch(name.lower()):
                roles[role] = name
    return roles


def _words(name: str) -> set[str]:
    """``'episodeReturn'`` / ``'running_reward'`` -> its lower-cased words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return {word for word in re.split(r"[^a-zA-Z]+", spaced.lower()) if word}
