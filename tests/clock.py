"""A fake clock for throttles: the test moves time itself, so no verdict depends on how loaded the machine is."""

from __future__ import annotations


class FakeClock:
    """Reads ``now``; each read then moves it on by ``per_read`` (a CPU clock whose every measured span costs that)."""

    def __init__(self, now: float = 100.0, per_read: float = 0.0) -> None:
        self.now, self.per_read = now, per_read

    def __call__(self) -> float:
        read = self.now
        self.now += self.per_read
        return read

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __deepcopy__(self, memo: dict) -> FakeClock:
        return self  # one time for all: a model copied by the code under test still moves this clock
