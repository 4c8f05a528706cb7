"""Loss rules know what they judge: GAN and policy-gradient losses get no supervised verdict; GAN rules fire instead."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.health import evaluate, gan
from nbdiag.health.objective import resolve
from nbdiag.record import Record


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def scalar_record(objective: str | None = None, **series: list[float]) -> Record:
    """A record holding only scalars: ``series`` name -> one value per step."""
    rec = Record(capacity=64)
    rec.update_meta(objective=objective)
    for step in range(max(len(values) for values in series.values())):
        rec.add_scalars(step, {name: values[step] for name, values in series.items() if step < len(values)})
    return rec


def ids(rec: Record) -> dict[str, str]:
    return {f.id: f.severity for f in evaluate(rec)}


# -- which objective -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["errD", "errG", "D_x", "D_G_z1", "D_G_z2"], "gan"),  # pytorch/examples dcgan
        (["loss_D", "loss_G"], "gan"),
        (["d_loss", "g_loss"], "gan"),
        (["loss", "D_x", "D_G_z"], "gan"),
        (["loss", "running_reward"], "policy_gradient"),  # pytorch/examples reinforcement_learning
        (["loss_actor", "loss_critic"], "policy_gradient"),  # a critic without a generator is not a GAN
        (["loss", "episodeReturn"], "policy_gradient"),
        (["loss", "errG"], "supervised"),  # one role alone leaves doubt
        (["loss", "acc", "lr", "val_loss"], "supervised"),
        (["loss", "dx_norm", "gradient"], "supervised"),
    ],
)
def test_objective_is_inferred_only_from_unambiguous_names(names, expected):
    assert resolve(None, names).kind == expected


def test_declared_objective_wins_and_unknown_ones_are_refused():
    assert resolve("custom", ["errD", "errG"]).kind == "custom"
    assert resolve("gan", ["loss"]).roles == {}
    with pytest.raises(ValueError, match="expected None .* or one of"):
        nbdiag.watch(nn.Linear(2, 2), objective="adversarial", display=False)


# -- GAN -----------------------------------------------------------------------------------------------------------
GENERATOR_LOSS = [0.7] * 5 + list(np.linspace(0.7, 3.5, 95))  # rises as D improves: the game, not divergence


def test_rising_generator_loss_is_not_divergence_once_the_run_is_a_gan():
    before = scalar_record(loss=GENERATOR_LOSS)  # a monitor over netG with step(loss=errG), objective undeclared
    assert ids(before) == {"train.diverging": "info"}  # a rising loss alone (issue 25): a note asking for objective=
    assert "objective='gan'" in next(f for f in evaluate(before) if f.id == "train.diverging").message
    assert ids(scalar_record("gan", loss=GENERATOR_LOSS)) == {}
    assert ids(scalar_record(errD=[1.2] * 100, errG=GENERATOR_LOSS)) == {}


@pytest.mark.parametrize(
    ("d_x", "d_g_z", "expected"),
    [(0.99, 0.01, "warn"), (gan.D_REAL_WINS, gan.D_FAKE_WINS, "warn"), (0.97, 0.01, None), (0.99, 0.03, None)],
)
def test_discriminator_wins_from_its_outputs(d_x, d_g_z, expected):
    rec = scalar_record(errD=[0.05] * 60, errG=[5.0] * 60, D_x=[d_x] * 60, D_G_z1=[d_g_z] * 60)
    assert ids(rec).get("train.gan_discriminator_wins") == expected


def test_discriminator_wins_from_bce_losses_only():
    assert ids(scalar_record(loss_D=[0.03] * 60, loss_G=[4.5] * 60)) == {"train.gan_discriminator_wins": "warn"}
    assert ids(scalar_record(loss_D=[0.03] * 60, loss_G=[2.0] * 60)) == {}  # G's loss says D is not that sure
    assert ids(scalar_record(loss_D=[-0.03] * 60, loss_G=[4.5] * 60)) == {}  # a WGAN critic: not BCE
    assert ids(scalar_record(loss_D=[0.03] * (gan.GAN_MIN_STEPS - 1), loss_G=[4.5] * 49)) == {}


def test_a_nan_gan_loss_still_fails():
    rec = scalar_record(errD=[1.0] * 30 + [math.nan] * 5, errG=[1.0] * 35)
    (finding,) = evaluate(rec)
    assert finding.id == "train.diverging" and finding.severity == "fail" and "'errD'" in finding.message


def _gan(steps: int, g_lr: float, d_lr: float, objective: str | None = "gan") -> tuple[nbdiag.Monitor, ...]:
    """A pytorch/examples-dcgan-style loop (D step on real + detached fake, then G step) on 2-D points, one monitor
    per model: D's logs both losses and D's outputs (so the run is inferred to be a GAN), G's logs its loss."""
    net_g = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
    net_d = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1), nn.Sigmoid())
    criterion = nn.BCELoss()
    optimizer_d = torch.optim.Adam(net_d.parameters(), lr=d_lr, betas=(0.5, 0.999))
    optimizer_g = torch.optim.Adam(net_g.parameters(), lr=g_lr, betas=(0.5, 0.999))
    center = torch.tensor([2.0, -1.0])
    mon_g = nbdiag.watch(net_g, optimizer_g, objective=objective, display=False)
    with nbdiag.watch(net_d, optimizer_d, display=False) as mon_d, mon_g:
        for _ in range(steps):
            real = torch.randn(64, 2) * 0.5 + center
            net_d.zero_grad()
            label = torch.full((64,), 1.0)
            output = net_d(real).view(-1)
            err_d_real = criterion(output, label)
            err_d_real.backward()
            d_x = output.mean().item()
            fake = net_g(torch.randn(64, 4))
            label.fill_(0.0)
            output = net_d(fake.detach()).view(-1)
            err_d_fake = criterion(output, label)
            err_d_fake.backward()
            d_g_z1 = output.mean().item()
            err_d = err_d_real + err_d_fake
            optimizer_d.step()
            net_g.zero_grad()
            label.fill_(1.0)
            output = net_d(fake).view(-1)
            err_g = criterion(output, label)
            err_g.backward()
            optimizer_g.step()
            mon_d.step(errD=err_d, errG=err_g, D_x=d_x, D_G_z1=d_g_z1, D_G_z2=output.mean().item())
            mon_g.step(loss=err_g)
    return mon_d, mon_g


def serious(findings) -> set[str]:
    return {f.id for f in findings if f.severity != "info"}


def test_healthy_gan_raises_nothing_and_a_frozen_generator_lets_the_discriminator_win():
    mon_d, mon_g = _gan(120, g_lr=2e-3, d_lr=2e-3)
    assert serious(mon_d.findings()) == set() and serious(mon_g.findings()) == set()
    mon_d, mon_g = _gan(120, g_lr=0.0, d_lr=1e-2)  # planted: the generator never learns
    found = {f.id: f for f in mon_d.findings()}
    assert found["train.gan_discriminator_wins"].evidence["d_real"] >= gan.D_REAL_WINS
    assert serious(mon_g.findings()) == {"train.update_ratio"}  # lr=0: G's weights never move; no "diverging"
    _, undeclared = _gan(120, g_lr=0.0, d_lr=1e-2, objective=None)
    diverging = next(f for f in undeclared.findings() if f.id == "train.diverging")  # G's loss rises, undeclared
    assert diverging.severity == "info" and "objective=" in diverging.message  # gradients and updates stay healthy


# -- policy gradient -----------------------------------------------------------------------------------------------
def test_reinforce_loss_growing_with_episode_length_is_not_divergence():
    lengths = np.linspace(10, 200, 100)  # the policy improves: episodes last longer, the summed loss grows
    reinforce = list(-0.05 * lengths * np.log(0.5))
    assert ids(scalar_record(loss=reinforce))["train.diverging"] == "info"  # undeclared: a note, no alarm
    assert ids(scalar_record(loss=reinforce, running_reward=list(lengths))) == {}
    assert ids(scalar_record("policy_gradient", loss=reinforce)) == {}
    assert ids(scalar_record("policy_gradient", loss=reinforce[:50] + [math.inf] * 5))["train.diverging"] == "fail"


def test_custom_objective_silences_the_trend_rules_but_not_a_flat_supervised_loss():
    flat = [2.0] * 60
    assert ids(scalar_record("custom", loss=flat)) == {}
    assert ids(scalar_record(loss=flat)) == {"train.stalled": "warn"}


def test_declared_objective_travels_with_the_run_directory(tmp_path):
    model = nn.Linear(2, 1)
    with nbdiag.watch(model, objective="policy_gradient", run_dir=str(tmp_path / "run"), display=False) as mon:
        for value in np.linspace(1.0, 30.0, 40):  # a loss that grows: no verdict for RL
            model(torch.randn(4, 2)).sum().backward()
            mon.step(loss=float(value))
    assert nbdiag.open_run(str(tmp_path / "run")).record.meta.objective == "policy_gradient"
    assert [f.id for f in nbdiag.open_run(str(tmp_path / "run")).findings() if f.id.startswith("train.")] == []
