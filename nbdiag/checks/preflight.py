"""``nbdiag.preflight``: run the recipe checks on copies within a time budget and collect their findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from nbdiag.checks import budget
from nbdiag.checks.backprop import check_batch_mixing
from nbdiag.checks.baseline import BASELINE_STEPS, check_baseline
from nbdiag.checks.batches import Batch, collect_batches, to_device
from nbdiag.checks.calls import Calls, loss_of, prediction, run_model, using
from nbdiag.checks.coupling import check_loss_coupling
from nbdiag.checks.data import check_constant_inputs, check_input_scale, check_nonfinite
from nbdiag.checks.duplicates import check_duplicates, check_repeated_batches
from nbdiag.checks.frozen import check_frozen_init
from nbdiag.checks.gradflow import check_gradient_flow
from nbdiag.checks.leak import check_target_leak
from nbdiag.checks.loss import check_initial_loss, check_loss_input
from nbdiag.checks.lr_range import RANGE_STEPS, LRRangeResult, check_learning_rate
from nbdiag.checks.mode import check_train_mode
from nbdiag.checks.outputact import check_output_activation
from nbdiag.checks.overfit import check_overfit
from nbdiag.checks.regularization import check_regularization
from nbdiag.checks.report import CheckTiming, Report
from nbdiag.checks.sandbox import CHECK_SEED, model_copy
from nbdiag.checks.signal import check_input_signal
from nbdiag.checks.targets import check_batch_labels, check_class_balance, check_targets
from nbdiag.findings import Finding, make_finding
from nbdiag.probe import model_device
from nbdiag.rng import forked_rng

# Data problems after which checks that evaluate the loss cannot say anything (they would crash or give NaN).
BLOCKING_IDS = frozenset({"data.nonfinite", "data.label_range"})
OVERHEAD_S = 0.01  # fixed time estimate per check on top of its steps


@dataclass
class _Context:
    """What the checks of one preflight share."""

    model: nn.Module
    batches: list[Batch]
    loss_fn: Callable
    optimizer: torch.optim.Optimizer | None
    num_classes: int | None
    val_data: object | None
    progress: bool
    deadline: float
    step_s: float = 0.0  # seconds of one forward + backward on the first batch
    model_error: str = ""  # why checks that run the model cannot run ("" when they can)
    data_error: str = ""  # why checks that evaluate the loss cannot run ("" when they can)
    findings: list[Finding] = field(default_factory=list)
    lr_range: LRRangeResult | None = None


@dataclass(frozen=True)
class _Check:
    """A named check: what it runs, how many forward/backward steps it costs, what it needs."""

    name: str
    run: Callable[[_Context], list[Finding]]
    steps: int = 0
    runs_model: bool = False
    needs_loss: bool = False


def _lr_range(ctx: _Context) -> list[Finding]:
    if ctx.optimizer is None:
        return [make_finding("check.skipped", "info", "lr_range not run: it needs the optimizer (optimizer=...)")]
    findings, ctx.lr_range = check_learning_rate(
        ctx.model, ctx.batches, ctx.loss_fn, ctx.optimizer, deadline=ctx.deadline, progress=ctx.progress
    )
    return findings


CHECKS: tuple[_Check, ...] = (
    _Check("train_mode", lambda c: check_train_mode(c.model)),
    _Check("nonfinite", lambda c: check_nonfinite(c.batches)),
    _Check("constant_inputs", lambda c: check_constant_inputs(c.batches)),
    _Check("input_scale", lambda c: check_input_scale(c.batches) or check_input_signal(c.model, c.batches), 1, True),
    _Check("targets", lambda c: check_targets(c.model, c.batches, c.loss_fn, c.num_classes), 1, True),
    _Check("class_balance", lambda c: check_class_balance(c.batches, c.loss_fn)),
    _Check("batch_labels", lambda c: check_batch_labels(c.batches, c.loss_fn)),
    _Check("repeated_batches", lambda c: check_repeated_batches(c.batches)),
    _Check("duplicates", lambda c: check_duplicates(c.batches, c.val_data)),
    _Check("target_leak", lambda c: check_target_leak(c.batches, c.loss_fn, c.val_data)),
    _Check("frozen_init", lambda c: check_frozen_init(c.model)),
    _Check("loss_input", lambda c: check_loss_input(c.model, c.batches, c.loss_fn), 1, True),
    _Check("output_activation", lambda c: check_output_activation(c.model, c.batches, c.loss_fn), 1, True),
    _Check("initial_loss", lambda c: check_initial_loss(c.model, c.batches, c.loss_fn, c.num_classes), 4, True, True),
    _Check("gradient_flow", lambda c: check_gradient_flow(c.model, c.batches, c.loss_fn, c.optimizer), 4, True, True),
    _Check("batch_mixing", lambda c: check_batch_mixing(c.model, c.batches), 2, True),
    _Check("regularization", lambda c: check_regularization(c.model, c.batches), 2, True),
    _Check("loss_coupling", lambda c: check_loss_coupling(c.model, c.batches, c.loss_fn, c.num_classes), 1, True, True),
    _Check(
        "overfit",
        lambda c: check_overfit(c.model, c.batches, c.loss_fn, deadline=c.deadline, progress=c.progress),
        20,
        True,
        True,
    ),
    _Check(
        "baseline",
        lambda c: check_baseline(
            c.model, c.batches, c.loss_fn, val_data=c.val_data, deadline=c.deadline, progress=c.progress
        ),
        2 * BASELINE_STEPS,
        True,
        True,
    ),
    _Check("lr_range", _lr_range, RANGE_STEPS // 4, True, True),
)
CHECK_NAMES = tuple(check.name for check in CHECKS)
DEFAULT_CHECKS = tuple(name for name in CHECK_NAMES if name != "lr_range")  # lr_range costs most: opt in


def preflight(
    model: nn.Module,
    data: object,
    loss_fn: Callable,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    num_classes: int | None = None,
    checks: str | Iterable[str] = "all",
    budget_s: float = 60,
    val_data: object | None = None,
    progress: bool = True,
    forward_fn: Callable[[nn.Module, object], object] | None = None,
    output_fn: Callable[[object], torch.Tensor] | None = None,
) -> Report:
    """Run the recipe checks before training: data, targets, initial loss, gradient flow, overfit one batch, ...

    Every check works on deep copies of ``model`` (and of ``optimizer``) under a forked, seeded RNG, so the
    caller's model, optimizer, torch/numpy/python RNG states are unchanged afterwards. A check that would not fit
    in what is left of ``budget_s`` is skipped with an 'info' finding (``check.skipped``); a check that raises is
    reported as a 'warn' finding (``check.error``) and the others still run. Checks that evaluate the loss are
    skipped when the data cannot give a finite loss (``data.nonfinite``, ``data.label_range`` at 'fail').
    Thresholds and their sources are in each check's docstring (``nbdiag.checks``).

    Args:
        model: the model about to train.
        data: a DataLoader, an ``(x, y)`` batch, or any iterable of ``(x, y)`` batches; up to 8 batches are read.
            ``x`` may be a tuple of tensors (a two-input model: ``model(*x)``) or a dict (``model(**x)``); dict
            batches as Hugging Face datasets give them (``{"input_ids", "attention_mask", "labels"}``) are split
            into the inputs and ``labels``.
        loss_fn: the loss, called as ``loss_fn(output, y)``. A torch loss gets the model's prediction: the output
            itself, its ``.logits`` (``ModelOutput``), or its first tensor; any other callable gets the output as
            the model returns it (a VAE's ``(recon, mu, logvar)``).
        optimizer: the optimizer that will train ``model``, or None (the LR range test and the
            "not in the optimizer" part of the gradient-flow check need it).
        num_classes: the number of classes of a classifier; inferred from the output width when None.
        checks: "all" (every check in ``DEFAULT_CHECKS``), or names from ``CHECK_NAMES``; "lr_range" runs only
            when named, e.g. ``checks=(*nbdiag.checks.DEFAULT_CHECKS, "lr_range")``.
        budget_s: the time budget in seconds.
        val_data: validation data in the same forms, for the train/validation overlap check and as the held-out
            set of the input-independent baseline.
        forward_fn: ``forward_fn(model, x) -> output``, how to call the model when ``model(x)`` /
            ``model(*x)`` / ``model(**x)`` is not it.
        output_fn: ``output_fn(output) -> tensor``, the prediction the loss and the checks judge (then every
            loss receives it), e.g. ``lambda out: out["scores"]``.
        progress: show progress bars (tqdm) for the multi-step checks.

    Returns:
        A :class:`Report`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``loss_fn`` is not callable, or ``data`` is not a batch,
            loader or iterable of ``(x, y)`` batches.
        ValueError: unknown check names, ``budget_s`` <= 0, or ``data`` yields no batch.
    """
    start = budget.now()
    selected = _select(checks)
    _validate(model, loss_fn, budget_s)
    with forked_rng(seed=CHECK_SEED):
        batches = collect_batches(data)
    ctx = _Context(model, batches, loss_fn, optimizer, num_classes, val_data, progress, start + budget_s)
    with using(Calls(forward_fn, output_fn)):
        _calibrate(ctx, uses_model=any(check.runs_model for check in selected))
        timings = [_run_check(check, ctx) for check in selected]
    return Report(defer_to_causes(ctx.findings), timings, budget.now() - start, ctx.lr_range)


# finding id -> the findings it explains: their advice would send the user after the wrong cause (issue 19, class 6)
EXPLAINS = {
    "loss.constant": ("data.no_signal", "train.cannot_overfit", "model.frozen"),
    "data.target_scale": ("data.no_signal", "train.cannot_overfit"),
    "data.unnormalized": ("data.no_signal", "train.cannot_overfit"),
}


def defer_to_causes(findings: list[Finding]) -> list[Finding]:
    """``findings`` with each consequence of a reported cause turned into an 'info' note naming it: a constant loss,
    targets that dwarf the outputs or squashed inputs leave the input-independent baseline no better than the real
    inputs and keep the overfit check from reaching the floor; "the inputs carry no signal" or "the model cannot
    overfit" would be the wrong advice."""
    causes = {f.id: f for f in findings if f.id in EXPLAINS and f.severity in ("warn", "fail")}
    out = []
    for finding in findings:
        cause = next((c for c in causes.values() if finding.id in EXPLAINS[c.id]), None)
        if cause is not None and finding.severity != "info":
            note = f"; most likely a consequence of {cause.id} (fix that first: {cause.advice})"
            evidence = {**finding.evidence, "cause": cause.id}
            finding = dataclasses.replace(finding, severity="info", message=finding.message + note, evidence=evidence)
        out.append(finding)
    return out


def _select(checks: str | Iterable[str]) -> list[_Check]:
    if checks == "all":
        names = DEFAULT_CHECKS
    elif isinstance(checks, str):
        names = (checks,)
    else:
        names = tuple(checks)
    unknown = [name for name in names if name not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"got unknown check name(s) {unknown}, expected 'all' or names from {CHECK_NAMES}")
    return [check for check in CHECKS if check.name in names]


def _validate(model: object, loss_fn: object, budget_s: float) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"got model of type {type(model).__name__}, expected a torch.nn.Module")
    if not callable(loss_fn):
        kind = type(loss_fn).__name__
        raise TypeError(f"got loss_fn of type {kind}, expected a callable such as nn.CrossEntropyLoss()")
    if not budget_s > 0:
        raise ValueError(f"got budget_s={budget_s}, expected a positive number of seconds")


def _calibrate(ctx: _Context, uses_model: bool) -> None:
    """Time one forward + backward of a copy on the first batch. A model that cannot run (or whose output has no
    tensor to judge) blocks the checks that run it, a loss that cannot take the output blocks those that need the
    loss: one finding says what is needed, instead of one error per check."""
    if not uses_model:
        return
    with forked_rng(seed=CHECK_SEED):
        clone = model_copy(ctx.model)
        x, y = to_device(ctx.batches[0], model_device(clone))
        try:
            begin = budget.now()
            output = run_model(clone, x)
            predicted = prediction(output)
            if predicted.requires_grad:
                predicted.float().sum().backward()
            ctx.step_s = budget.now() - begin
        except Exception as error:  # noqa: BLE001 - the user's model raised; report it, never crash
            message = (
                f"the model's forward/backward on the first batch raised {type(error).__name__}: {error}. "
                "Preflight calls model(x), model(*x) for a tuple x, model(**x) for a dict x; pass "
                "forward_fn=lambda model, x: ... (and output_fn=lambda output: prediction) when that is not it"
            )
            ctx.findings.append(make_finding("check.error", "warn", message, evidence={"check": "setup"}))
            ctx.model_error = "the model could not run on the first batch (see check.error)"
            return
        try:
            with torch.no_grad():
                loss_of(ctx.loss_fn, run_model(clone, x), y)
        except Exception as error:  # noqa: BLE001 - the user's loss raised
            message = (
                f"the loss on the model's output for the first batch raised {type(error).__name__}: {error}. A torch "
                f"loss gets the prediction ({type(predicted).__name__} {tuple(predicted.shape)} here), any other "
                "callable the raw output; pass output_fn=lambda output: ... to choose what the loss receives"
            )
            ctx.findings.append(make_finding("check.error", "warn", message, evidence={"check": "setup"}))
            ctx.data_error = "the loss could not be computed on the first batch (see check.error)"


def _run_check(check: _Check, ctx: _Context) -> CheckTiming:
    begin = budget.now()
    reason = _skip_reason(check, ctx, begin)
    if reason:
        found, status = [make_finding("check.skipped", "info", f"{check.name} not run: {reason}")], "skipped"
    else:
        try:
            found, status = check.run(ctx), "ran"
        except Exception as error:  # noqa: BLE001 - a failing check is a finding, never a crash
            message = f"{check.name} raised {type(error).__name__}: {error}"
            found, status = [make_finding("check.error", "warn", message, evidence={"check": check.name})], "error"
    ctx.findings.extend(found)
    blocking = [f.id for f in found if f.id in BLOCKING_IDS and f.severity == "fail"]
    if blocking and not ctx.data_error:
        ctx.data_error = f"the data cannot give a finite loss (see {blocking[0]})"
    return CheckTiming(check.name, status, budget.now() - begin, len(found))


def _skip_reason(check: _Check, ctx: _Context, now: float) -> str:
    if check.runs_model and ctx.model_error:
        return ctx.model_error
    if check.needs_loss and ctx.data_error:
        return ctx.data_error
    estimate = OVERHEAD_S + check.steps * ctx.step_s
    left = ctx.deadline - now
    if estimate > left:
        return f"it needs about {estimate:.2g}s, {max(left, 0):.2g}s of budget_s are left"
    return ""
