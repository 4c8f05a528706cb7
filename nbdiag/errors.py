"""nbdiag's warning class: the bottom of the layers, so every module can warn without importing ``monitor``."""

from __future__ import annotations


class NbdiagWarning(UserWarning):
    """Something about how nbdiag is used that the user should know; training is never interrupted."""
