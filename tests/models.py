"""Small models with the awkward shapes real code has: in-place ops, sharing, tuples, dicts, dataclasses, LSTMs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def small_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(16 * 4 * 4, num_classes),
    )


class Shared(nn.Module):
    """One Linear called twice per forward (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 6)
        self.shared = nn.Linear(6, 6)
        self.act = nn.Tanh()
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        x = self.act(self.shared(self.inp(x)))
        return self.out(self.act(self.shared(x)))


class Tied(nn.Module):
    """Embedding and output projection share one weight (tied weights)."""

    def __init__(self, vocab: int = 11, dim: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, vocab, bias=False)
        self.proj.weight = self.embed.weight

    def forward(self, tokens):
        return self.proj(torch.tanh(self.embed(tokens))).mean(dim=1)


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 8)

    def forward(self, x):
        h = self.lin(x)
        return h, {"double": 2 * h, "ints": torch.arange(3)}


@dataclass
class Output:
    logits: torch.Tensor
    features: torch.Tensor


class DataclassOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        y = self.lin(x)
        return Output(logits=y, features=torch.relu(y))


class Composite(nn.Module):
    """Tuple-, dict- and dataclass-returning leaves, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.tup = TupleOut()
        self.dc = DataclassOut()
        self.head = nn.Linear(8 + 8 + 3, 3)

    def forward(self, x):
        h, extra = self.tup(x)
        out = self.dc(x)
        return self.head(torch.cat([h, extra["double"], out.features], dim=1))


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True)
        self.head = nn.Linear(7, 2)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1])


def deep_mlp(depth: int, width: int = 8) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 2))
