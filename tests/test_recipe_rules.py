"""The rest of the recipe, on hand-built records and tiny models: train/validation gap, too good to be true,
frozen layers at init, train/eval mode while training, an output activation before a loss that expects logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.checks import check_frozen_init, check_output_activation, check_target_leak
from nbdiag.health import evaluate, updates
from nbdiag.health.generalization import training_at
from nbdiag.health.window import Window
from nbdiag.meta import ValidationMode
from nbdiag.record import Record


def curves(train: list[float], val: dict[int, float], **meta) -> Record:
    """A record with a training loss per step and validation losses at the given steps."""
    rec = Record(capacity=64)
    rec.update_meta(**meta)
    for step, value in enumerate(train):
        rec.add_scalars(step, {"loss": value})
    for step, value in val.items():
        rec.add_scalars(step, {"val_loss": value})
    return rec


def ids(rec: Record) -> dict[str, str]:
    return {f.id: f.severity for f in evaluate(rec)}


def falling(steps: int, start: float = 2.3, end: float = 0.1) -> list[float]:
    return list(np.geomspace(start, end, steps))


def test_training_loss_at_a_validation_step_is_the_median_since_the_previous_one():
    rec = curves([5, 1, 2, 3, 10, 20, 30], {2: 0.0, 6: 0.0})
    assert training_at(Window.of(rec), np.array([2, 6])).tolist() == [2.0, 15.0]


@pytest.mark.parametrize(("rise", "expected"), [(0.09, None), (0.11, "warn")])
def test_overfitting_when_validation_stays_10_percent_above_its_minimum(rise, expected):
    val = {19: 1.5, 39: 1.0, 59: 1.0 * (1 + rise), 79: 1.0 * (1 + rise) + 0.01}
    assert ids(curves(falling(80), val)).get("train.overfitting") == expected


def test_overfitting_evidence_is_the_gap_at_the_best_step_and_now():
    val = {19: 1.5, 39: 1.0, 59: 1.3, 79: 1.4}
    train = falling(80)
    finding = next(f for f in evaluate(curves(train, val)) if f.id == "train.overfitting")
    assert finding.evidence["best_val_step"] == 39
    assert finding.evidence["train_loss_at_best"] == pytest.approx(np.median(train[20:40]))
    assert finding.evidence["gap"] == pytest.approx(1.4 - np.median(train[60:80]))
    assert finding.evidence["gap"] > finding.evidence["gap_at_best"]


def test_no_overfitting_when_training_loss_rises_too_or_validation_is_sparse():
    rising = list(np.linspace(1.0, 3.0, 80))
    assert "train.overfitting" not in ids(curves(rising, {19: 1.5, 39: 1.0, 59: 1.3, 79: 1.4}))
    assert "train.overfitting" not in ids(curves(falling(80), {39: 1.0, 59: 1.3, 79: 1.4}))  # 3 points only


def test_underfitting_when_both_curves_plateau_above_half_the_start():
    train = [2.3] * 5 + [1.5] * 75
    assert ids(curves(train, {19: 1.52, 39: 1.5, 59: 1.51, 79: 1.5}))["train.underfitting"] == "warn"
    low = [2.3] * 5 + [1.0] * 75  # plateaued, but at 43% of the start: it learned
    assert "train.underfitting" not in ids(curves(low, {19: 1.02, 39: 1.0, 59: 1.01, 79: 1.0}))
    still_falling = [2.3] * 5 + list(np.linspace(2.0, 1.2, 75))
    assert "train.underfitting" not in ids(curves(still_falling, {19: 1.9, 39: 1.6, 59: 1.4, 79: 1.2}))


def test_no_gap_on_a_large_model_is_a_note():
    train = [2.3] * 5 + [0.8] * 75
    val = {19: 0.9, 39: 0.85, 59: 0.81, 79: 0.805}
    assert ids(curves(train, val, parameters=1_000_000))["train.underfitting"] == "info"
    assert "train.underfitting" not in ids(curves(train, val, parameters=10_000))


def accuracy_record(train: dict[int, float], val: dict[int, float]) -> Record:
    rec = Record()
    for step in range(200):
        rec.add_scalars(step, {"loss": 1.0, "acc": train.get(step, 0.5)})
    for step, value in val.items():
        rec.add_scalars(step, {"val_acc": value})
    return rec


@pytest.mark.parametrize(
    ("acc", "val_acc", "expected"),
    [(0.97, 1.0, None), (0.99, 0.999, "info"), (0.99, 0.97, None), (1.0, 0.99, None)],
)
def test_too_good_needs_training_and_held_out_accuracy_near_perfect_early(acc, val_acc, expected):
    """Two signals agreeing: a run of training accuracies >= 98% AND a validation accuracy >= 99.5% before step
    100. An easy task (training accuracy 100%, validation 97-99%, like the notebooks' digits runs) stays silent."""
    rec = accuracy_record({step: acc for step in range(40, 46)}, {59: val_acc})
    assert ids(rec).get("train.too_good") == expected


def test_too_good_is_silent_on_training_accuracy_alone_and_on_late_accuracy():
    alone = Record()
    for step in range(200):
        alone.add_scalars(step, {"acc": 1.0})  # the quickstart's CNN: no held-out accuracy logged
    assert "train.too_good" not in ids(alone)
    late = accuracy_record({step: 1.0 for step in range(100, 200)}, {119: 1.0})
    assert "train.too_good" not in ids(late)


# --- monitor: validate() and mode -----------------------------------------------------------------------------


def _train(model: nn.Module, steps: int, validate_mode: str | None = None, every: int = 1) -> list:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with nbdiag.watch(model, opt, every=every, dense=0, display=False) as mon:
        for _ in range(steps):
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=1.0)
            if validate_mode is not None:
                model.train(validate_mode == "train")
                mon.validate(val_loss=1.0, val_acc=0.5)
                model.train()
    return mon


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def test_validate_logs_at_the_last_trained_step():
    mon = _train(_net(), 3, validate_mode="eval")
    scalars = mon.scalars()
    assert scalars["val_loss"].dropna().index.tolist() == [0, 1, 2]
    assert mon.record.meta.validation_mode == ValidationMode(calls=3, train_mode_calls=0, layers=())


def test_training_in_eval_mode_is_caught_live_and_train_mode_is_quiet():
    model = _net().eval()
    found = [f for f in _train(model, 5).findings() if f.id == "model.train_eval_mode"]
    assert [(f.severity, f.evidence["layers"]) for f in found] == [("warn", ["1", "3"])]
    assert not [f for f in _train(_net(), 5).findings() if f.id == "model.train_eval_mode"]


def test_frozen_batch_norm_in_eval_mode_is_a_deliberate_fine_tune():
    model = _net()
    model[1].requires_grad_(False)
    model[1].eval()
    assert not [f for f in _train(model, 5).findings() if f.id == "model.train_eval_mode"]


def test_validating_in_train_mode_is_caught():
    found = [f for f in _train(_net(), 3, validate_mode="train").findings() if f.id == "model.train_eval_mode"]
    assert found and "validate()" in found[0].message
    assert not [f for f in _train(_net(), 3, validate_mode="eval").findings() if f.id == "model.train_eval_mode"]


def test_mode_tracking_does_not_change_training():
    def losses(watched: bool) -> list[float]:
        torch.manual_seed(0)
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        mon = nbdiag.watch(model, opt, every=1, display=False) if watched else None
        out = []
        for _ in range(4):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(float(loss.detach()))
            if mon is not None:
                mon.step(loss=loss)
                mon.validate(val_loss=0.5)
        if mon is not None:
            mon.close()
        return out

    assert losses(True) == losses(False)


# --- preflight checks -----------------------------------------------------------------------------------------


def _labels(n: int = 512, classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % classes


def test_target_leak_finds_the_pixel_that_encodes_the_label():
    y = _labels()
    x = torch.randn(len(y), 1, 4, 4)
    x[:, 0, 2, 3] = y.float() * 0.1
    found = check_target_leak((x, y), nn.CrossEntropyLoss())
    assert [f.evidence["feature"] for f in found] == [11]
    assert "(0, 2, 3)" in found[0].message and "Drop the leaking feature" in found[0].advice


def test_no_target_leak_on_noise_a_noisy_copy_or_regression():
    y = _labels()
    x = torch.randn(len(y), 16)
    assert check_target_leak((x, y), nn.CrossEntropyLoss()) == []
    x[:, 3] = y.float() + 0.8 * torch.randn(len(y))  # informative, not a leak: ~75% accuracy
    assert check_target_leak((x, y), nn.CrossEntropyLoss()) == []
    assert check_target_leak((x, y.float()[:, None]), nn.MSELoss()) == []


def test_validation_that_is_the_training_set_is_a_leak():
    x, y = torch.randn(200, 8), _labels(200)
    found = check_target_leak((x, y), nn.CrossEntropyLoss(), val_data=(x[:100], y[:100]))
    assert [f.evidence.get("fraction") for f in found] == [1.0]
    assert "Split the data once" in found[0].advice and "leaking feature" not in found[0].advice  # no feature leaks
    assert check_target_leak((x, y), nn.CrossEntropyLoss(), val_data=(torch.randn(100, 8), y[:100])) == []


def test_frozen_layer_at_default_init_warns_and_a_trained_one_does_not():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    model[0].requires_grad_(False)
    found = check_frozen_init(model)
    assert [(f.id, f.severity, f.layer) for f in found] == [("model.frozen", "warn", "0")]
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # moved out of U(-b, b): no longer the default init
    assert check_frozen_init(model) == []
    model[2].requires_grad_(True)
    assert check_frozen_init(nn.Sequential(nn.Linear(64, 8))) == []  # trainable: not judged


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.Sigmoid(), nn.Softmax(dim=1), nn.ReLU(inplace=True)])
def test_output_activation_is_named_wherever_it_sits(activation):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
            self.head = nn.ModuleDict({"fc": nn.Linear(16, 3), "act": activation})

        def forward(self, x):
            return self.head["act"](self.head["fc"](self.body(x))).reshape(len(x), 3)

    batch = (torch.randn(16, 8), torch.randint(0, 3, (16,)))
    found = check_output_activation(Net(), batch, nn.CrossEntropyLoss())
    assert [(f.id, f.severity, f.layer) for f in found] == [("loss.output_activation", "fail", "head.act")]
    assert check_output_activation(Net(), batch, nn.NLLLoss()) == []  # NLLLoss expects log-probabilities


def test_no_output_activation_when_a_linear_layer_or_a_functional_op_comes_last():
    batch = (torch.randn(16, 8), torch.randint(0, 3, (16,)))
    plain = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    assert check_output_activation(plain, batch, nn.CrossEntropyLoss()) == []

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(8, 3), nn.ReLU()

        def forward(self, x):
            return self.act(x)[:, :3] * 2 + self.fc(x)

    assert check_output_activation(Functional(), batch, nn.CrossEntropyLoss()) == []


def test_watch_warns_live_about_a_layer_frozen_at_its_random_init_but_not_a_trained_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model[0].requires_grad_(False)
    head = torch.optim.SGD(model[2].parameters(), lr=0.1)
    with nbdiag.watch(model, head, display=False) as mon:
        found = [f for f in mon.findings() if f.id == "model.frozen"]
    assert [(f.severity, f.layer) for f in found] == [("warn", "0")]
    schedule = torch.optim.SGD(model.parameters(), lr=0.1)  # holds the frozen layer: unfrozen later, maybe
    with nbdiag.watch(model, schedule, display=False) as mon:
        assert not [f for f in mon.findings() if f.id == "model.frozen"]
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # as if trained: outside PyTorch's default init bound
    with nbdiag.watch(model, head, display=False) as mon:
        assert not [f for f in mon.findings() if f.id == "model.frozen"]


# -- issue 25: false alarms on correct code, fixed by principle ---------------------------------------------------
def _train_watched(model: nn.Module, steps: int = 40, lr: float = 1e-2, x_shape=(16, 1, 8, 8)) -> list:
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with nbdiag.watch(model, optimizer, every=1, display=False) as mon:
        for _ in range(steps):
            loss = model(torch.randn(*x_shape)).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            mon.step(loss=loss)
    return mon.findings()


def _conv_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2))


def test_batch_norm_frozen_on_its_own_is_deliberate_a_model_in_eval_mode_is_not():
    """QAT's freeze_bn_stats (and fine-tuning's frozen BN statistics) put one module in eval mode inside a parent
    that trains; model.eval() puts every ancestor in eval mode too."""
    frozen_bn = _conv_bn()
    frozen_bn[1].eval()
    assert "model.train_eval_mode" not in {f.id for f in _train_watched(frozen_bn)}
    whole = _conv_bn().eval()
    assert "model.train_eval_mode" in {f.id for f in _train_watched(whole) if f.severity == "warn"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao.quantization: still what the QAT tutorial uses
def test_qat_freeze_bn_stats_is_not_training_in_eval_mode():
    quantization = pytest.importorskip("torch.ao.quantization")
    intrinsic_qat = pytest.importorskip("torch.ao.nn.intrinsic.qat")
    model = _conv_bn().train()
    model.qconfig = quantization.get_default_qat_qconfig("fbgemm")
    model = quantization.prepare_qat(quantization.fuse_modules_qat(model, [["0", "1", "2"]]))
    model.apply(intrinsic_qat.freeze_bn_stats)
    assert not model[0].bn.training and model[0].training  # what freeze_bn_stats does
    assert "model.train_eval_mode" not in {f.id for f in _train_watched(model)}


def test_zero_initialised_biases_do_not_set_the_update_ratio():
    """Issue 25: a 4-parameter model (two Linear(1, 1)) whose two zero-initialised biases stay near 0: their ratio
    is huge while the weights move at ~lr; the norm-weighted median follows the weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 1), nn.Tanh(), nn.Linear(1, 1))
    for layer in (model[0], model[2]):
        nn.init.zeros_(layer.bias)
        nn.init.constant_(layer.weight, 1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with nbdiag.watch(model, optimizer, every=1, display=False) as mon:
        for _ in range(30):
            x = torch.randn(32, 1)
            loss = (model(x) - 0.5 * x).pow(2).mean()  # no offset: the biases hover around zero
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            mon.step(loss=loss)
    ratios = mon.frame("update", stats=["update_ratio"]).groupby("layer").value.median()
    assert ratios[["0.bias", "2.bias"]].min() > updates.UPDATE_RATIO_HIGH  # the plain median of 4 would be above
    assert ratios[["0.weight", "2.weight"]].max() < updates.UPDATE_RATIO_HIGH
    assert "train.update_ratio" not in {f.id for f in mon.findings()}


def _digits_run(leak: bool) -> list:
    """Notebook 08's MLP on the digits for 100 steps, validating every 20; ``leak``: pixel 0 encodes the label and
    the "validation" set is the first 200 training samples (both leaks of the notebook's too-good section)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = torch.tensor(digits.data, dtype=torch.float32), torch.tensor(digits.target)
    x = (x - x[:1400].mean(0)) / x[:1400].std(0).clamp_min(1e-6)
    x_train, y_train, x_val, y_val = x[:1400], y[:1400], x[1400:], y[1400:]
    if leak:
        x_train = x_train.clone()
        x_train[:, 0] = (y_train.float() - 4.5) / 2.9
        x_val, y_val = x_train[:200], y_train[:200]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    with nbdiag.watch(model, opt, every=10, num_classes=10, display=False) as mon:
        for step in range(100):
            batch = torch.randint(0, len(y_train), (64,), generator=generator)
            out = model(x_train[batch])
            loss = nn.functional.cross_entropy(out, y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss=loss, acc=(out.argmax(1) == y_train[batch]).float().mean())
            if step % 20 == 19:
                with torch.no_grad():
                    mon.validate(val_acc=float((model(x_val).argmax(1) == y_val).float().mean()))
    return mon.findings()


@pytest.mark.slow
def test_too_good_is_silent_on_a_healthy_digits_run_and_notes_a_leaking_one():
    """The notebooks' easy task (training accuracy 98-100% by step ~60) says nothing; the same run with the label
    leaking into pixel 0 and validating on training samples is noted."""
    assert "train.too_good" not in [f.id for f in _digits_run(leak=False)]
    assert "train.too_good" in [f.id for f in _digits_run(leak=True)]


def test_units_that_saw_no_input_are_not_dead():
    """Issue 25: a top-1 routed expert that got no token over the window is idle, not dead."""
    from nbdiag.units import UnitSpec, UnitWindow

    spec, window = UnitSpec(axis=-1, dead=True, bounds=None), UnitWindow(size=3)
    idle = np.zeros((3, 4), dtype=np.int64)  # fired, saturated, elements: no input at all
    dead_and_idle = np.array([[0, 5, 0, 0], [0, 0, 0, 0], [8, 8, 0, 0]])  # unit 0 saw 8 inputs, never fired
    for step in range(3):
        block = window.block(step, {"expert": idle if step < 2 else dead_and_idle}, {"expert": spec})
    row = dict(zip(block.stats, block.values[0], strict=True))
    assert row["dead_units"] == 1 and row["units"] == 4  # unit 0 only; units 2-3 never saw an input


def _slow_climb(plateau: bool) -> tuple[list[float], dict[int, float]]:
    """Issue 19, class 1 (40 digits, a 256-wide MLP, Adam 1e-3, 600 steps, validation every 10): training loss
    2.33 -> 0.000; validation bottoms at 0.68 (step 60) and climbs steadily to 0.86, +-1% noise. The clean twin's
    validation flattens at its minimum instead."""
    rng = np.random.default_rng(0)
    train = list(np.geomspace(2.33, 1e-4, 600))
    steps = np.arange(9, 600, 10)
    val = np.where(steps <= 60, 2.3 - (2.3 - 0.68) * steps / 60, 0.68 + (0 if plateau else 0.18) * (steps - 60) / 540)
    val = val * (1 + 0.01 * rng.standard_normal(len(steps)))
    return train, dict(zip(steps.tolist(), val.tolist(), strict=True))


def test_a_slow_climb_of_the_validation_loss_is_overfitting_and_its_plateau_is_not():
    train, val = _slow_climb(plateau=False)
    first_above = next(v for s, v in val.items() if s > 69)
    assert first_above < 1.1 * min(val.values())  # the old rule (every later point 10% above the minimum) stayed quiet
    finding = next(f for f in evaluate(curves(train, val)) if f.id == "train.overfitting")
    assert finding.severity == "warn" and finding.evidence["best_val_step"] in range(
        49, 150
    )  # the minimum, within noise
    assert finding.evidence["recent_val_loss"] >= 1.1 * finding.evidence["best_val_loss"]
    assert f"step {finding.evidence['best_val_step']}" in finding.advice and "Stop early" in finding.advice
    assert "train.overfitting" not in ids(curves(*_slow_climb(plateau=True)))


def _sgd_run(zero_grad: bool, accumulate: int = 1, steps: int = 60) -> list:
    """Digits MLP, SGD 1e-2, watch(every=1): the hidden zoo's 60-step missing-zero_grad run, or its clean twins."""
    from tests.bugzoo import models
    from tests.bugzoo.datasets import digits

    torch.manual_seed(0)
    x, y, _, _ = digits()
    model = models.mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with nbdiag.watch(model, optimizer, every=1, display=False) as mon:
        for step in range(steps):
            i = (step * 64) % 1344
            loss = nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]) / accumulate
            loss.backward()
            if (step + 1) % accumulate == 0:
                optimizer.step()
                if zero_grad:
                    optimizer.zero_grad()
            mon.step(loss=loss)
    return [f for f in mon.findings() if f.id == "train.grad_accumulation"]


def test_missing_zero_grad_is_found_exactly_over_60_dense_steps_and_accumulation_is_not():
    """Issue 19, class 2: with every=1 the window spans 10 steps, under the 32-step span the trend rule needs; the
    exact rule sees gradients that survived an optimizer step."""
    (finding,) = _sgd_run(zero_grad=False)
    assert finding.severity == "warn" and finding.evidence["steps_leaked"] >= 3
    assert _sgd_run(zero_grad=True) == [] and _sgd_run(zero_grad=True, accumulate=4) == []
