"""Tiny models for the bug zoo, clean and with planted bugs."""

from __future__ import annotations

import torch
from torch import nn

FEATURES, HIDDEN, CLASSES = 64, 32, 10


def mlp(outputs: int = CLASSES, features: int = FEATURES, hidden: int = HIDDEN) -> nn.Sequential:
    """features -> hidden -> ReLU -> outputs."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


def cnn() -> nn.Sequential:
    """Digits as (N, 64) -> (N, 1, 8, 8) -> conv + batch norm + ReLU + pool -> dropout -> linear."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 8, 4, 4)
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(8 * 4 * 4, CLASSES),
    )


def mlp_with_dropout() -> nn.Sequential:
    """features -> hidden -> ReLU -> dropout -> classes."""
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Dropout(0.3), nn.Linear(HIDDEN, CLASSES))


class BatchMixingMLP(nn.Module):
    """Bug: reshapes the hidden layer (B, H) to (H, B) and transposes back, mixing samples."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, HIDDEN), nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))  # (B, H)
        h = h.reshape(h.shape[1], h.shape[0]).t()  # (B, H) again, but rows now mix samples
        return self.fc2(h)


class DetachedMLP(nn.Module):
    """Bug: the hidden layer's output is detached, so fc1 never receives a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, HIDDEN), nn.Linear(HIDDEN, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)).detach())


def deep_mlp(
    depth: int, std: float | None, activation: type[nn.Module] = nn.Tanh, width: int = HIDDEN
) -> nn.Sequential:
    """``depth`` layers of ``width`` + ``activation`` with weights ~ N(0, std^2) and zero biases (std None: PyTorch's
    default init), then a linear head. No normalization, so init scale compounds with depth."""
    layers: list[nn.Module] = []
    features = FEATURES
    for _ in range(depth):
        linear = nn.Linear(features, width)
        if std is not None:
            nn.init.normal_(linear.weight, std=std)
            nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
        features = width
    return nn.Sequential(*layers, nn.Linear(width, CLASSES))


class DigitsLSTM(nn.Module):
    """Digits as 8 time steps of 8 pixels: (N, 64) -> (N, 8, 8) -> LSTM -> last hidden state -> classes."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.reshape(len(x), 8, 8))  # (N, 8, hidden)
        return self.head(out[:, -1])


class ClippedHead(nn.Module):
    """Bug: the classifier's head ends in an activation (``self.head.act``) that clips the logits."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU())
        self.head = nn.Sequential()
        self.head.add_module("fc", nn.Linear(HIDDEN, CLASSES))
        self.head.add_module("act", activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
