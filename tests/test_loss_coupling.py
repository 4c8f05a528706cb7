"""loss.batch_coupling: a custom loss whose sample-i gradient reads other samples' outputs (issue 19, class 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbdiag
from nbdiag.checks.coupling import COUPLING_TOLERANCE, check_loss_coupling

N, D, C = 32, 12, 5


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _setup() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, C))
    return model, (torch.randn(N, D), torch.randint(0, C, (N,)))


def nll_over_batch(out, y):
    return F.nll_loss(F.log_softmax(out, dim=0), y)


def softmax_over_batch_mse(out, y):  # the same slip in another form
    return ((F.softmax(out, dim=0) - F.one_hot(y, C)) ** 2).mean()


def nll_over_classes(out, y):
    return F.nll_loss(F.log_softmax(out, dim=1), y)


def focal(out, y):
    logp = F.log_softmax(out, 1).gather(1, y[:, None]).squeeze(1)
    return (-((1 - logp.exp()) ** 2) * logp).mean()


def label_smoothing_sum(out, y):
    return F.cross_entropy(out, y, label_smoothing=0.1, reduction="sum")


def batch_class_weights(out, y):  # weights from the batch's labels: coupled through the targets only
    weights = torch.bincount(y, minlength=C).float().clamp_min(1).reciprocal()
    return F.cross_entropy(out, y, weight=weights)


def contrastive(out, y):  # InfoNCE over the batch: coupled by design
    z = F.normalize(out, dim=1)
    logits = z @ z.T / 0.1 - 1e9 * torch.eye(len(z))
    return F.cross_entropy(logits, torch.arange(len(z)).roll(1))


def whole_batch_only(out, y):  # reads a fixed batch shape: cannot run on the probe's sub-batch
    return F.cross_entropy(out.reshape(N, C), y.reshape(N))


def _coupling_by_jacobian(loss_fn, out, y) -> float:
    """Independent: the largest mixed second derivative d^2 loss / d out_i d out_j (i != j), relative to the
    largest d^2 loss / d out_i^2."""
    hessian = torch.autograd.functional.hessian(lambda o: loss_fn(o, y), out).reshape(len(out), C, len(out), C)
    blocks = hessian.abs().amax(dim=(1, 3))
    own = blocks.diagonal().max()
    return float((blocks - torch.diag(blocks.diagonal())).max() / own)


@pytest.mark.parametrize("loss_fn", [nll_over_batch, softmax_over_batch_mse])
def test_a_loss_over_the_batch_dimension_warns_for_a_declared_classifier(loss_fn):
    model, batch = _setup()
    (finding,) = check_loss_coupling(model, batch, loss_fn, num_classes=C)
    assert finding.id == "loss.batch_coupling" and finding.severity == "warn"
    assert finding.evidence["relative_gradient_change"] > 100 * COUPLING_TOLERANCE
    with torch.no_grad():
        out = model(batch[0][:8])
    assert _coupling_by_jacobian(loss_fn, out, batch[1][:8]) > 1e-3  # independent: the Hessian has cross blocks
    assert "dim=0" in finding.message


def test_the_initial_loss_is_compared_with_ln_classes_and_ln_batch():
    model, batch = _setup()
    (finding,) = check_loss_coupling(model, batch, nll_over_batch, num_classes=C)
    with torch.no_grad():
        expected = float(nll_over_batch(model.eval()(batch[0]), batch[1]))
    assert finding.evidence["initial_loss"] == pytest.approx(expected, rel=1e-6)
    assert finding.evidence["ln_batch"] == pytest.approx(torch.log(torch.tensor(float(N))).item())


def test_without_num_classes_a_coupled_loss_is_only_info():
    model, batch = _setup()
    for loss_fn in (nll_over_batch, contrastive):
        (finding,) = check_loss_coupling(model, batch, loss_fn)
        assert finding.severity == "info"


@pytest.mark.parametrize(
    "loss_fn", [nll_over_classes, focal, label_smoothing_sum, batch_class_weights, whole_batch_only, nn.MSELoss()]
)
def test_per_sample_losses_and_unprobeable_ones_are_quiet(loss_fn):
    model, batch = _setup()
    target = batch if not isinstance(loss_fn, nn.MSELoss) else (batch[0], torch.randn(N, C))
    assert check_loss_coupling(model, target, loss_fn, num_classes=C) == []
    if loss_fn in (nll_over_classes, focal, label_smoothing_sum, batch_class_weights):
        with torch.no_grad():
            out = model(batch[0][:8])
        assert _coupling_by_jacobian(loss_fn, out, batch[1][:8]) < 1e-6  # independent: block-diagonal Hessian


def test_preflight_reports_it_and_leaves_the_model_alone():
    model, batch = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    report = nbdiag.preflight(model, batch, nll_over_batch, num_classes=C, checks=("loss_coupling",), progress=False)
    assert report.ids("warn") == {"loss.batch_coupling"}
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)) and model.training
