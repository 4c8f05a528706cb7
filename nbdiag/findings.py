"""Findings: what is wrong, where, the numbers, what to do. The catalog holds each id's advice and source once."""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warn", "fail")
SEVERITY_COLOURS = {"fail": "#c62828", "warn": "#ef6c00", "info": "#546e7a"}
SEVERITY_RANK = {"fail": 0, "warn": 1, "info": 2}  # most severe first

# Source texts, cited by title and section (seeds/README.md): "37 Reasons why your Neural Network is not working"
# (numbered as in the Japanese summary, seeds/003; the Korean one is seeds/000), Karpathy's "A Recipe for Training
# Neural Networks" (seeds/001), CS231n training recipes (seeds/002) and CS231n lecture 5 (seeds/004).
_37 = "37 reasons"
_KARPATHY = "Karpathy's recipe"
_CS231N = "CS231n training recipes"
_LECTURE5 = "CS231n lecture 5"
TEXT_WIDTH = 100  # printed findings wrap at word boundaries to this width (a notebook output breaks mid-word)


@dataclass(frozen=True)
class CatalogEntry:
    """What an id means, what to do about it, and where the advice comes from."""

    title: str
    advice: str
    ref: str


CATALOG: dict[str, CatalogEntry] = {
    "data.nonfinite": CatalogEntry(
        "NaN or Inf in the data",
        "Find where the non-finite values enter (loading, division by zero, log of 0) and drop or impute them.",
        f"{_37}, 1.1",
    ),
    "data.constant_input": CatalogEntry(
        "Inputs are constant or all zero",
        "Print a batch as the model receives it: the loader or a transform may zero it. Drop features that never vary.",
        f"{_37}, 1.1-1.3",
    ),
    "data.unnormalized": CatalogEntry(
        "Inputs are far from zero mean and unit variance",
        "Standardize inputs (subtract the training mean, divide by the training std), e.g. raw 0-255 pixels "
        "-> x/255 then normalize.",
        f"{_37}, 2.1; {_CS231N}, data preprocessing",
    ),
    "data.label_range": CatalogEntry(
        "Targets do not fit the loss",
        "Class targets for CrossEntropyLoss must be int64 in [0, C) with shape (N,); regression targets "
        "must match the output shape.",
        f"{_37}, 3.4",
    ),
    "data.class_imbalance": CatalogEntry(
        "Strong class imbalance",
        "Reweight the loss, resample, or report per-class metrics; accuracy alone hides this.",
        f"{_37}, 1.8",
    ),
    "data.single_class_batches": CatalogEntry(
        "Batches hold one or few labels",
        "Shuffle the training data (DataLoader(shuffle=True)); sorted data makes every batch one class.",
        f"{_37}, 1.7, 1.10",
    ),
    "data.repeated_batch": CatalogEntry(
        "The loader yields the same batch again and again",
        "Check the loader's indexing: it returns the same samples every iteration.",
        f"{_37}, 1.3",
    ),
    "data.duplicates": CatalogEntry(
        "Duplicate samples, or train/validation overlap",
        "Deduplicate, and split before any augmentation so no sample sits in both splits.",
        f"{_KARPATHY}, 1",
    ),
    "data.no_signal": CatalogEntry(
        "The model does no better on real inputs than on zeroed inputs",
        "Inputs and labels may be misaligned (labels shuffled apart from inputs), or the inputs never reach the model.",
        f"{_KARPATHY}, 2 (input-independent baseline); {_37}, 1.4-1.5",
    ),
    "loss.initial_mismatch": CatalogEntry(
        "Initial loss is far from its expected value",
        "At init a classifier should give -ln(1/C). Check the final layer's init and bias, the loss "
        "reduction, and that outputs are logits.",
        f"{_KARPATHY}, 2 (verify loss @ init); {_37}, 3.2",
    ),
    "loss.probabilities_to_ce": CatalogEntry(
        "The loss receives probabilities where it expects logits (or the reverse)",
        "CrossEntropyLoss applies log-softmax itself: remove the softmax at the end of the model, or use "
        "NLLLoss on log_softmax outputs.",
        f"{_37}, 3.4",
    ),
    "model.frozen": CatalogEntry(
        "Parameters never receive a gradient",
        "Check requires_grad, .detach() calls and branches the loss never reaches; pass all parameters "
        "to the optimizer.",
        f"{_37}, 3.8",
    ),
    "model.batch_mixing": CatalogEntry(
        "Sample i's loss depends on other samples' inputs",
        "A view/reshape/transpose probably mixes the batch dimension; use permute and keep batch first.",
        f"{_KARPATHY}, 2 (use backprop to chart dependencies)",
    ),
    "model.train_eval_mode": CatalogEntry(
        "Train/eval mode is wrong for the phase",
        "Call model.train() before training and model.eval() before evaluating when dropout or batch norm is present.",
        f"{_37}, 4.6",
    ),
    "train.cannot_overfit": CatalogEntry(
        "The model cannot overfit one small batch",
        "A model that cannot drive the loss to ~0 on a few samples has a bug (loss, labels, frozen layers, "
        "too-low LR) or too little capacity.",
        f"{_KARPATHY}, 2 (overfit one batch); {_37}, 4.1",
    ),
    "train.nonfinite": CatalogEntry(
        "NaN or Inf appeared during training",
        "Lower the learning rate, clip gradients, check divisions/logs/exp in custom layers; the first "
        "layer in forward order is the place to look.",
        f"{_37}, 4.11",
    ),
    "train.diverging": CatalogEntry(
        "The loss is exploding",
        "Lower the learning rate (by 3-10x) or add warmup/gradient clipping.",
        f"{_CS231N}, learning rate; {_LECTURE5}, babysitting",
    ),
    "train.stalled": CatalogEntry(
        "The loss does not move",
        "Raise the learning rate, check that gradients reach the parameters, and check for dead units.",
        f"{_CS231N}, learning rate; {_LECTURE5}, babysitting",
    ),
    "train.gan_discriminator_wins": CatalogEntry(
        "The GAN's discriminator wins: D(x) -> 1, D(G(z)) -> 0",
        "The generator gets no useful gradient. Train G on the non-saturating loss (maximize log D(G(z)): "
        "BCE with real labels for G's step), soften D: one-sided label smoothing (real labels 0.9), noise on D's "
        "inputs, a lower learning rate or fewer updates for D; check that G's step does not use a detached fake.",
        "outside the seed texts (they do not treat GANs): Goodfellow et al., Generative Adversarial Nets (2014) "
        "section 3; Chintala et al., How to Train a GAN? Tips and tricks to make GANs work (ganhacks): "
        "Track failures early, Use Soft and Noisy Labels",
    ),
    "train.exploding_gradients": CatalogEntry(
        "Gradient norms grow by orders of magnitude",
        "Lower the learning rate, clip gradients, use normalization layers or a better init.",
        f"{_37}, 4.9",
    ),
    "train.vanishing_gradients": CatalogEntry(
        "Gradient norms shrink by orders of magnitude across depth",
        "Use ReLU-family activations with He init, batch norm, or residual connections.",
        f"{_37}, 4.2; {_LECTURE5}, weight initialization",
    ),
    "train.update_ratio": CatalogEntry(
        "Update/weight ratio is far from ~1e-3",
        "Around 1e-3 is healthy: much lower means the learning rate is too low, much higher too high.",
        f"{_LECTURE5}, babysitting (update/weight ratio)",
    ),
    "loss.batch_coupling": CatalogEntry(
        "The loss couples the samples of a batch",
        "A per-sample loss reduces over the classes (dim=1), not the batch (dim=0); contrastive losses do couple.",
        f"{_KARPATHY}, 2 (use backprop to chart dependencies)",
    ),
    "model.over_regularized": CatalogEntry(
        "Regularization drowns the training signal",
        "Batch norm needs enough samples per channel (or GroupNorm/LayerNorm); dropout p is the drop probability.",
        f"{_KARPATHY}, 4 (regularize: batch size, dropout); {_37}, 4 (reduce regularization)",
    ),
    "train.grad_accumulation": CatalogEntry(
        "Gradients are not zeroed between steps",
        "Call optimizer.zero_grad() once per step (or on purpose, accumulate and divide the loss).",
        f"{_37}, 3.11 (check custom optimizers)",
    ),
    "act.dead_units": CatalogEntry(
        "ReLU units never fire",
        "Lower the learning rate, check bias init (large negative biases kill units), or use leaky ReLU.",
        f"{_CS231N}, activation functions",
    ),
    "act.saturation": CatalogEntry(
        "tanh/sigmoid outputs are pinned near their limits",
        "Use Xavier init (std = 1/sqrt(fan_in)), normalize inputs, or switch to ReLU.",
        f"{_CS231N}, activation functions; {_LECTURE5}, weight initialization",
    ),
    "act.collapse": CatalogEntry(
        "Activation std shrinks toward zero with depth",
        "Init is too small: use Xavier (tanh) or He (ReLU) init, or batch norm.",
        f"{_LECTURE5}, weight initialization",
    ),
    "act.explode": CatalogEntry(
        "Activation std grows with depth",
        "Init is too large: use Xavier (tanh) or He (ReLU) init, or batch norm.",
        f"{_LECTURE5}, weight initialization; {_37}, 4.2",
    ),
    "train.overfitting": CatalogEntry(
        "Validation loss turns up while training loss falls: the train/validation gap grows",
        "Keep the checkpoint from the best validation step (early stopping), then regularize: more data, data "
        "augmentation, dropout, weight decay, a smaller model.",
        f"{_KARPATHY}, 4 (regularize: more data, augmentation, dropout, weight decay, early stopping); "
        f"{_CS231N}, choosing hyperparameters step 6 (a big train/val gap means overfitting); "
        f"{_LECTURE5}, babysitting (train/val accuracy gap)",
    ),
    "train.underfitting": CatalogEntry(
        "Training and validation loss both plateau high (or show no gap at all)",
        "The model cannot fit the training data: use a bigger model, less regularization (lower weight decay or "
        "dropout), a higher learning rate, or train longer.",
        f"{_KARPATHY}, 3 (overfit: first get a model big enough to drive the training loss down); "
        f"{_CS231N}, choosing hyperparameters step 6 (a too-small train/val gap means underfitting)",
    ),
    "data.target_leak": CatalogEntry(
        "Too good to be true: one input feature alone predicts the label, or validation equals training",
        "Drop the leaking feature (an id, a label copied into the inputs, a watermark pixel) and split before any "
        "preprocessing, so validation never contains training samples.",
        f"{_KARPATHY}, 1 (become one with the data); {_KARPATHY}, 2 (dumb baselines: suspicious results)",
    ),
    "train.too_good": CatalogEntry(
        "Training and validation accuracy near 100% within the first steps",
        "Real tasks are rarely solved in a few steps: look for the label leaking into the inputs, evaluation on "
        "training samples, or an off-by-one in how accuracy is counted; nbdiag.preflight(..., val_data=...) "
        "checks the data for the first two.",
        f"{_KARPATHY}, 1-2 (become one with the data; verify the skeleton before trusting results)",
    ),
    "loss.output_activation": CatalogEntry(
        "An activation clips the model's output before a loss that expects logits",
        "Remove the final ReLU/sigmoid/softmax: CrossEntropyLoss and BCEWithLogitsLoss apply (log-)softmax or "
        "sigmoid themselves, and a ReLU in front of them throws away every negative logit.",
        f"{_37}, 3.4 (check the loss input); {_KARPATHY}, 2 (verify loss @ init)",
    ),
    "model.first_layer_filters": CatalogEntry(
        "The first convolution's filters never change, or are all alike",
        "Filters that stay at their init are not learning (learning rate too low, frozen layer); filters that are "
        "all alike waste capacity (a constant init, a too-high learning rate). Look at them: trained first-layer "
        "filters are smooth edge and colour detectors.",
        f"{_KARPATHY}, 4 (visualize the first layer's weights: noise-like filters are not trained)",
    ),
    "check.error": CatalogEntry(
        "A check could not run",
        "The check itself failed; its message says why. The rest of the report is still valid.",
        "nbdiag",
    ),
    "check.skipped": CatalogEntry(
        "A check was skipped",
        "Its message says why (time budget, a failed prerequisite, an input it cannot judge); raise budget_s or "
        "fix the failing check to run it.",
        "nbdiag",
    ),
    "data.target_scale": CatalogEntry(
        "Regression targets dwarf the model's outputs",
        "Normalize the targets (subtract the mean, divide by the std) and undo it on the predictions; or "
        "initialize the last layer's bias and scale to the targets'.",
        f"{_KARPATHY}, 2 (init well); {_37}, 2.1",
    ),
    "loss.constant": CatalogEntry(
        "The loss is identically constant",
        "The loss cannot train anything: its gradient with respect to the outputs is exactly zero. CrossEntropyLoss "
        "over a single output unit is always 0: give the model C >= 2 outputs, or use BCEWithLogitsLoss for one logit.",
        f"{_37}, 3.4; {_KARPATHY}, 2 (verify loss @ init)",
    ),
    "train.grad_cleared_before_step": CatalogEntry(
        "Gradients are cleared between backward() and step()",
        "Call optimizer.zero_grad() before loss.backward() (or after optimizer.step()), never between backward() "
        "and step(): the optimizer then sees no gradient and no weight moves.",
        f"{_37}, 3.11 (check custom optimizers)",
    ),
    "check.inconclusive": CatalogEntry(
        "A check was cut short by the time budget",
        "No verdict either way: the budget stopped the check before it could decide. Raise budget_s, or run the "
        "check alone with checks=(name,).",
        "nbdiag",
    ),
    "train.lr_range": CatalogEntry(
        "The learning rate is outside the range where the loss falls",
        "Run nbdiag.lr_range_test and start near its suggestion; too high diverges, too low stalls.",
        f"{_CS231N}, learning rate schedules; {_LECTURE5}, babysitting (hyperparameter search)",
    ),
    "monitor.calls_skipped": CatalogEntry(
        "Some forward calls were not recorded, by design",
        "Nothing to fix: calls inside torch.func transforms (vmap, grad, jvp) carry per-sample tensors that the "
        "transform traces, so nbdiag leaves them alone; pass the batch through the model normally (e.g. for the "
        "logged loss) to see its layers.",
        "nbdiag",
    ),
    "monitor.hook_error": CatalogEntry(
        "nbdiag's own monitoring failed",
        "Training was not affected and what was recorded before is valid. Print mon.errors (or run.errors) for the "
        "tracebacks and report them with your torch version and model type.",
        "nbdiag",
    ),
}


@dataclass(frozen=True)
class Finding:
    """One diagnosis: an id from :data:`CATALOG`, where it was seen and the numbers behind it."""

    id: str
    severity: str
    message: str
    layer: str | None = None
    step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""
    ref: str = ""

    def __post_init__(self) -> None:
        if self.id not in CATALOG:
            raise ValueError(f"unknown finding id {self.id!r}; expected one of nbdiag.findings.CATALOG")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def __str__(self) -> str:
        where = f" [{self.layer}]" if self.layer else ""
        when = f" @step {self.step}" if self.step is not None else ""
        return f"{self.severity.upper():4} {self.id}{where}{when}: {self.message}"


def make_finding(
    id: str,
    severity: str,
    message: str,
    *,
    layer: str | None = None,
    step: int | None = None,
    evidence: dict[str, Any] | None = None,
    advice: str | None = None,
) -> Finding:
    """Build a :class:`Finding`, filling advice and ref from the catalog; ``advice`` replaces the catalog's when the
    evidence points to a more specific cause (advice must match the cause)."""
    entry = CATALOG.get(id)
    if entry is None:
        raise ValueError(f"unknown finding id {id!r}; add it to nbdiag.findings.CATALOG first")
    return Finding(id, severity, message, layer, step, dict(evidence or {}), advice or entry.advice, entry.ref)


def count_of(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 ("1 parameter", "3 parameters"), for finding messages."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def findings_frame(findings: list[Finding]):
    """Findings as a pandas DataFrame, one row each (evidence kept as a dict column)."""
    import pandas as pd

    columns = ["id", "severity", "layer", "step", "message", "advice", "ref", "evidence"]
    return pd.DataFrame([{c: getattr(f, c) for c in columns} for f in findings], columns=columns)


def findings_text(findings: list[Finding], width: int = TEXT_WIDTH) -> str:
    """A plain-text list of findings, most severe first: the finding, its evidence and its advice with the source,
    each wrapped at word boundaries to ``width`` columns (nothing is cut)."""
    if not findings:
        return "no findings"
    lines = []
    for f in by_severity(findings):
        lines.append(textwrap.fill(str(f), width, subsequent_indent="       ", break_long_words=False))
        if f.evidence:
            lines.append(_indented(f"evidence: {_evidence_text(f.evidence)}", width))
        lines.append(_indented(f"advice: {f.advice} ({f.ref})", width))
    return "\n".join(lines)


def findings_html(findings: list[Finding]) -> str:
    """An HTML table of findings, most severe first: a coloured severity badge, the id, where (layer and step),
    the message, the evidence and the advice with its source."""
    if not findings:
        return "<div style='color:#2e7d32'>no findings</div>"
    header = "".join(f"<th>{name}</th>" for name in ("severity", "id", "where", "message", "evidence", "advice"))
    rows = "".join(_html_row(f) for f in by_severity(findings))
    style = "border-collapse:collapse;font-size:12px;text-align:left"
    return f"<table class='nbdiag-findings' style='{style}'><tr>{header}</tr>{rows}</table>"


def severity_badge(severity: str) -> str:
    """A coloured ``fail`` / ``warn`` / ``info`` badge (HTML)."""
    colour = SEVERITY_COLOURS.get(severity, "#555")
    style = f"color:white;background:{colour};padding:0 4px;border-radius:3px;font-weight:bold"
    return f'<span style="{style}">{html.escape(severity)}</span>'


def where_text(finding: Finding) -> str:
    """``'layer 3 · step 120'`` (the parts that are known)."""
    parts = ([f"layer {finding.layer}"] if finding.layer else []) + (
        [f"step {finding.step}"] if finding.step is not None else []
    )
    return " · ".join(parts)


class Findings(list):
    """A list of :class:`Finding` that shows as a table: coloured HTML in a notebook, text in a script."""

    def __str__(self) -> str:
        return findings_text(self)

    def _repr_html_(self) -> str:
        return findings_html(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(findings_text(self))


def by_severity(findings: list[Finding]) -> list[Finding]:
    """``findings`` most severe first (stable within a severity)."""
    return sorted(findings, key=lambda f: SEVERITY_RANK.get(f.severity, len(SEVERITY_RANK)))


def _indented(text: str, width: int) -> str:
    return textwrap.fill(text, width, initial_indent="       ", subsequent_indent="         ", break_long_words=False)


def _html_row(finding: Finding) -> str:
    cells = (
        severity_badge(finding.severity),
        f"<code>{html.escape(finding.id)}</code>",
        html.escape(where_text(finding)),
        html.escape(finding.message),
        html.escape(_evidence_text(finding.evidence)),
        f"{html.escape(finding.advice)} <i>({html.escape(finding.ref)})</i>",
    )
    return "<tr>" + "".join(f'<td style="text-align:left">{cell}</td>' for cell in cells) + "</tr>"


def _evidence_text(evidence: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in evidence.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
