"""A simulated IPython kernel for display tests: ``get_ipython()`` answers a shell with a kernel, and
``IPython.display.display`` records what would be sent to the front end (display and update messages)."""

from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Message:
    kind: str  # "display" or "update"
    at: float  # time.monotonic()
    bundle: dict[str, Any]
    display_id: int


@dataclass
class FrontEnd:
    """What the simulated kernel sent, in order."""

    messages: list[Message] = field(default_factory=list)

    def display(self, obj: Any, raw: bool = False, display_id: Any = None, **_: Any) -> Any:
        if hasattr(obj, "_ipython_display_"):  # as IPython does: the object displays itself
            return obj._ipython_display_()
        assert raw and isinstance(obj, dict), "nbdiag displays raw mime bundles"
        number = len({m.display_id for m in self.messages})
        self.messages.append(Message("display", time.monotonic(), obj, number))
        return _Handle(self, number) if display_id else None

    def bundles(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [m.bundle for m in self.messages if kind is None or m.kind == kind]


@dataclass
class _Handle:
    front_end: FrontEnd
    number: int

    def update(self, obj: dict[str, Any], raw: bool = False, **_: Any) -> None:
        assert raw and isinstance(obj, dict)
        self.front_end.messages.append(Message("update", time.monotonic(), obj, self.number))


def simulate_kernel(monkeypatch: pytest.MonkeyPatch, front: str = "jupyter") -> FrontEnd:
    """Make this process look like a kernel serving ``front`` ("jupyter", "vscode" or "colab")."""
    import IPython
    import IPython.display

    recorder = FrontEnd()
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object(), execution_count=1))
    monkeypatch.setattr(IPython.display, "display", recorder.display)
    monkeypatch.delenv("VSCODE_PID", raising=False)
    monkeypatch.delenv("NBDIAG_DISPLAY", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if front == "vscode":
        monkeypatch.setenv("VSCODE_PID", "4242")
    elif front == "colab":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    return recorder
