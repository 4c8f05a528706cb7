"""GAN rule: the discriminator wins (train.gan_discriminator_wins), for runs whose objective is "gan".

When D tells real from generated samples with near certainty, D(x) -> 1 and D(G(z)) -> 0, its loss goes to zero and
the generator's gradient through D vanishes (with the minimax loss log(1 - D(G(z))) saturates), so G stops learning.
Judged over the last ``LOSS_TAIL`` logged values (medians) once ``GAN_MIN_STEPS`` were logged: from D's mean outputs
on real and generated batches when they are logged (``D_x`` / ``D_G_z`` as pytorch/examples dcgan computes them),
otherwise from the losses, read as the standard binary cross-entropy GAN losses (D's loss near zero *and* G's loss
at least -ln D_FAKE_WINS). Sources (outside the seed texts, which do not treat GANs): Goodfellow et al., "Generative
Adversarial Nets" (2014), section 3 (early in learning D rejects samples with high confidence and log(1 - D(G(z)))
saturates); Chintala et al., "How to Train a GAN? Tips and tricks to make GANs work" (ganhacks), "Track failures
early" (D loss going to 0 is a failure mode) and "Use Soft and Noisy Labels".
"""

from __future__ import annotations

import math

import numpy as np

from nbdiag.findings import Finding, make_finding
from nbdiag.health.window import LOSS_TAIL, Window

GAN_MIN_STEPS = 50  # judge only after this many logged values: D leads for a while at the start of every GAN
D_REAL_WINS = 0.98  # median D(x) at or above this ...
D_FAKE_WINS = 0.02  # ... and median D(G(z)) at or below this: D is (almost) always right and sure of it
D_LOSS_WINS = -2 * math.log(D_REAL_WINS)  # 0.040: BCE of D at D(x) = 0.98, D(G(z)) = 0.02 (real + fake terms)
G_LOSS_LOST = -math.log(D_FAKE_WINS)  # 3.9: the generator's BCE loss -ln D(G(z)) at D(G(z)) = 0.02


def discriminator_wins(window: Window) -> list[Finding]:
    """train.gan_discriminator_wins (warn): D(x) -> 1 and D(G(z)) -> 0 over the recent logged steps."""
    objective = window.objective
    if objective.kind != "gan":
        return []
    roles = objective.roles
    if "d_real" in roles and "d_fake" in roles:
        return _from_outputs(window, roles["d_real"], roles["d_fake"])
    if "d_loss" in roles and "g_loss" in roles:
        return _from_losses(window, roles["d_loss"], roles["g_loss"])
    return []


def _tail_median(window: Window, name: str) -> tuple[float, np.ndarray]:
    """The median of the last ``LOSS_TAIL`` values of ``name`` (NaN before ``GAN_MIN_STEPS`` or if any is NaN)."""
    steps, values = window.series(name)
    tail = values[-LOSS_TAIL:]
    if len(values) < GAN_MIN_STEPS or not np.isfinite(tail).all():
        return float("nan"), steps
    return float(np.median(tail)), steps


def _from_outputs(window: Window, real_name: str, fake_name: str) -> list[Finding]:
    real, steps = _tail_median(window, real_name)
    fake, _ = _tail_median(window, fake_name)
    if not (real >= D_REAL_WINS and fake <= D_FAKE_WINS):
        return []
    message = (
        f"the discriminator wins: median {real_name} = {real:.3g} and {fake_name} = {fake:.3g} over the last "
        f"{LOSS_TAIL} logged steps (up to step {steps[-1]}); D(x) -> 1 and D(G(z)) -> 0, so the generator's "
        "gradient vanishes"
    )
    evidence = {"d_real": real, "d_fake": fake, "d_real_scalar": real_name, "d_fake_scalar": fake_name}
    return [make_finding("train.gan_discriminator_wins", "warn", message, step=int(steps[-1]), evidence=evidence)]


def _from_losses(window: Window, d_name: str, g_name: str) -> list[Finding]:
    d_loss, steps = _tail_median(window, d_name)
    g_loss, _ = _tail_median(window, g_name)
    _, d_values = window.series(d_name)
    if not (0 <= d_loss <= D_LOSS_WINS and g_loss >= G_LOSS_LOST) or (d_values[-LOSS_TAIL:] < 0).any():
        return []  # a negative D loss is not a BCE loss (WGAN critic): its level says nothing here
    message = (
        f"the discriminator wins: median {d_name} = {d_loss:.3g} (near 0) while {g_name} = {g_loss:.3g} over the "
        f"last {LOSS_TAIL} logged steps (up to step {steps[-1]}), read as BCE GAN losses: D(G(z)) is about "
        f"{math.exp(-g_loss):.2g}. Log D's outputs (mon.step(D_x=..., D_G_z=...)) to judge them directly"
    )
    evidence = {"d_loss": d_loss, "g_loss": g_loss, "d_loss_scalar": d_name, "g_loss_scalar": g_name}
    return [make_finding("train.gan_discriminator_wins", "warn", message, step=int(steps[-1]), evidence=evidence)]
