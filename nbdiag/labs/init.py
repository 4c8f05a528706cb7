"""The init lab: CS231n lecture 5's deep fully connected net, its per-layer activations and gradients.

seeds/004: 10 layers x 500 units, unit-Gaussian input, tanh. With N(0, 0.01) weights the activations collapse
to 0 with depth, with N(0, 1) they saturate at +-1, with Xavier they stay spread; ReLU needs He (2 / fan_in).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from nbdiag.labs.functions import Activation, get_activation
from nbdiag.labs.lab import Lab, present
from nbdiag.labs.schemes import canonical_scheme, init_weight_, scheme_std
from nbdiag.stats import derive, tensor_stats

LAB_ACTIVATIONS = ("tanh", "relu", "leaky_relu", "sigmoid", "gelu")
LAB_INITS = ("small", "large", "xavier", "he", "orthogonal", "custom")
HIST_BINS = 40
DEAD_GRAD = 1e-3  # a unit is dead when |f'(z)| < this for every sample: no gradient passes through it
FLAT_GRAD = 1e-2  # a local gradient |f'(z)| below this is "~0" (1% of tanh's and ReLU's peak slope of 1)
PAD_BINS = 4  # a bounded activation's bins reach 4 bins (10% of its range) past each bound: a pile at a bound shows
BN_EPS = 1e-5
_STATS = ("mean", "std", "zero_frac", "saturated_frac")


def deep_net_activations(
    depth: int = 10,
    width: int = 500,
    activation: str = "tanh",
    init: str = "xavier",
    seed: int = 0,
    batch_norm: bool = False,
    n_samples: int = 1000,
    std: float | None = None,
    backward: bool = True,
) -> pd.DataFrame:
    """Run the lecture's experiment: ``depth`` fully connected layers of ``width`` units on unit-Gaussian input.

    Layer l computes ``h_l = f(BN(h_{l-1} @ W_l.T))`` (no bias; BN, without learned scale and shift, only when
    ``batch_norm``). The backward pass sends a unit-Gaussian upstream gradient from the last layer.
    Uses its own random generator: the global torch RNG is untouched.

    Args:
        depth: number of layers.
        width: units per layer (and input dimension).
        activation: one of ``LAB_ACTIVATIONS`` (tanh, relu, leaky_relu, sigmoid, gelu).
        init: small N(0, 0.01^2), large N(0, 1), xavier (std 1/sqrt(fan_in)), he/kaiming (std sqrt(2/fan_in)),
            orthogonal (gain 1), or a std as a string ("0.05").
        seed: seed of the input, the weights and the upstream gradient.
        batch_norm: normalize each layer's pre-activations over the batch.
        n_samples: batch size.
        std: when given, weights are drawn from N(0, std^2) whatever ``init`` says (the "custom" init).
        backward: also run the backward pass (gradient columns are NaN otherwise).

    Returns:
        One row per layer 1..depth: ``layer, mean, std, saturated, zero, flat, dead, grad_std, weight_std,
        weight_grad_std, hist``. ``saturated``: fraction of outputs within 1% of a bound of a saturating
        activation (tanh +-1, sigmoid 0/1); ``zero``: fraction exactly 0; ``flat``: fraction of (sample, unit)
        outputs whose local gradient |f'(z)| is below ``FLAT_GRAD`` (~0: almost no gradient passes there);
        ``dead``: fraction of units whose local gradient is below 1e-3 for every sample; ``grad_std``: std of
        dLoss/dh_l, the gradient backpropagated to the layer's output; ``hist``: counts on the linear bins
        ``df.attrs["edges"]`` (values outside fall in the end bins). ``df.attrs`` also holds
        ``activation``, ``init``, ``expected_weight_std``, ``input_std``.

    Raises:
        ValueError: for an unknown activation or init, or a non-positive size.
    """
    act = get_activation(activation, LAB_ACTIVATIONS)
    scheme = _resolve_init(init, std)
    for name, value in (("depth", depth), ("width", width), ("n_samples", n_samples)):
        if int(value) != value or value < 1:
            raise ValueError(f"got {name}={value!r}, expected a positive integer; try {name}=10")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, width, generator=generator)  # (N, D) unit Gaussian
    weights = [
        init_weight_(torch.empty(width, width), scheme, generator).requires_grad_(backward) for _ in range(depth)
    ]
    with torch.set_grad_enabled(backward):
        pre, post = _forward(x, weights, act, batch_norm)
        if backward:
            upstream = torch.randn(n_samples, width, generator=generator)  # dLoss/dh_depth
            (post[-1] * upstream).sum().backward()
    frame = _layer_frame(pre, post, weights, act, backward)
    frame.attrs.update(
        activation=activation,
        init=_init_label(scheme),
        batch_norm=batch_norm,
        expected_weight_std=scheme_std(scheme, width),
        input_std=float(x.std()),
        edges=_edges(act, post[0].detach()),
    )
    frame["hist"] = [_histogram(h.detach(), frame.attrs["edges"]) for h in post]
    return frame


def _resolve_init(init: str, std: float | None) -> str | float:
    if std is not None:
        return canonical_scheme(float(std))
    if init == "custom":
        raise ValueError("got init='custom' without std, expected a std; try init='custom', std=0.05")
    return canonical_scheme(init)


def _init_label(scheme: str | float) -> str:
    return f"N(0, {scheme:g}^2)" if isinstance(scheme, float) else scheme


def _forward(
    x: torch.Tensor, weights: list[torch.Tensor], act: Activation, batch_norm: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Pre-activations z_l and activations h_l per layer; each h_l keeps its gradient."""
    pre, post, h = [], [], x
    for weight in weights:
        z = h @ weight.T  # (N, D)
        if batch_norm:
            var, mean = torch.var_mean(z, dim=0, correction=0)
            z = (z - mean) / torch.sqrt(var + BN_EPS)
        h = act.fn(z)
        if h.requires_grad:
            h.retain_grad()
        pre.append(z.detach())
        post.append(h)
    return pre, post


def _layer_frame(pre, post, weights, act: Activation, backward: bool) -> pd.DataFrame:
    vectors = torch.stack([tensor_stats(h, bounds=act.bounds) for h in post])  # exact fractions
    mean, std, zero, saturated = derive(vectors.numpy(), _STATS).T
    local = [act.grad(z).abs() for z in pre]  # |f'(z_l)|, (N, D) per layer
    flat = [float((g < FLAT_GRAD).float().mean()) for g in local]
    dead = [float((g < DEAD_GRAD).all(dim=0).float().mean()) for g in local]
    nan = [float("nan")] * len(post)
    return pd.DataFrame(
        {
            "layer": np.arange(1, len(post) + 1),
            "mean": mean,
            "std": std,
            "saturated": saturated,
            "zero": zero,
            "flat": flat,
            "dead": dead,
            "grad_std": [float(h.grad.std(correction=0)) for h in post] if backward else nan,
            "weight_std": [float(w.detach().std(correction=0)) for w in weights],
            "weight_grad_std": [float(w.grad.std(correction=0)) for w in weights] if backward else nan,
        }
    )


def _edges(act: Activation, first_layer: torch.Tensor) -> np.ndarray:
    """Linear bin edges: when bounded, ``HIST_BINS`` bins' width with a bin centred on each bound (tanh's outputs
    at -1 and at +1 fall in one bin each) and ``PAD_BINS`` empty ones past it (the pile at a bound sits inside its
    slot, not on the slot's edge); else the first layer's 0.1%-99.9% span."""
    if act.bounds is not None and None not in act.bounds:
        low, high = act.bounds
        width = (high - low) / HIST_BINS
        reach = (PAD_BINS + 0.5) * width
        return np.linspace(low - reach, high + reach, HIST_BINS + 2 * PAD_BINS + 2)
    sample = first_layer.reshape(-1)[:: max(1, first_layer.numel() // 100_000)]
    low, high = (float(q) for q in torch.quantile(sample, torch.tensor([0.001, 0.999])))
    low, high = min(low, 0.0), max(high, 0.0)
    if not high > low:
        low, high = -1.0, 1.0
    return np.linspace(low, high, HIST_BINS + 1)


def _histogram(h: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """Counts on ``edges``; values beyond the ends are counted in the end bins."""
    low, high = float(edges[0]), float(edges[-1])
    return torch.histc(h.clamp(low, high), bins=len(edges) - 1, min=low, max=high).numpy().astype(np.int64)


class InitLab(Lab):
    """The init lab: controls for activation, init, std, depth and batch norm over :func:`deep_net_activations`.

    ``frame()`` is the current per-layer table, ``summary()`` its main columns; ``update(**kwargs)`` re-runs it
    (the widget's controls call it too); ``elapsed_s`` is how long the last run took.
    """

    figsize = (14.0, 6.5)
    activations = LAB_ACTIVATIONS  # the choices the widget offers
    inits = LAB_INITS

    def __init__(self, **params) -> None:
        super().__init__()
        self.params = {"depth": 10, "activation": "tanh", "init": "xavier", "std": None, "batch_norm": False}
        self.params.update(params)
        self.data = pd.DataFrame()
        self.elapsed_s = 0.0
        self.update()

    def update(self, **params) -> pd.DataFrame:
        """Re-run the experiment with ``params`` changed (any argument of :func:`deep_net_activations`)."""
        self.params.update(params)
        start = time.perf_counter()
        self.data = deep_net_activations(**self.params)
        self.elapsed_s = time.perf_counter() - start
        self._changed()
        return self.data

    def frame(self) -> pd.DataFrame:
        """One row per layer: activation statistics, histogram counts (``hist``), gradient std; ``attrs`` hold
        the run's parameters and the histogram edges."""
        return self.data

    def summary(self) -> pd.DataFrame:
        """Per layer: mean, std, saturated and dead fractions, gradient std."""
        return self.data[["layer", "mean", "std", "saturated", "flat", "dead", "grad_std"]]

    def summary_text(self) -> str:
        df, attrs = self.data, self.data.attrs
        head = (
            f"init lab: {len(df)} layers, {attrs['activation']}, init={attrs['init']}, "
            f"batch_norm={attrs['batch_norm']} (ran in {self.elapsed_s * 1000:.0f} ms)"
        )
        return head + "\n" + self.summary().to_string(index=False, float_format=lambda v: f"{v:.3g}")


def init_lab(display: bool | str | None = None, **params) -> InitLab:
    """The interactive init lab (lecture 5): per-layer activation histograms, mean/std and gradient std vs depth.

    Args:
        display: how to show it: "widget", "inline" or "static" (no controls: a PNG), False for nothing;
            None (auto) as for ``nbdiag.watch``: chosen for the front end, nothing outside a notebook.
        **params: starting values for :func:`deep_net_activations` (depth, width, activation, init, std,
            batch_norm, n_samples, seed).

    Returns:
        The :class:`InitLab`: ``.frame()``, ``.summary()``, ``.widget``, ``.update(...)``, ``.savefig(path)``.
    """
    return present(InitLab(**params), display)
