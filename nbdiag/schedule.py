"""Which steps are sampled: the first ``dense`` steps (init problems show there), then every ``every``-th."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """``sampled(step)`` is True for ``step < dense`` and for multiples of ``every``."""

    every: int = 10
    dense: int = 10

    def __post_init__(self) -> None:
        for name in ("every", "dense"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1 (sample every N-th step), got {self.every}; try every=10")
        if self.dense < 0:
            raise ValueError(f"dense must be >= 0 (number of first steps sampled), got {self.dense}")

    def sampled(self, step: int) -> bool:
        return step < self.dense or step % self.every == 0
