"""Each preflight check on its own against independent numbers, and preflight's guarantees (state, errors, budget)."""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.checks import (
    budget,
    check_baseline,
    check_batch_labels,
    check_batch_mixing,
    check_class_balance,
    check_constant_inputs,
    check_duplicates,
    check_gradient_flow,
    check_initial_loss,
    check_input_scale,
    check_loss_input,
    check_nonfinite,
    check_overfit,
    check_repeated_batches,
    check_targets,
    check_train_mode,
    collect_batches,
    gradcheck,
    lr_range_test,
)
from tests.bugzoo import models
from tests.bugzoo.datasets import digits, loader
from tests.clock import FakeClock


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _digits_batch(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = digits()
    return x[:n], y[:n]


def _ids(findings, severities=("warn", "fail")) -> set[str]:
    return {f.id for f in findings if f.severity in severities}


class Constant(nn.Module):
    """Outputs the same logits (``bias``) for every sample, whatever the input."""

    def __init__(self, bias: torch.Tensor, features: int = 64):
        super().__init__()
        self.linear = nn.Linear(features, len(bias))
        nn.init.zeros_(self.linear.weight)
        with torch.no_grad():
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


# --- initial loss ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_initial_loss_uniform_logits_equals_minus_log_one_over_c(classes):
    x = torch.randn(64, 64)
    y = torch.randint(0, classes, (64,))
    assert check_initial_loss(Constant(torch.zeros(classes)), (x, y), nn.CrossEntropyLoss()) == []
    assert nbdiag.checks.expected_initial_loss(
        nbdiag.checks.losskind.loss_kind(nn.CrossEntropyLoss()), torch.zeros(64, classes), y, None
    ) == pytest.approx(-np.log(1 / classes))


def test_initial_loss_mismatch_reports_the_measured_and_expected_numbers():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    bias = torch.zeros(10)
    bias[0] = 8.0  # confident in class 0 at init
    (finding,) = check_initial_loss(Constant(bias), (x, y), nn.CrossEntropyLoss(), num_classes=10)
    logits = bias.numpy().astype(np.float64)
    per_sample = np.log(np.exp(logits).sum()) - logits[y.numpy()]  # cross-entropy in numpy
    assert finding.id == "loss.initial_mismatch" and finding.severity == "warn"
    assert finding.evidence["loss"] == pytest.approx(per_sample.mean(), rel=1e-5)
    assert finding.evidence["expected"] == pytest.approx(-np.log(1 / 10))


def test_initial_loss_num_classes_overrides_the_output_width():
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    model = Constant(torch.zeros(1000))  # loss ln 1000 at init
    assert check_initial_loss(model, (x, y), nn.CrossEntropyLoss()) == []  # consistent with its own width
    (finding,) = check_initial_loss(model, (x, y), nn.CrossEntropyLoss(), num_classes=10)
    assert finding.evidence["loss"] == pytest.approx(np.log(1000), rel=1e-5)


def test_initial_loss_for_mse_is_the_target_variance():
    x = torch.randn(200, 64)
    y = torch.randn(200, 1, generator=torch.Generator().manual_seed(3))
    zero_model = Constant(torch.zeros(1))  # predicts 0; the targets' mean is ~0 so the loss ~ their variance
    assert check_initial_loss(zero_model, (x, y), nn.MSELoss()) == []
    (finding,) = check_initial_loss(zero_model, (x, y + 10.0), nn.MSELoss())
    assert finding.evidence["expected"] == pytest.approx(np.var(y.numpy().astype(np.float64)), rel=1e-6)
    assert finding.evidence["loss"] == pytest.approx(np.mean((y.numpy().astype(np.float64) + 10) ** 2), rel=1e-5)


def test_initial_loss_nan_is_a_fail():
    x, y = torch.randn(8, 64), torch.randint(0, 3, (8,))
    (finding,) = check_initial_loss(Constant(torch.tensor([float("nan"), 0.0, 0.0])), (x, y), nn.CrossEntropyLoss())
    assert finding.severity == "fail"


# --- loss input format -----------------------------------------------------------------------------------------


def _head(final: nn.Module | None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(models.mlp(), final) if final is not None else models.mlp()


@pytest.mark.parametrize(
    ("final", "loss_fn", "expected"),
    [
        (nn.Softmax(dim=1), nn.CrossEntropyLoss(), "fail"),
        (nn.LogSoftmax(dim=1), nn.CrossEntropyLoss(), "info"),
        (None, nn.CrossEntropyLoss(), None),
        (None, nn.NLLLoss(), "fail"),
        (nn.Softmax(dim=1), nn.NLLLoss(), "fail"),
        (nn.LogSoftmax(dim=1), nn.NLLLoss(), None),
    ],
)
def test_loss_input_form(final, loss_fn, expected):
    findings = check_loss_input(_head(final), _digits_batch(), loss_fn)
    assert [f.severity for f in findings] == ([expected] if expected else [])
    assert all(f.id == "loss.probabilities_to_ce" for f in findings)


def test_binary_loss_input_form():
    torch.manual_seed(0)
    x, y = torch.randn(32, 64), torch.randint(0, 2, (32, 1)).float()
    sigmoid_model = nn.Sequential(models.mlp(outputs=1), nn.Sigmoid())
    assert [f.severity for f in check_loss_input(sigmoid_model, (x, y), nn.BCEWithLogitsLoss())] == ["warn"]
    assert [f.severity for f in check_loss_input(models.mlp(outputs=1), (x, y), nn.BCELoss())] == ["fail"]
    assert check_loss_input(sigmoid_model, (x, y), nn.BCELoss()) == []


# --- targets ---------------------------------------------------------------------------------------------------


def test_targets_labels_one_based_fail_with_their_range():
    x, y = _digits_batch()
    (finding,) = check_targets(models.mlp(), (x, y + 1), nn.CrossEntropyLoss())
    assert finding.severity == "fail" and finding.id == "data.label_range"
    assert (finding.evidence["min"], finding.evidence["max"]) == (int(y.min()) + 1, int(y.max()) + 1)
    assert "y - 1" in finding.message


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32])
def test_targets_wrong_dtype_for_cross_entropy(dtype):
    x, y = _digits_batch()
    (finding,) = check_targets(models.mlp(), (x, y.to(dtype)), nn.CrossEntropyLoss())
    assert finding.severity == "fail" and "int64" in finding.message
    with pytest.raises(RuntimeError):
        nn.CrossEntropyLoss()(models.mlp()(x), y.to(dtype))  # what the check prevents


def test_targets_accepts_soft_targets_and_ignore_index():
    x, y = _digits_batch(64)
    soft = torch.softmax(torch.randn(64, 10), dim=1)
    assert check_targets(models.mlp(), (x, soft), nn.CrossEntropyLoss()) == []
    y = y.clone()
    y[::4] = -100
    assert check_targets(models.mlp(), (x, y), nn.CrossEntropyLoss()) == []


def test_targets_regression_shape_and_width_mismatch():
    x = torch.randn(32, 8)
    (finding,) = check_targets(models.mlp(outputs=1, features=8), (x, torch.randn(32)), nn.MSELoss())
    assert finding.severity == "fail" and "(N, N)" in finding.message
    assert check_targets(models.mlp(outputs=1, features=8), (x, torch.randn(32, 1)), nn.MSELoss()) == []
    xd, yd = _digits_batch()
    (finding,) = check_targets(models.mlp(outputs=12), (xd, yd), nn.CrossEntropyLoss(), num_classes=10)
    assert finding.severity == "warn" and finding.evidence["outputs"] == 12


# --- data ------------------------------------------------------------------------------------------------------


def test_nonfinite_counts_match_numpy():
    x, y = _digits_batch(100)
    x = x.clone()
    x[::7, 2] = float("nan")
    x[3, 5] = float("inf")
    (finding,) = check_nonfinite((x, y))
    assert finding.severity == "fail"
    assert finding.evidence["nonfinite"] == int((~np.isfinite(x.numpy())).sum())
    assert finding.evidence["samples"] == int((~np.isfinite(x.numpy())).any(axis=1).sum())
    assert check_nonfinite(_digits_batch(100)) == []


def test_constant_inputs_all_zero_and_never_varying_features():
    x, y = _digits_batch()
    (finding,) = check_constant_inputs((torch.zeros_like(x), y))
    assert finding.severity == "fail" and "all zero" in finding.message
    (finding,) = check_constant_inputs((x, y))
    assert finding.severity == "info"
    assert finding.evidence["constant_features"] == int((np.ptp(x.numpy(), axis=0) == 0).sum())
    half_dead = x.clone()
    half_dead[:, :40] = 1.0
    assert check_constant_inputs((half_dead, y))[0].severity == "warn"


def test_input_scale_rms_matches_numpy_and_thresholds():
    raw, _, _, _ = digits(standardize=False)
    pixels, y = raw[:256] * (255 / 16), _digits_batch()[1]
    (finding,) = check_input_scale((pixels, y))
    assert finding.evidence["rms"] == pytest.approx(np.sqrt(np.mean(pixels.numpy().astype(np.float64) ** 2)))
    assert "0-255" in finding.message
    assert check_input_scale((pixels / 255, y)) == []  # scaled to [0, 1]: fine
    assert check_input_scale(_digits_batch()) == []
    assert check_input_scale((pixels * 1e-6, y))[0].severity == "warn"


def test_class_balance_ratio_matches_bincount():
    x, y = _digits_batch(1400)
    keep = (y == 3) | (torch.arange(len(y)) % 25 == 0)
    (finding,) = check_class_balance([(x[keep], y[keep])], nn.CrossEntropyLoss())
    counts = np.bincount(y[keep].numpy())
    counts = counts[counts > 0]
    assert finding.evidence["ratio"] == pytest.approx(counts.max() / counts.min())
    assert check_class_balance(_digits_batch(), nn.CrossEntropyLoss()) == []
    assert check_class_balance(_digits_batch(), nn.MSELoss()) == []  # not classification


def test_batch_labels_sorted_fires_and_expectation_matches_simulation():
    x, y = _digits_batch(1400)
    assert check_batch_labels(loader(x, y), nn.CrossEntropyLoss()) == []
    order = torch.argsort(y, stable=True)
    assert check_batch_labels(loader(x[order], y[order], shuffle=False), nn.CrossEntropyLoss())
    # sorted batches of 10 over 80 labels with frequencies 0.1 / 0.3 / 0.6
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor([8, 24, 48]))
    batches = [(torch.zeros(10, 1), labels[i : i + 10]) for i in range(0, 80, 10)]
    (finding,) = check_batch_labels(batches, nn.CrossEntropyLoss())
    rng = np.random.default_rng(0)
    shuffled = [len(np.unique(rng.choice(3, 10, p=[0.1, 0.3, 0.6]))) for _ in range(20000)]
    assert finding.evidence["expected_if_shuffled"] == pytest.approx(np.mean(shuffled), abs=0.03)
    assert finding.evidence["distinct_per_batch"] == pytest.approx(np.mean([len(b[1].unique()) for b in batches]))


def test_repeated_batches():
    x, y = _digits_batch()
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    assert check_repeated_batches(batches) == []
    assert check_repeated_batches([batches[0]] * 5)[0].severity == "fail"
    (finding,) = check_repeated_batches(batches[:4] + batches[:2])
    assert finding.severity == "warn" and finding.evidence["distinct"] == 4


def test_duplicates_and_overlap_match_numpy():
    x, y = _digits_batch(300)
    x_dup, y_dup = torch.cat([x, x[:30]]), torch.cat([y, y[:30]])
    (finding,) = check_duplicates((x_dup, y_dup))
    unique = np.unique(x_dup.numpy(), axis=0)
    assert finding.evidence["duplicates"] == len(x_dup) - len(unique)
    assert check_duplicates((x, y)) == []
    (finding,) = check_duplicates((x[:200], y[:200]), val_data=(x[150:], y[150:]))
    assert finding.evidence["shared"] == 50 and finding.severity == "warn"


# --- model checks ----------------------------------------------------------------------------------------------


class BatchMean(nn.Module):
    """Subtracts the batch mean: sample i's output depends on every sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=0, keepdim=True)


def test_batch_mixing_detects_mixing_but_not_batch_norm():
    batch = _digits_batch(32)
    torch.manual_seed(0)
    (finding,) = check_batch_mixing(models.BatchMixingMLP(), batch)
    assert finding.id == "model.batch_mixing" and finding.severity == "fail"
    assert finding.evidence["other_grad_max"] > 0
    assert check_batch_mixing(nn.Sequential(BatchMean(), models.mlp()), batch)[0].id == "model.batch_mixing"
    assert check_batch_mixing(models.cnn(), batch) == []  # batch norm mixes in train mode only
    assert check_batch_mixing(models.mlp(), batch) == []
    (skipped,) = check_batch_mixing(nn.Embedding(10, 4), (torch.randint(0, 10, (8, 3)), torch.zeros(8)))
    assert skipped.id == "check.skipped"


def test_gradient_flow_causes():
    batch, loss_fn = _digits_batch(64), nn.CrossEntropyLoss()
    torch.manual_seed(0)
    model = models.mlp()
    assert check_gradient_flow(model, batch, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1)) == []
    model[0].requires_grad_(False)
    (finding,) = check_gradient_flow(model, batch, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1))
    assert finding.severity == "warn" and finding.evidence["parameters"] == ["0.weight", "0.bias"]
    (finding,) = check_gradient_flow(model, batch, loss_fn, torch.optim.SGD(model[2].parameters(), lr=0.1))
    assert finding.severity == "info"  # frozen and not in the optimizer: deliberate
    (finding,) = check_gradient_flow(models.DetachedMLP(), batch, loss_fn)
    assert "no gradient" in finding.message and finding.evidence["parameters"] == ["fc1.weight", "fc1.bias"]
    model = models.mlp()
    (finding,) = check_gradient_flow(model, batch, loss_fn, torch.optim.SGD(model[2].parameters(), lr=0.1))
    assert "not in the optimizer" in finding.message and finding.layer == "0"


def test_train_mode():
    assert check_train_mode(models.mlp_with_dropout()) == []
    (finding,) = check_train_mode(models.mlp_with_dropout().eval())
    assert finding.severity == "warn" and finding.evidence["layers"] == ["2"]
    assert check_train_mode(models.mlp().eval())[0].severity == "info"


def test_overfit_clean_passes_and_softmax_head_fails():
    batch, loss_fn = _digits_batch(64), nn.CrossEntropyLoss()
    assert check_overfit(_head(None), batch, loss_fn) == []
    (finding,) = check_overfit(_head(nn.Softmax(dim=1)), batch, loss_fn, steps=150)
    assert finding.id == "train.cannot_overfit" and finding.severity == "fail"
    assert finding.evidence["best_loss"] > 0.1 * finding.evidence["initial_loss"]
    (cut,) = check_overfit(_head(nn.Softmax(dim=1)), batch, loss_fn, deadline=budget.now())
    assert (cut.id, cut.severity) == ("check.inconclusive", "info")  # cut short: no verdict, not a pass


def test_baseline_separates_real_signal_from_shuffled_labels():
    x, y = _digits_batch(512)
    torch.manual_seed(0)
    assert check_baseline(models.mlp(), (x, y), nn.CrossEntropyLoss()) == []
    shuffled = y[torch.randperm(len(y))]
    (finding,) = check_baseline(models.mlp(), (x, shuffled), nn.CrossEntropyLoss())
    assert finding.id == "data.no_signal"
    assert finding.evidence["real_inputs_loss"] >= 0.9 * finding.evidence["zeroed_inputs_loss"]


# --- LR range test and gradcheck --------------------------------------------------------------------------------


def test_lr_range_test_restores_state_and_reads_the_curve():
    torch.manual_seed(0)
    model = models.mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), torch.get_rng_state()
    result = lr_range_test(model, loader(*_digits_batch(512)), nn.CrossEntropyLoss(), optimizer, progress=False)
    _assert_same_state_dict(model.state_dict(), before[0])
    assert optimizer.state_dict() == before[1] and optimizer.param_groups[0]["lr"] == 0.1
    assert torch.equal(torch.get_rng_state(), before[2])
    frame = result.frame()
    assert list(frame.columns) == ["lr", "loss", "smoothed"] and np.all(np.diff(frame["lr"]) > 0)
    assert result.diverged_at is not None and result.suggestion < result.diverged_at
    assert frame["smoothed"].iloc[-1] > frame["smoothed"].min()  # it stopped on divergence
    with pytest.raises(ValueError, match="start_lr"):
        lr_range_test(model, _digits_batch(), nn.CrossEntropyLoss(), optimizer, start_lr=1.0, end_lr=0.1)


def test_lr_range_reading_uses_the_low_point_so_far():
    from nbdiag.checks.lr_range import _read_curve

    lrs = np.logspace(-7, 1, 100)
    # the loss falls 8x (2.4 -> 0.3) up to lr ~3e-2, then rises 160x: divergence is judged against the low point
    # reached so far, not the curve's overall minimum (which would call the very first lr "diverged")
    losses = np.concatenate([np.linspace(2.4, 0.3, 70), np.geomspace(0.3, 50, 30)])
    result = _read_curve(lrs, losses)
    low = lrs[69]
    assert result.suggestion is not None and result.suggestion < low
    assert result.diverged_at is not None and result.diverged_at > low


def test_lr_range_plot_returns_axes():
    import matplotlib

    matplotlib.use("Agg")
    torch.manual_seed(0)
    model = models.mlp()
    optimizer = torch.optim.Adam(model.parameters())
    result = lr_range_test(model, _digits_batch(), nn.CrossEntropyLoss(), optimizer, steps=20, progress=False)
    ax = result.plot()
    assert ax.get_xscale() == "log" and len(ax.lines) >= 2


class WrongSquareGrad(torch.autograd.Function):
    """y = a * b^2 with the gradient for b wrong by a factor 2 (b instead of 2b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b**2

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad * b**2, grad * a * b


def test_gradcheck_passes_correct_and_locates_wrong_gradients():
    a, b = torch.randn(5), torch.randn(5)
    good = gradcheck(lambda p, q: p * q**2, a, b)
    assert good.passed and good.max_error < 1e-6
    bad = gradcheck(WrongSquareGrad.apply, a, b)
    assert not bad.passed and bad.worst_input == 1
    assert bad.errors[0] < 1e-6
    assert bad.max_error == pytest.approx(float((a.double() * b.double()).abs().max()), rel=1e-4)
    layer = nn.Linear(3, 2)
    assert gradcheck(layer, torch.randn(4, 3)).passed and layer.weight.dtype == torch.float32
    with pytest.raises(TypeError, match="expected"):
        gradcheck(layer)


# --- preflight guarantees --------------------------------------------------------------------------------------


def _assert_same_state_dict(after: dict, before: dict) -> None:
    assert after.keys() == before.keys()
    for key in before:
        assert torch.equal(after[key], before[key]), key


def test_preflight_changes_no_model_optimizer_or_rng_state():
    torch.manual_seed(0)
    model = models.cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = loader(*_digits_batch(512))
    xb, yb = next(iter(data))
    nn.CrossEntropyLoss()(model(xb), yb).backward()
    optimizer.step()  # the optimizer now has state, the model has grads and BN running stats
    random.seed(1)
    np.random.seed(2)
    state = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(optimizer.state_dict()),
        {n: p.grad.clone() for n, p in model.named_parameters()},
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
        data.generator.get_state(),
        model.training,
    )
    checks = (*nbdiag.checks.DEFAULT_CHECKS, "lr_range")
    report = nbdiag.preflight(model, data, nn.CrossEntropyLoss(), optimizer=optimizer, checks=checks, progress=False)
    assert {t.name for t in report.timings} == set(checks) and report.lr_range is not None
    _assert_same_state_dict(model.state_dict(), state[0])
    assert str(optimizer.state_dict()) == str(state[1])
    assert all(torch.equal(p.grad, state[2][n]) for n, p in model.named_parameters())
    assert torch.equal(torch.get_rng_state(), state[3])
    np_state = np.random.get_state()
    assert np_state[0] == state[4][0] and np.array_equal(np_state[1], state[4][1]) and np_state[2:] == state[4][2:]
    assert random.getstate() == state[5]
    assert torch.equal(data.generator.get_state(), state[6]) and model.training == state[7]


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape bug in forward")


def test_a_raising_model_becomes_a_check_error_finding():
    report = nbdiag.preflight(Broken(), _digits_batch(), nn.CrossEntropyLoss(), progress=False)
    errors = [f for f in report.findings if f.id == "check.error"]
    assert errors and errors[0].severity == "warn" and "shape bug in forward" in errors[0].message
    assert not report.ok
    statuses = {t.name: t.status for t in report.timings}
    assert statuses["nonfinite"] == "ran" and statuses["overfit"] == "skipped"


def test_a_raising_loss_is_reported_once_and_the_rest_runs():
    def loss_fn(output, target):
        raise ValueError("custom loss exploded")

    report = nbdiag.preflight(models.mlp(), _digits_batch(), loss_fn, progress=False)
    (error,) = [f for f in report.findings if f.id == "check.error"]  # one finding, not one per check
    assert "custom loss exploded" in error.message and "output_fn" in error.message
    status = {t.name: t.status for t in report.timings}
    assert {status[name] for name in ("initial_loss", "gradient_flow", "overfit", "baseline")} == {"skipped"}
    assert status["batch_mixing"] == "ran"


class Slow(nn.Module):
    """An MLP whose forward pass takes ``delay`` seconds of ``clock``'s time (a fake clock: no real waiting), and
    ``slower`` times that once the clock reads ``slow_from``: slower than preflight's calibration timed it."""

    def __init__(self, delay: float, clock: FakeClock, slower: float = 1.0, slow_from: float = math.inf):
        super().__init__()
        self.delay, self.clock, self.slower, self.slow_from, self.net = delay, clock, slower, slow_from, models.mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.advance(self.delay * (self.slower if self.clock.now >= self.slow_from else 1.0))
        return self.net(x)


def fake_check_time(monkeypatch) -> FakeClock:
    """Every nbdiag.checks module reads ``time.perf_counter`` from a fake clock that only the model moves."""
    clock = FakeClock()
    fake_time = SimpleNamespace(perf_counter=clock)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("nbdiag.checks.") and getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", fake_time)
    return clock


def test_budget_skips_checks_and_bounds_the_time(monkeypatch):
    batch = _digits_batch()
    report = nbdiag.preflight(models.mlp(), batch, nn.CrossEntropyLoss(), budget_s=1e-6, progress=False)
    assert all(t.status == "skipped" for t in report.timings)
    assert sum(f.id == "check.skipped" for f in report.findings) == len(report.timings)
    clock, budget, slow_step = fake_check_time(monkeypatch), 0.4, 0.05
    model = Slow(0.005, clock, slower=10, slow_from=clock.now + 0.01)  # 10x slower after calibration's 2 passes
    report = nbdiag.preflight(model, batch, nn.CrossEntropyLoss(), budget_s=budget, progress=False)
    assert report.seconds <= budget + slow_step  # checks past the budget are skipped, or cut at their next step
    out_of_time = [f.message for f in report.findings if f.severity == "info" and "budget" in f.message]
    assert any("overfit" in message or "baseline" in message for message in out_of_time), out_of_time
    assert not any(f.id in ("train.cannot_overfit", "data.no_signal") for f in report.findings)


def test_a_check_stops_at_its_first_step_past_the_deadline(monkeypatch):
    clock, step = fake_check_time(monkeypatch), 0.05
    deadline = clock.now + 0.2
    (finding,) = check_overfit(Slow(step, clock), _digits_batch(), nn.CrossEntropyLoss(), deadline=deadline)
    assert finding.severity == "info" and "time budget" in finding.message  # no verdict either way
    assert deadline < clock.now <= deadline + step


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (5, TypeError, "expected a DataLoader, an \\(x, y\\) batch"),
        (torch.zeros(4, 3), TypeError, "expected a DataLoader"),
        ([{"x": torch.zeros(2, 3)}], TypeError, "expected an \\(inputs, targets\\) pair"),
        ([], ValueError, "yields no batch"),
        ((torch.zeros(4, 3), torch.zeros(5)), ValueError, "same batch size"),
    ],
)
def test_bad_data_says_what_was_expected(data, error, match):
    with pytest.raises(error, match=match):
        nbdiag.preflight(models.mlp(), data, nn.CrossEntropyLoss(), progress=False)
    with pytest.raises(error, match=match):
        collect_batches(data)


def test_bad_arguments_say_what_was_expected():
    batch = _digits_batch(16)
    with pytest.raises(ValueError, match="unknown check"):
        nbdiag.preflight(models.mlp(), batch, nn.CrossEntropyLoss(), checks=("overfit", "nope"))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nbdiag.preflight(lambda x: x, batch, nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="budget_s"):
        nbdiag.preflight(models.mlp(), batch, nn.CrossEntropyLoss(), budget_s=0)


def test_report_renderings():
    torch.manual_seed(0)
    model = models.mlp_with_dropout().eval()
    report = nbdiag.preflight(model, _digits_batch(), nn.CrossEntropyLoss(), checks=["train_mode", "nonfinite"])
    assert not report.ok and report.ids("warn") == {"model.train_eval_mode"}
    frame = report.frame()
    assert list(frame["id"]) == [f.id for f in report.findings] and "advice" in frame.columns
    text = str(report)
    assert "WARN model.train_eval_mode" in text and "train_mode" in text
    html = report._repr_html_()
    assert "#ef6c00" in html and "model.train_eval_mode" in html
    assert list(report.timing_frame()["name"]) == ["train_mode", "nonfinite"]
    assert math.isfinite(report.seconds)


# -- issue 19: judged by the cause, with the cause's advice ---------------------------------------------------------
@pytest.mark.parametrize(("scale", "fires"), [(1.0, False), (1 / 16, False), (1 / 255, True), (1e-3, True)])
def test_input_signal_against_the_first_layers_bias(scale, fires):
    """The spread the inputs cause in the first layer (std over samples of W x, median over units) vs its bias's
    spread, computed here independently; squashed below a tenth of it warns whatever the fixed RMS floor says."""
    from nbdiag.checks.signal import SIGNAL_TO_BIAS, check_input_signal

    torch.manual_seed(0)
    model, (x, y) = models.mlp(), _digits_batch(64)
    x = x * scale
    found = check_input_signal(model, [(x, y)])
    ratio = float((x @ model[0].weight.T).std(dim=0).median() / model[0].bias.std())
    assert bool(found) is fires is (ratio < SIGNAL_TO_BIAS)
    if fires:
        assert found[0].evidence["ratio"] == pytest.approx(ratio, rel=1e-4) and "standardize" in found[0].message


def test_a_constant_loss_fails_with_its_own_advice_and_targets_that_dwarf_the_outputs_warn():
    torch.manual_seed(0)
    x, y = _digits_batch(128)
    odd = (y % 2).float().unsqueeze(1)
    (constant,) = [f for f in check_initial_loss(models.mlp(outputs=1), (x, odd), nn.CrossEntropyLoss())]
    assert (constant.id, constant.severity) == ("loss.constant", "fail") and "BCEWithLogitsLoss" in constant.advice
    assert check_initial_loss(models.mlp(outputs=1), (x, odd), nn.BCEWithLogitsLoss()) == []
    target = torch.randn(128, 1)
    scaled = [f for f in check_targets(models.mlp(outputs=1), (x, 1e4 * target), nn.MSELoss()) if f.severity != "info"]
    assert [f.id for f in scaled] == ["data.target_scale"] and "Normalize the targets" in scaled[0].message
    assert check_targets(models.mlp(outputs=1), (x, target), nn.MSELoss()) == []


def test_a_progress_bar_closed_early_by_design_is_not_left_red_on_the_page():
    """Issue 20: the overfit check stops once it has overfit (by design); tqdm's notebook bar closed short of its
    total turned red ("danger") and stayed above "preflight OK". finish() hides it instead."""
    notebook = pytest.importorskip("tqdm.notebook")
    from nbdiag.checks.progress import finish

    bar = notebook.tqdm(total=100, leave=False)
    bar.update(2)
    finish(bar)
    assert bar.container.children[1].bar_style != "danger"
    assert bar.container.layout.visibility == "hidden"
