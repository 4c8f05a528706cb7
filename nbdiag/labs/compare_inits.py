"""compare_inits: your model under several init schemes, one forward and backward on a real batch each.

Per scheme: per-layer activation and gradient statistics, the initial loss against -ln(1/C) (seeds/001 "verify
loss @ init"), and a recommendation. The caller's model, its mode and the RNG state are never touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from nbdiag.labs.lab import Lab, present
from nbdiag.labs.reinit import WEIGHTED, reinit_
from nbdiag.probe import Hooks, first_tensor, iter_tensors, leaf_modules, model_device
from nbdiag.rng import forked_rng
from nbdiag.stats import ACTIVATION_STATS, GRADIENT_STATS, derive, merge_vectors, output_bounds, tensor_stats

HIST_SAMPLE = 4096
# seeds/004 (CS231n lecture 5), weight initialization: Xavier (std 1/sqrt(fan_in)) keeps tanh's spread through depth;
# with ReLU half the variance is lost per layer and He (std sqrt(2/fan_in)) makes up for it.
RULE_OF_THE_LECTURE = {
    "xavier": frozenset({"Tanh", "Sigmoid", "Softsign", "Hardtanh", "Hardsigmoid"}),
    "he": frozenset({"ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish"}),
}
SCORE_TEXT = (
    "score = act_scale (mean decades of the weighted layers' output std from 1) + grad_drift (decades the gradient "
    "std changes across depth) + saturated (mean share of saturated outputs) + loss_gap (initial loss vs chance, "
    "relative); lower is healthier, inf for NaN/Inf"
)
LAYER_COLUMNS = ("act_mean", "act_std", "saturated", "zero_frac", "grad_std", "weight_std", "nonfinite")


def compare_inits(
    model_or_factory: nn.Module | Callable[[], nn.Module],
    batch: Any,
    schemes: Iterable[str | float] = ("small", "large", "xavier", "he"),
    loss_fn: Callable | None = None,
    num_classes: int | None = None,
    zero_init_residual: bool | Iterable[str] = False,
    seed: int = 0,
    display: bool | str | None = None,
) -> InitComparison:
    """Re-initialize copies of the model per scheme, run one forward/backward on ``batch``, and compare.

    Args:
        model_or_factory: a model (deep-copied per scheme, never changed) or a callable returning a fresh one.
        batch: ``(inputs, targets)`` or inputs alone (then gradients flow from a unit-Gaussian upstream gradient
            and there is no loss).
        schemes: names (small, large, xavier, he, orthogonal, "current" = the model's own weights) or stds.
        loss_fn: ``loss_fn(output, targets)``; default cross entropy for integer targets, MSE for float targets.
        num_classes: C for the chance loss ln(C); default the output's size along dim 1.
        zero_init_residual: zero the last layer of each residual block (True) or of the named modules.
        seed: seeds the weights and any randomness in the forward pass (dropout), identically per scheme.
        display: how to show it: "widget", "inline" or "static" (no controls: a PNG), False for nothing;
            None (auto) as for ``nbdiag.watch``: chosen for the front end, nothing outside a notebook.

    Returns:
        :class:`InitComparison` with ``.frame()``, ``.summary()``, ``.recommendation``, ``.best``, ``.savefig()``.

    Raises:
        TypeError: when ``model_or_factory`` is neither a module nor a callable returning one.
        ValueError: for an empty or unknown scheme.
    """
    schemes = list(schemes)
    if not schemes:
        raise ValueError("got no schemes, expected at least one; try schemes=('xavier', 'he')")
    inputs, targets = batch if isinstance(batch, (tuple, list)) and len(batch) == 2 else (batch, None)
    layers, runs = [], []
    with forked_rng(inputs):
        for scheme in schemes:
            model = _fresh_model(model_or_factory, seed)
            reinit_(model, scheme, seed, zero_init_residual)
            torch.manual_seed(seed)
            frame, run = _probe(model, inputs, targets, loss_fn, num_classes, seed)
            layers.append(frame.assign(scheme=str(scheme)))
            runs.append({"scheme": str(scheme), **run})
    comparison = InitComparison(pd.concat(layers, ignore_index=True), pd.DataFrame(runs).set_index("scheme"))
    return present(comparison, display)


def _fresh_model(model_or_factory, seed: int) -> nn.Module:
    if isinstance(model_or_factory, nn.Module):
        return copy.deepcopy(model_or_factory)
    if not callable(model_or_factory):
        raise TypeError(f"got {type(model_or_factory).__name__}, expected an nn.Module or a factory returning one")
    torch.manual_seed(seed)
    model = model_or_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"the factory returned {type(model).__name__}, expected an nn.Module; return the model")
    return model


def _probe(model, inputs, targets, loss_fn, num_classes, seed) -> tuple[pd.DataFrame, dict[str, float]]:
    """One forward/backward with hooks on every leaf module: per-layer rows and the loss numbers."""
    device = model_device(model)
    inputs = _to(inputs, device)
    targets = _to(targets, device)
    captured: dict[str, dict[str, list[torch.Tensor]]] = {}
    modules = dict(leaf_modules(model))
    with Hooks() as hooks:
        hooks.register_forward(list(modules.items()), _capture(captured, modules))
        output = model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)
        logits = first_tensor(output)
        loss, baseline = _loss(logits, targets, loss_fn, num_classes)
        if loss is not None:
            loss.backward()
        else:
            upstream = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed)).to(logits)
            (logits * upstream).sum().backward()
    frame = _layer_frame(captured, modules)
    return frame, {"initial_loss": float(loss.detach()) if loss is not None else math.nan, "chance_loss": baseline}


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    return value


def _capture(captured, modules) -> Callable:
    def hook(name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = next((t for _, t in iter_tensors(output)), None)
        if tensor is None:
            return
        entry = captured.setdefault(name, {"act": [], "grad": []})
        entry["act"].append(tensor_stats(tensor, output_bounds(module), HIST_SAMPLE))
        if tensor.requires_grad:
            tensor.register_hook(lambda grad: entry["grad"].append(tensor_stats(grad, None, HIST_SAMPLE)))

    return hook


def _loss(logits, targets, loss_fn, num_classes) -> tuple[torch.Tensor | None, float]:
    """The loss and its chance-level value: ln(C) for classes, Var(targets) (predict the mean) for regression."""
    if targets is None:
        return None, math.nan
    classification = not targets.is_floating_point()
    if classification:
        classes = num_classes or (logits.shape[1] if logits.dim() > 1 else 2)
        baseline = math.log(classes)
    else:
        baseline = float(targets.float().var(correction=0))
    if loss_fn is not None:
        return loss_fn(logits, targets), baseline
    if classification:
        return F.cross_entropy(logits.float(), targets), baseline
    return F.mse_loss(logits.float().reshape(targets.shape), targets.float()), baseline


def _layer_frame(captured, modules) -> pd.DataFrame:
    rows = []
    for index, (name, entry) in enumerate(captured.items()):
        act = derive(merge_vectors(torch.stack(entry["act"]).cpu().numpy())[None], ACTIVATION_STATS)[0]
        grad_std = math.nan
        if entry["grad"]:
            grad_std = derive(merge_vectors(torch.stack(entry["grad"]).cpu().numpy())[None], GRADIENT_STATS)[0][1]
        module = modules[name]
        weighted = isinstance(module, WEIGHTED)
        rows.append(
            {
                "index": index,
                "layer": name,
                "type": type(module).__name__,
                "weighted": weighted,
                "act_mean": act[0],
                "act_std": act[1],
                "saturated": act[5],
                "zero_frac": act[4],
                "grad_std": grad_std,
                "weight_std": float(module.weight.detach().float().std(correction=0)) if weighted else math.nan,
                "nonfinite": act[6],
            }
        )
    return pd.DataFrame(rows)


class InitComparison(Lab):
    """The result of :func:`compare_inits`: per-layer table, per-scheme summary, recommendation, plots."""

    figsize = (15.0, 4.5)

    def __init__(self, layers: pd.DataFrame, runs: pd.DataFrame) -> None:
        super().__init__()
        self.layers = layers
        self.summary_frame = pd.concat([runs, _profile_scores(layers, runs)], axis=1)
        self.nonlinearity = _nonlinearity(layers)
        self.best, self.reason = _choose(self.summary_frame, self.nonlinearity)
        self.recommendation = _recommendation(self.summary_frame, self.best, self.reason)

    def frame(self) -> pd.DataFrame:
        """One row per (scheme, layer) in forward order: activation and gradient statistics, weight std."""
        return self.layers[["scheme", "index", "layer", "type", *LAYER_COLUMNS]]

    def summary(self) -> pd.DataFrame:
        """One row per scheme: initial and chance loss, activation scale, gradient drift, saturation, score."""
        return self.summary_frame

    def plot(self) -> Any:
        """A matplotlib Figure: activation std and gradient std per layer for each scheme, initial loss."""
        return self.figure()

    def summary_text(self) -> str:
        """Plain-text table and recommendation."""
        columns = ["initial_loss", "chance_loss", "act_scale", "grad_drift", "saturated", "score"]
        table = self.summary_frame[columns].to_string(float_format=lambda v: f"{v:.3g}")
        return f"compare_inits\n{table}\n{SCORE_TEXT}\n{self.recommendation}"


def _profile_scores(layers: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per scheme: how far the weighted layers' output std sits from 1 (decades, mean over layers), how many
    decades the gradient std changes from the last weighted layer to the first, the mean saturated share, the
    relative gap of the initial loss to chance, and their sum as ``score`` (lower is healthier; inf if non-finite).
    """
    rows = {}
    for scheme, group in layers.groupby("scheme", sort=False):
        weighted = group[group["weighted"]] if group["weighted"].any() else group
        act_scale = float(np.mean(np.abs(np.log10(weighted["act_std"].clip(lower=1e-30)))))
        grads = weighted["grad_std"].dropna()
        grad_drift = float(abs(np.log10(max(grads.iloc[0], 1e-30) / max(grads.iloc[-1], 1e-30)))) if len(grads) else 0.0
        saturated = float(group["saturated"].mean())
        initial, chance = runs.loc[scheme, ["initial_loss", "chance_loss"]]
        loss_gap = abs(initial - chance) / chance if chance > 0 and math.isfinite(initial) else 0.0
        nonfinite = group["nonfinite"].sum() > 0 or not np.isfinite(group[["act_std"]].to_numpy()).all()
        score = math.inf if nonfinite else act_scale + grad_drift + saturated + loss_gap
        rows[scheme] = {
            "act_std_first": float(weighted["act_std"].iloc[0]),
            "act_std_last": float(weighted["act_std"].iloc[-1]),
            "act_scale": act_scale,
            "grad_drift": grad_drift,
            "saturated": saturated,
            "loss_gap": loss_gap,
            "score": score,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _nonlinearity(layers: pd.DataFrame) -> str | None:
    """The model's most frequent activation module type (in the first scheme's layers), or None."""
    first = layers[layers["scheme"] == layers["scheme"].iloc[0]] if len(layers) else layers
    known = frozenset().union(*RULE_OF_THE_LECTURE.values())
    types = first["type"][first["type"].isin(known)]
    return str(types.mode().iloc[0]) if len(types) else None


def _choose(summary: pd.DataFrame, nonlinearity: str | None) -> tuple[str | None, str]:
    """The recommended scheme, the lowest score (the recommendation never contradicts the table), and one sentence
    placing the lecture's rule for the model's nonlinearity beside it ("" when there is no rule to place)."""
    finite = summary["score"].replace(math.inf, np.nan).dropna()
    lowest = str(finite.idxmin()) if len(finite) else None
    rule = next((scheme for scheme, types in RULE_OF_THE_LECTURE.items() if nonlinearity in types), None)
    if lowest is None or rule is None or rule not in summary.index:
        return lowest, ""
    if rule == lowest:
        return lowest, f"It is also the lecture's rule for {nonlinearity}."
    row, best = summary.loc[rule], summary.loc[lowest]
    why = _problem(row) or (
        f"its output std goes {row.act_std_first:.3g} -> {row.act_std_last:.3g} with depth "
        f"(vs {best.act_std_first:.3g} -> {best.act_std_last:.3g})"
        if row.act_scale > best.act_scale
        else f"its gradient std changes {row.grad_drift:.2f} decades across depth (vs {best.grad_drift:.2f})"
    )
    return lowest, f"'{rule}', the lecture's rule for {nonlinearity}, scores {row.score:.3g} on this model: {why}."


def _recommendation(summary: pd.DataFrame, best: str | None, reason: str) -> str:
    if best is None:
        return "No scheme produced finite activations: check the model and the batch for NaN/Inf."
    row = summary.loc[best]
    text = (
        f"Use '{best}': it has the lowest score ({row.score:.3g}); weighted-layer output std goes "
        f"{row.act_std_first:.3g} -> {row.act_std_last:.3g} "
        f"(mean {row.act_scale:.2f} decades from 1), gradient std changes {row.grad_drift:.2f} decades across "
        f"depth, {row.saturated:.0%} saturated"
    )
    if math.isfinite(row.initial_loss):
        text += f", initial loss {row.initial_loss:.3g} vs chance {row.chance_loss:.3g}"
    others = [
        f"'{scheme}' {_problem(other)}" for scheme, other in summary.drop(index=best).iterrows() if _problem(other)
    ]
    return " ".join(
        part for part in (text + ".", reason, "Others: " + "; ".join(others) + "." if others else "") if part
    )


def _problem(row: pd.Series) -> str:
    if not math.isfinite(row.score):
        return "gives NaN/Inf"
    if row.saturated > 0.2:
        return f"saturates ({row.saturated:.0%})"
    if row.act_std_last < 0.1 * row.act_std_first or row.act_scale > 1 and row.act_std_last < 1:
        return f"collapses (std {row.act_std_first:.2g} -> {row.act_std_last:.2g})"
    if row.act_scale > 1:
        return f"explodes (std {row.act_std_first:.2g} -> {row.act_std_last:.2g})"
    if row.loss_gap > 0.5:
        return f"initial loss {row.initial_loss:.3g} far from chance {row.chance_loss:.3g}"
    return ""
