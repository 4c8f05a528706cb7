"""What a record knows about its run besides the statistics: :class:`RunMeta`, typed, one field per fact.

The monitor sets it (``Record.update_meta``, under the record's lock, so the run writer, which serializes it on
its own thread, always reads a whole one); health rules, views and run directories read its fields. A run
manifest holds :meth:`RunMeta.as_dict`; :meth:`RunMeta.from_dict` reads it back (also manifests written before
this class, whose keys were the same).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nbdiag.frozen_init import FrozenAtInit

# RunMeta.skipped's key for forward calls inside torch.func transforms (vmap/grad/jvp): per-sample tensors, traced
# by the transform, that nbdiag's hooks leave alone (nbdiag.capture).
TRANSFORM_CALLS = "forward calls inside torch.func transforms"


@dataclass(frozen=True)
class FilterMeta:
    """Where the ``filters`` block comes from: the first Conv2d's name, the kept (channels, kh, kw), trainable."""

    layer: str
    shape: tuple[int, int, int]
    trainable: bool


@dataclass(frozen=True)
class InputMeta:
    """The shape of one sample of the model's input (the ``inputs`` block holds it flattened) and its dtype."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ValidationMode:
    """``mon.validate()`` calls, those that found dropout/batch norm in train mode, and those layers (the last)."""

    calls: int = 0
    train_mode_calls: int = 0
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunMeta:
    """The run's facts. Frozen: a change makes a new one (``Record.update_meta``); dict fields are never changed
    in place.

    Attributes:
        model: the watched model's class name.
        layer_types: recorded layer -> module class name.
        activation_kinds: layer -> activation kind ("relu-like", "bounded", ...) for activation modules.
        not_recorded: reshape-only layer -> module class name (left out: their rows would repeat the input's).
        num_classes: the number of classes given to ``watch``.
        parameters: the model's parameter count.
        objective: the declared objective (None: inferred by the loss rules).
        filters: the first Conv2d's filters, when recorded.
        frozen_at_init: frozen layers still at their random init, seen when the monitor attached.
        inputs: the sampled model input's shape and dtype, once one was sampled.
        validation_mode: what ``mon.validate()`` saw.
        not_recorded_sharded: "<parameter> (<what>)" -> why a sharded tensor is not recorded (FSDP2 / tensor
            parallel: a ``Partial`` gradient).
        skipped: what nbdiag chose not to record -> the first sampled step it happened (forward calls inside
            ``torch.func`` transforms: :data:`TRANSFORM_CALLS`), set once.
    """

    model: str = ""
    layer_types: dict[str, str] = field(default_factory=dict)
    activation_kinds: dict[str, str] = field(default_factory=dict)
    not_recorded: dict[str, str] = field(default_factory=dict)
    num_classes: int | None = None
    parameters: int = 0
    objective: str | None = None
    filters: FilterMeta | None = None
    frozen_at_init: tuple[FrozenAtInit, ...] = ()
    inputs: InputMeta | None = None
    validation_mode: ValidationMode = ValidationMode()
    not_recorded_sharded: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def replace(self, **changes: Any) -> RunMeta:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the run manifest's ``meta``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunMeta:
        """Read :meth:`as_dict`'s output back; missing keys take their defaults, unknown ones are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {key: value for key, value in (values or {}).items() if key in known and value is not None}
        for key in ("layer_types", "activation_kinds", "not_recorded", "not_recorded_sharded", "skipped"):
            kept[key] = dict(kept.get(key) or {})
        if "filters" in kept:
            filters = kept["filters"]
            kept["filters"] = FilterMeta(filters["layer"], tuple(filters["shape"]), bool(filters.get("trainable")))
        if "inputs" in kept:
            kept["inputs"] = InputMeta(tuple(kept["inputs"]["shape"]), str(kept["inputs"]["dtype"]))
        kept["frozen_at_init"] = tuple(FrozenAtInit(**layer) for layer in kept.get("frozen_at_init") or ())
        seen = kept.get("validation_mode") or {}
        kept["validation_mode"] = ValidationMode(
            int(seen.get("calls", 0)), int(seen.get("train_mode_calls", 0)), tuple(seen.get("layers", ()))
        )
        return cls(**kept)
