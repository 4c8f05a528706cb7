"""What a monitor is asked to do: :class:`WatchConfig`, validated once, for ``watch``, the integrations and run files.

``watch(model, optimizer, every=..., ...)`` builds one from its keywords; the Lightning and Hugging Face callbacks
build one when they are constructed (a bad value fails there, not at the first training step); the run writer
stamps :meth:`WatchConfig.as_dict` into the manifest, and ``open_run(...).config`` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from nbdiag.environment import MODES as DISPLAY_MODES
from nbdiag.environment import VALID as VALID_DISPLAY
from nbdiag.health.objective import OBJECTIVES
from nbdiag.record import MIN_CAPACITY

DEFAULT_HIST_SAMPLE = 4_096


@dataclass(frozen=True)
class WatchConfig:
    """The keywords of :func:`nbdiag.watch` (see it for what each means), checked when built.

    Raises:
        TypeError: a value of the wrong type (the message names the keyword, what was expected and an example).
        ValueError: a value out of range, likewise.
    """

    every: int = 10
    dense: int = 10
    capacity: int = 512
    hist_sample: int | None = DEFAULT_HIST_SAMPLE
    num_classes: int | None = None
    run_dir: str | None = None
    per_rank: bool | None = None
    activations: bool | None = None
    objective: str | None = None
    inputs: bool | None = None
    display: bool | str | None = None

    def __post_init__(self) -> None:
        _int("every", self.every, 1, "sample every N-th step", "every=10")
        _int("dense", self.dense, 0, "the number of first steps all sampled", "dense=10")
        _int("capacity", self.capacity, MIN_CAPACITY, "the sampled steps held in memory", "capacity=512")
        if self.hist_sample is not None:
            _int("hist_sample", self.hist_sample, 1, "elements histogrammed per tensor, None = all", "hist_sample=4096")
        if self.num_classes is not None:
            _int("num_classes", self.num_classes, 1, "the number of classes, or None", "num_classes=10")
        if self.run_dir is not None:
            if not isinstance(self.run_dir, (str, os.PathLike)):
                _fail(TypeError, "run_dir", self.run_dir, "a folder path (str or Path) or None", "run_dir='runs/a'")
            object.__setattr__(self, "run_dir", os.fspath(self.run_dir))
        for name in ("per_rank", "activations", "inputs"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                _fail(TypeError, name, value, "True, False or None (auto)", f"{name}=True")
        if self.objective is not None and self.objective not in OBJECTIVES:
            _fail(ValueError, "objective", self.objective, f"None (inferred) or one of {OBJECTIVES}", "objective='gan'")
        if not (self.display is None or isinstance(self.display, bool) or self.display in DISPLAY_MODES):
            _fail(ValueError, "display", self.display, VALID_DISPLAY, "display='inline'")

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain values (the run manifest's ``config``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WatchConfig:
        """A config from :meth:`as_dict`'s output; keys this version does not know (a newer writer) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def replace(self, **changes: Any) -> WatchConfig:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


def _int(name: str, value: Any, low: int, meaning: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(TypeError, name, value, f"an int >= {low} ({meaning})", example)
    if value < low:
        _fail(ValueError, name, value, f"an int >= {low} ({meaning})", example)


def _fail(error: type[Exception], name: str, value: Any, expected: str, example: str) -> None:
    raise error(f"got {name}={value!r}, expected {expected}; try watch(..., {example})")
