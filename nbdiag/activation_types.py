"""Which modules are activation functions, and of what kind: a registry users can extend.

Activation rules judge only activation-function outputs (the logits or a linear layer's scale is theirs to choose).
torch's own classes are known; third-party ones are known by qualified name without importing their package
(Hugging Face ``transformers.activations``), and :func:`register_activation` adds any other class.

Kinds:
- ``"relu-like"``: exactly zero for negative inputs, so a unit can die (ReLU, ReLU6, squared ReLU);
- ``"bounded"``: output pinned between ``bounds``, so units can saturate (tanh, sigmoid, hardtanh);
- ``"smooth"``: neither (GELU, SiLU, ELU, LeakyReLU, Mish, Softplus, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

KINDS = ("relu-like", "bounded", "smooth")
Bounds = tuple[float | None, float | None]


@dataclass(frozen=True)
class ActivationType:
    """How nbdiag reads one activation class: its kind and, if it is bounded, where its outputs are pinned."""

    kind: str
    bounds: Bounds | Callable[[nn.Module], Bounds] | None = None

    def bounds_of(self, module: nn.Module) -> Bounds | None:
        return self.bounds(module) if callable(self.bounds) else self.bounds


_BY_CLASS: dict[type, ActivationType] = {}
_BY_NAME: dict[str, ActivationType] = {}  # "package.module.Class": classes of packages nbdiag never imports


def register_activation(
    cls: type | str, *, kind: str, bounds: Bounds | Callable[[nn.Module], Bounds] | None = None
) -> None:
    """Tell nbdiag that modules of ``cls`` (and its subclasses) are activation functions.

    Args:
        cls: an ``nn.Module`` subclass, or its qualified name ``"package.module.Class"`` (nothing is imported).
        kind: ``"relu-like"`` (units can die), ``"bounded"`` (units can saturate) or ``"smooth"``.
        bounds: for ``"bounded"`` (optional for ``"relu-like"``): the output range ``(low, high)``, a side None where
            reaching it does not stall learning, or a function ``module -> (low, high)`` for per-instance ranges.

    Example:
        ``nbdiag.register_activation(MySwish, kind="smooth")``;
        ``nbdiag.register_activation(ScaledTanh, kind="bounded", bounds=lambda m: (-m.scale, m.scale))``.
    """
    if kind not in KINDS:
        raise ValueError(f"got kind={kind!r}, expected one of {KINDS}; e.g. kind='smooth' for a GELU-like function")
    if kind == "bounded" and bounds is None:
        raise ValueError("got kind='bounded' without bounds; pass bounds=(low, high), e.g. bounds=(-1.0, 1.0)")
    if kind == "smooth" and bounds is not None:
        raise ValueError("got bounds for kind='smooth'; a function with saturating bounds is kind='bounded'")
    entry = ActivationType(kind, bounds)
    if isinstance(cls, str):
        _BY_NAME[cls] = entry
    elif isinstance(cls, type) and issubclass(cls, nn.Module):
        _BY_CLASS[cls] = entry
    else:
        raise TypeError(f"got {cls!r}, expected an nn.Module subclass or a 'package.module.Class' name")


def activation_type(module: nn.Module) -> ActivationType | None:
    """The registered entry of ``module``'s class or its nearest registered base class; None if not an activation."""
    for cls in type(module).__mro__:
        entry = _BY_CLASS.get(cls) or _BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")
        if entry is not None:
            return entry
    return None


def activation_kind(module: nn.Module) -> str | None:
    entry = activation_type(module)
    return None if entry is None else entry.kind


def registered_bounds(module: nn.Module) -> Bounds | None:
    """Saturation bounds of a registered activation (torch's own bounded classes are read by ``stats``)."""
    entry = activation_type(module)
    return None if entry is None else entry.bounds_of(module)


def _register_builtins() -> None:
    register_activation(nn.ReLU, kind="relu-like")
    for cls in (nn.Tanh, nn.Softsign):
        register_activation(cls, kind="bounded", bounds=(-1.0, 1.0))
    for cls in (nn.Sigmoid, nn.Hardsigmoid):
        register_activation(cls, kind="bounded", bounds=(0.0, 1.0))
    register_activation(nn.Hardtanh, kind="bounded", bounds=lambda m: (float(m.min_val), float(m.max_val)))
    register_activation(nn.ReLU6, kind="relu-like", bounds=(None, 6.0))
    smooth = (nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus)
    for cls in (*smooth, nn.Hardswish):
        register_activation(cls, kind="smooth")
    hf = "transformers.activations."
    for name in (
        "GELUActivation",
        "NewGELUActivation",
        "FastGELUActivation",
        "QuickGELUActivation",
        "AccurateGELUActivation",
        "GELUTanh",
        "PytorchGELUTanh",
        "MishActivation",
        "SiLUActivation",
        "LaplaceActivation",
        "XIELUActivation",
        "SqrtSoftplusActivation",
    ):
        register_activation(hf + name, kind="smooth")
    register_activation(hf + "ReLUSquaredActivation", kind="relu-like")
    register_activation(hf + "ClippedGELUActivation", kind="bounded", bounds=lambda m: (float(m.min), float(m.max)))


_register_builtins()
