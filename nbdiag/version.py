"""The package version, importable from every layer (``runs/writer.py`` stamps it into run manifests)."""

from __future__ import annotations

__version__ = "0.1.0"
