"""The bug zoo: small training setups, each with one planted bug and the finding ids that should report it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tests.bugzoo import models
from tests.bugzoo.datasets import RepeatingLoader, digits, loader, regression

DETECTORS = ("preflight", "live", "both")


@dataclass
class Setup:
    """Everything a training run needs; ``zero_grad=False`` plants the missing ``optimizer.zero_grad()`` bug."""

    model: nn.Module
    data: object
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    num_classes: int | None = None
    val_data: object | None = None
    zero_grad: bool = True
    validate_in_train_mode: bool = False  # plants "evaluating in train mode" (see :func:`validate`)
    zero_grad_before_step: bool = False  # plants optimizer.zero_grad() between backward() and step()


@dataclass(frozen=True)
class Case:
    """One zoo entry.

    Attributes:
        name: a short id.
        bug: what is planted ("" for a clean setup).
        build: makes a fresh :class:`Setup` (seeded, so it is the same every time).
        expected: finding ids that should report the bug at warn or fail (empty for a clean setup, which must
            raise no warn/fail at all).
        detector: 'preflight' (nbdiag.preflight finds it), 'live' (the health rules during training do), or
            'both' (clean setups: neither may raise warn/fail).
    """

    name: str
    bug: str
    build: Callable[[], Setup]
    expected: tuple[str, ...] = ()
    detector: str = "preflight"

    @property
    def clean(self) -> bool:
        """Whether the setup has no planted bug."""
        return not self.expected


def _classifier(
    model: nn.Module | None = None,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    *,
    shuffle: bool = True,
    optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
    loss_fn: Callable | None = None,
    **setup: object,
) -> Setup:
    """A digits classification setup; every argument left out is the clean default."""
    torch.manual_seed(0)
    x_train, y_train, _, _ = digits()
    x = x_train if x is None else x
    y = y_train if y is None else y
    model = models.mlp() if model is None else model
    opt = optimizer(model) if optimizer is not None else torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    return Setup(model, loader(x, y, shuffle=shuffle), loss_fn, opt, **setup)


def _seeded(factory: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return factory()


# --- clean setups ---------------------------------------------------------------------------------------------


def clean_mlp() -> Setup:
    _, _, x_val, y_val = digits()
    return _classifier(_seeded(models.mlp), num_classes=10, val_data=(x_val, y_val))


def clean_cnn() -> Setup:
    return _classifier(_seeded(models.cnn), num_classes=10, val_data=_validation())


def clean_regression() -> Setup:
    torch.manual_seed(0)
    x, y = regression(samples=1024)
    model = models.mlp(outputs=1, features=x.shape[1])
    setup = Setup(model, loader(x[:768], y[:768]), nn.MSELoss(), torch.optim.Adam(model.parameters(), lr=1e-3))
    setup.val_data = (x[768:], y[768:])
    return setup


def _validation() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x_val, y_val = digits()
    return x_val, y_val


def clean_finetune() -> Setup:
    """A backbone trained on digits, then frozen (requires_grad=False); a fresh head is fine-tuned on top."""
    torch.manual_seed(0)
    x, y, _, _ = digits()
    backbone = nn.Sequential(nn.Linear(models.FEATURES, models.HIDDEN), nn.ReLU())
    pretrain = nn.Sequential(backbone, nn.Linear(models.HIDDEN, models.CLASSES))
    opt = torch.optim.Adam(pretrain.parameters(), lr=3e-3)
    for _ in range(3):
        for xb, yb in loader(x, y):
            nn.functional.cross_entropy(pretrain(xb), yb).backward()
            opt.step()
            opt.zero_grad()
    backbone.requires_grad_(False)
    model = nn.Sequential(backbone, nn.Linear(models.HIDDEN, models.CLASSES))
    head = model[1]
    return _classifier(
        model, optimizer=lambda m: torch.optim.Adam(head.parameters(), lr=1e-3), num_classes=10, val_data=_validation()
    )


def clean_lstm() -> Setup:
    return _classifier(
        _seeded(models.DigitsLSTM),
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=3e-3),
        num_classes=10,
        val_data=_validation(),
    )


# --- data bugs ------------------------------------------------------------------------------------------------


def shuffled_labels() -> Setup:
    _, y, _, _ = digits()
    return _classifier(y=y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))])


def raw_pixels() -> Setup:
    x, _, _, _ = digits(standardize=False)
    return _classifier(x=x * (255 / 16))  # 8-bit pixel values, never scaled


def constant_inputs() -> Setup:
    x, _, _, _ = digits()
    return _classifier(x=torch.zeros_like(x))


def nan_inputs() -> Setup:
    x, _, _, _ = digits()
    x = x.clone()
    x[::50, 3] = float("nan")
    return _classifier(x=x)


def sorted_unshuffled() -> Setup:
    x, y, _, _ = digits()
    order = torch.argsort(y, stable=True)
    return _classifier(x=x[order], y=y[order], shuffle=False)


def repeated_batch() -> Setup:
    setup = _classifier()
    x, y, _, _ = digits()
    setup.data = RepeatingLoader(x, y)
    return setup


def labels_one_based() -> Setup:
    _, y, _, _ = digits()
    return _classifier(y=y + 1)


def float_targets() -> Setup:
    _, y, _, _ = digits()
    return _classifier(y=y.float())


def class_imbalance() -> Setup:
    x, y, _, _ = digits()
    keep = (y == 0) | (torch.arange(len(y)) % 20 == 0)  # all of class 0, 5% of the others
    return _classifier(x=x[keep], y=y[keep])


def duplicated_samples() -> Setup:
    x, y, _, _ = digits()
    return _classifier(x=x[:500].repeat(3, 1), y=y[:500].repeat(3))


def train_val_overlap() -> Setup:
    x, y, _, _ = digits()
    return _classifier(val_data=(x[:300], y[:300]))  # validation drawn from the training set


def regression_target_shape() -> Setup:
    setup = clean_regression()
    x, y = regression()
    setup.data = loader(x, y[:, 0])  # (N,) targets against (N, 1) outputs: MSELoss broadcasts to (N, N)
    return setup


def regression_target_offset() -> Setup:
    setup = clean_regression()
    x, y = regression()
    setup.data = loader(x, y + 50.0)  # targets around 50, final bias left at ~0
    return setup


# --- issue 19: found by the cause, with the advice of the cause; each with a clean twin ------------------------


def clean_inputs_unit_range() -> Setup:
    """Twin of ``inputs_divided_twice``: pixels divided by their maximum once, in [0, 1] (RMS ~0.5)."""
    x, _, _, _ = digits(standardize=False)
    return _classifier(x=x / 16.0, num_classes=10)


def inputs_divided_twice() -> Setup:
    """Class 5: 8-bit pixels divided by 255 twice (RMS 0.0019): above the fixed 1e-3 floor, squashed all the same."""
    x, _, _, _ = digits(standardize=False)
    return _classifier(x=x * (255 / 16) / 255 / 255, num_classes=10)


def _parity() -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = digits()
    return x, (y % 2).float().unsqueeze(1)  # (N, 1) float 0/1: odd digits


def clean_binary_single_logit() -> Setup:
    """Twin of ``ce_single_output``: one logit with BCEWithLogitsLoss."""
    x, y = _parity()
    return _classifier(_seeded(lambda: models.mlp(outputs=1)), x, y, loss_fn=nn.BCEWithLogitsLoss())


def ce_single_output() -> Setup:
    """Class 6: CrossEntropyLoss over a single output unit (soft (N, 1) targets): the loss is identically 0."""
    x, y = _parity()
    return _classifier(_seeded(lambda: models.mlp(outputs=1)), x, y, loss_fn=nn.CrossEntropyLoss())


def _nll_over(dim: int) -> Callable:
    """A custom classification loss: log-softmax over ``dim`` (1, the classes, is right), then NLL."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(F.log_softmax(output, dim=dim), target)

    loss.__name__ = f"nll_of_log_softmax_dim{dim}"
    return loss


def clean_custom_loss() -> Setup:
    """Twin of ``loss_over_batch``: the same custom loss over the classes (dim=1)."""
    return _classifier(_seeded(models.mlp), loss_fn=_nll_over(1), num_classes=10)


def loss_over_batch() -> Setup:
    """Class 3: a custom loss's log_softmax over dim=0, the batch: each sample's gradient reads the others'."""
    return _classifier(_seeded(models.mlp), loss_fn=_nll_over(0), num_classes=10)


def _mlp_with(*extra: Callable[[], nn.Module], hidden: int = 64) -> nn.Sequential:
    """Two hidden ReLU layers, each followed by ``extra`` modules (dropout, batch norm)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for features in (models.FEATURES, hidden):
        layers += [nn.Linear(features, hidden), *(make() for make in extra), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, 10))


def clean_dropout_batchnorm() -> Setup:
    """Twin of ``dropout_keep_probability`` and ``batchnorm_two_samples``: p=0.2, batch norm over 64 samples."""
    return _classifier(_mlp_with(lambda: nn.BatchNorm1d(64), lambda: nn.Dropout(0.2)), num_classes=10)


def dropout_keep_probability() -> Setup:
    """Class 4: dropout p=0.9 on every hidden layer (a keep probability of 0.9 carried over as p)."""
    return _classifier(_mlp_with(lambda: nn.Dropout(0.9)), num_classes=10)


def batchnorm_two_samples() -> Setup:
    """Class 4: BatchNorm1d trained at batch size 2 (each channel normalised over 2 samples)."""
    x, y, _, _ = digits()
    model = _mlp_with(lambda: nn.BatchNorm1d(64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return Setup(model, loader(x, y, batch_size=2), nn.CrossEntropyLoss(), opt, num_classes=10)


def raw_regression_targets() -> Setup:
    """Class 6: regression targets left at ~1e4 (std 1e4) against outputs of ~0.3."""
    setup = clean_regression()
    x, y = regression(samples=1024)
    setup.data, setup.val_data = loader(x[:768], 1e4 * y[:768]), (x[768:], 1e4 * y[768:])
    return setup


# --- loss and model bugs --------------------------------------------------------------------------------------


def softmax_before_ce() -> Setup:
    return _classifier(_seeded(lambda: nn.Sequential(models.mlp(), nn.Softmax(dim=1))))


def logits_to_nll() -> Setup:
    return _classifier(loss_fn=nn.NLLLoss())


def oversized_final_layer() -> Setup:
    return _classifier(_seeded(lambda: models.mlp(outputs=1000)), num_classes=10)


def frozen_layer() -> Setup:
    model = _seeded(models.mlp)
    model[0].requires_grad_(False)  # the first layer was meant to train: it is still handed to the optimizer
    return _classifier(model)


def detached_hidden() -> Setup:
    return _classifier(_seeded(models.DetachedMLP))


def missing_from_optimizer() -> Setup:
    return _classifier(_seeded(models.mlp), optimizer=lambda m: torch.optim.Adam(m[2].parameters(), lr=1e-3))


def batch_mixing() -> Setup:
    return _classifier(_seeded(models.BatchMixingMLP))


def eval_mode_dropout() -> Setup:
    return _classifier(_seeded(models.mlp_with_dropout).eval())


# --- bugs that live monitoring detects -----------------------------------------------------------------------


def lr_too_high() -> Setup:
    return _classifier(_seeded(models.mlp), optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=50.0))


def lr_too_low() -> Setup:
    return _classifier(_seeded(models.mlp), optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=1e-7))


def dead_relu_bias() -> Setup:
    model = _seeded(models.mlp)
    nn.init.constant_(model[0].bias, -10.0)  # every hidden ReLU starts (and stays) off
    return _classifier(model)


def tanh_saturated() -> Setup:
    return _classifier(_seeded(lambda: models.deep_mlp(depth=6, std=1.0)))


def deep_tanh_collapse() -> Setup:
    return _classifier(_seeded(lambda: models.deep_mlp(depth=10, std=0.01)))


def relu_large_init() -> Setup:
    model = _seeded(lambda: models.deep_mlp(depth=8, std=1.0, activation=nn.ReLU))  # He: 0.25
    return _classifier(model, optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-4))


def deep_sigmoid() -> Setup:
    return _classifier(_seeded(lambda: models.deep_mlp(depth=8, std=None, activation=nn.Sigmoid)))


def missing_zero_grad() -> Setup:
    return _classifier(zero_grad=False)


def missing_zero_grad_sgd() -> Setup:
    """Issue 19, class 2: plain SGD, no zero_grad() at all (the hidden zoo's 60-step case)."""
    return _classifier(optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=1e-2), zero_grad=False)


def zero_grad_before_step() -> Setup:
    """Issue 19, class 2: zero_grad() between backward() and step(): every update is exactly zero."""
    return _classifier(zero_grad_before_step=True)


# --- the rest of the recipe: generalization, too good to be true, diagnosis gaps -----------------------------


def overfitting() -> Setup:
    x, y, _, _ = digits()
    model = _seeded(lambda: models.mlp(hidden=256))
    return _classifier(
        model,
        x[:100],
        y[:100],
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
        num_classes=10,
        val_data=_validation(),
    )


def overfitting_slow_climb() -> Setup:
    """Issue 19, class 1: 40 training digits, a 256-wide MLP, Adam 1e-3: the validation loss bottoms early and climbs
    slowly (no point-by-point 10% jump)."""
    x, y, _, _ = digits()
    model = _seeded(lambda: models.mlp(hidden=256))
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=3e-3)  # noqa: E731 - the climb within the zoo's 200 steps
    return _classifier(model, x[:40], y[:40], optimizer=adam, num_classes=10, val_data=_validation())


def over_regularized() -> Setup:
    optimizer = lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=30.0)  # noqa: E731
    return _classifier(_seeded(models.mlp), optimizer=optimizer, num_classes=10, val_data=_validation())


def _label_in_pixel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, 0] = (y.float() - 4.5) / 2.9  # pixel 0 (always blank in digits) now encodes the label
    return x


def label_leak() -> Setup:
    x, y, x_val, y_val = digits()
    return _classifier(x=_label_in_pixel(x, y), num_classes=10, val_data=(_label_in_pixel(x_val, y_val), y_val))


def frozen_random_layer() -> Setup:
    model = _seeded(models.mlp)
    model[0].requires_grad_(False)  # frozen at its random init: looks like a fine-tune, but nothing was trained
    return _classifier(model, optimizer=lambda m: torch.optim.Adam(m[2].parameters(), lr=1e-3))


def relu_before_ce() -> Setup:
    return _classifier(_seeded(lambda: models.ClippedHead(nn.ReLU())))


def sigmoid_before_ce() -> Setup:
    return _classifier(_seeded(lambda: models.ClippedHead(nn.Sigmoid())))


def eval_mode_live() -> Setup:
    setup = _classifier(_seeded(models.cnn), num_classes=10)
    setup.model.eval()  # trains with batch norm on running statistics and dropout off
    return setup


def validate_in_train_mode() -> Setup:
    setup = _classifier(_seeded(models.cnn), num_classes=10, val_data=_validation())
    setup.validate_in_train_mode = True
    return setup


def constant_conv_init() -> Setup:
    model = _seeded(models.cnn)
    nn.init.constant_(model[1].weight, 0.1)  # every filter the same: symmetric, so they stay the same
    nn.init.zeros_(model[1].bias)
    return _classifier(model, num_classes=10)


def conv_not_in_optimizer() -> Setup:
    model = _seeded(models.cnn)
    trained = [p for name, p in model.named_parameters() if not name.startswith("1.")]  # the conv is left out
    return _classifier(model, optimizer=lambda m: torch.optim.Adam(trained, lr=1e-3), num_classes=10)


CASES: tuple[Case, ...] = (
    Case("clean_mlp", "", clean_mlp, detector="both"),
    Case("clean_cnn_bn_dropout", "", clean_cnn, detector="both"),
    Case("clean_regression", "", clean_regression, detector="both"),
    Case("clean_finetune_frozen_backbone", "", clean_finetune, detector="both"),
    Case("clean_lstm", "", clean_lstm, detector="both"),
    Case("clean_inputs_unit_range", "", clean_inputs_unit_range, detector="both"),
    Case("clean_binary_single_logit", "", clean_binary_single_logit, detector="both"),
    Case("inputs_divided_twice", "pixels / 255 twice (RMS 0.0019)", inputs_divided_twice, ("data.unnormalized",)),
    Case("ce_single_output", "CrossEntropyLoss over 1 output unit", ce_single_output, ("loss.constant",)),
    Case("clean_custom_loss", "", clean_custom_loss, detector="both"),
    Case("loss_over_batch", "custom loss: log_softmax(dim=0)", loss_over_batch, ("loss.batch_coupling",)),
    Case("clean_dropout_batchnorm", "", clean_dropout_batchnorm, detector="both"),
    Case(
        "dropout_keep_probability",
        "dropout p=0.9 on every hidden layer",
        dropout_keep_probability,
        ("model.over_regularized",),
    ),
    Case("batchnorm_two_samples", "BatchNorm1d at batch size 2", batchnorm_two_samples, ("model.over_regularized",)),
    Case("raw_regression_targets", "regression targets ~1e4", raw_regression_targets, ("data.target_scale",)),
    Case("shuffled_labels", "labels permuted apart from inputs", shuffled_labels, ("data.no_signal",)),
    Case("raw_pixels", "0-255 pixel values, not normalized", raw_pixels, ("data.unnormalized",)),
    Case("constant_inputs", "inputs all zero", constant_inputs, ("data.constant_input",)),
    Case("nan_inputs", "NaN in some inputs", nan_inputs, ("data.nonfinite",)),
    Case("sorted_unshuffled", "data sorted by label, shuffle=False", sorted_unshuffled, ("data.single_class_batches",)),
    Case("repeated_batch", "loader yields the same batch", repeated_batch, ("data.repeated_batch",)),
    Case("labels_one_based", "labels 1..C for C outputs", labels_one_based, ("data.label_range",)),
    Case("float_targets", "float class targets for CrossEntropyLoss", float_targets, ("data.label_range",)),
    Case("class_imbalance", "class 0 is 20x the others", class_imbalance, ("data.class_imbalance",)),
    Case("duplicated_samples", "each sample three times", duplicated_samples, ("data.duplicates",)),
    Case("train_val_overlap", "validation drawn from training", train_val_overlap, ("data.duplicates",)),
    Case("regression_target_shape", "(N,) targets for (N, 1) outputs", regression_target_shape, ("data.label_range",)),
    Case("regression_target_offset", "targets around 50", regression_target_offset, ("loss.initial_mismatch",)),
    Case("softmax_before_ce", "softmax output into CrossEntropyLoss", softmax_before_ce, ("loss.probabilities_to_ce",)),
    Case("logits_to_nll", "raw logits into NLLLoss", logits_to_nll, ("loss.probabilities_to_ce",)),
    Case("oversized_final_layer", "1000 outputs for 10 classes", oversized_final_layer, ("loss.initial_mismatch",)),
    Case("frozen_layer", "first layer requires_grad=False", frozen_layer, ("model.frozen",)),
    Case("detached_hidden", "hidden layer .detach()ed", detached_hidden, ("model.frozen",)),
    Case("missing_from_optimizer", "optimizer holds the last layer only", missing_from_optimizer, ("model.frozen",)),
    Case("batch_mixing", "reshape mixes the batch dimension", batch_mixing, ("model.batch_mixing",)),
    Case("eval_mode_dropout", "training in eval mode with dropout", eval_mode_dropout, ("model.train_eval_mode",)),
    Case("lr_too_high", "SGD lr=50", lr_too_high, ("train.diverging",), "live"),
    Case("lr_too_low", "SGD lr=1e-7", lr_too_low, ("train.stalled",), "live"),
    Case("dead_relu_bias", "hidden bias -10 kills every ReLU", dead_relu_bias, ("act.dead_units",), "live"),
    Case("tanh_saturated", "6 tanh layers, weight std 1", tanh_saturated, ("act.saturation",), "live"),
    Case("deep_tanh_collapse", "10 tanh layers, weight std 0.01", deep_tanh_collapse, ("act.collapse",), "live"),
    Case(
        "relu_large_init",
        "8 ReLU layers, weight std 4x He, no normalization",
        relu_large_init,
        ("train.exploding_gradients", "act.explode"),
        "live",
    ),
    Case("deep_sigmoid", "8 sigmoid layers, no normalization", deep_sigmoid, ("train.vanishing_gradients",), "live"),
    Case(
        "missing_zero_grad",
        "optimizer.zero_grad() never called",
        missing_zero_grad,
        ("train.grad_accumulation",),
        "live",
    ),
    Case(
        "missing_zero_grad_sgd",
        "SGD, optimizer.zero_grad() never called",
        missing_zero_grad_sgd,
        ("train.grad_accumulation",),
        "live",
    ),
    Case(
        "zero_grad_before_step",
        "zero_grad() between backward() and step()",
        zero_grad_before_step,
        ("train.grad_cleared_before_step",),
        "live",
    ),
    Case("overfitting", "100 training samples, 256 hidden units", overfitting, ("train.overfitting",), "live"),
    Case(
        "overfitting_slow_climb",
        "40 training samples, validation climbs slowly",
        overfitting_slow_climb,
        ("train.overfitting",),
        "live",
    ),
    Case("over_regularized", "AdamW weight_decay=30", over_regularized, ("train.underfitting",), "live"),
    Case("label_leak", "pixel 0 encodes the label", label_leak, ("data.target_leak",)),
    Case("frozen_random_layer", "first layer frozen at its random init", frozen_random_layer, ("model.frozen",)),
    Case("relu_before_ce", "head.act = ReLU before CrossEntropyLoss", relu_before_ce, ("loss.output_activation",)),
    Case(
        "sigmoid_before_ce",
        "head.act = Sigmoid before CrossEntropyLoss",
        sigmoid_before_ce,
        ("loss.output_activation",),
    ),
    Case(
        "eval_mode_live", "CNN with BN/dropout trained in eval mode", eval_mode_live, ("model.train_eval_mode",), "live"
    ),
    Case(
        "validate_in_train_mode",
        "validation with dropout/BN in train mode",
        validate_in_train_mode,
        ("model.train_eval_mode",),
        "live",
    ),
    Case(
        "constant_conv_init",
        "first conv's filters all initialized to 0.1",
        constant_conv_init,
        ("model.first_layer_filters",),
        "live",
    ),
    Case(
        "conv_not_in_optimizer",
        "the first conv is left out of the optimizer",
        conv_not_in_optimizer,
        ("model.first_layer_filters",),
        "live",
    ),
)


def cases(detector: str) -> list[Case]:
    """The cases with a planted bug for ``detector`` ('preflight' or 'live'), or the clean ones ('both')."""
    if detector not in DETECTORS:
        raise ValueError(f"got detector={detector!r}, expected one of {DETECTORS}")
    return [case for case in CASES if case.detector == detector]


def run_training(setup: Setup, steps: int, on_step: Callable[..., None] | None = None) -> list[float]:
    """Train ``setup`` for ``steps`` steps the usual way (zero_grad per step unless the bug is planted).

    ``on_step(step, loss, output, target)`` is called after each optimizer step.

    Returns:
        The loss of each step.
    """
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in setup.data:
            output = setup.model(x)
            loss = setup.loss_fn(output, y)
            loss.backward()
            if setup.zero_grad_before_step:
                setup.optimizer.zero_grad()
            setup.optimizer.step()
            if setup.zero_grad:
                setup.optimizer.zero_grad()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses) - 1, loss, output.detach(), y)
            if len(losses) == steps:
                break
    return losses


def accuracy(output: torch.Tensor, target: torch.Tensor) -> float | None:
    """Top-1 accuracy of class logits (N, C) against class indices (N,); None for anything else."""
    if output.ndim != 2 or output.shape[1] < 2 or target.dtype != torch.int64 or target.ndim != 1:
        return None
    return float((output.argmax(1) == target).float().mean())


def validate(setup: Setup, log: Callable[..., None]) -> None:
    """Evaluate on ``setup.val_data`` (eval mode, no grad) and ``log(val_loss=..., val_acc=...)`` before the model's
    modes are restored; with ``validate_in_train_mode`` the planted bug skips ``model.eval()``."""
    x, y = setup.val_data
    modes = [(module, module.training) for module in setup.model.modules()]
    if not setup.validate_in_train_mode:
        setup.model.eval()
    with torch.no_grad():
        output = setup.model(x)
        values = {"val_loss": float(setup.loss_fn(output, y)), "val_acc": accuracy(output, y)}
    log(**{name: value for name, value in values.items() if value is not None})
    for module, training in modes:
        module.training = training
