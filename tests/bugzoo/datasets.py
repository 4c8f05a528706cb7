"""Small data sets for the bug zoo: sklearn's digits (8x8 images, 10 classes) and a generated regression."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

BATCH_SIZE = 64
TRAIN_SAMPLES = 1400  # of the 1797 digits; the rest is validation


@cache
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64)  # (1797, 64) in 0..16, (1797,)


def digits(standardize: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val); inputs standardized with the training mean/std, or raw 0..16."""
    x, y = _digits_raw()
    order = np.random.default_rng(0).permutation(len(x))
    x, y = torch.from_numpy(x[order]), torch.from_numpy(y[order])
    if standardize:
        mean, std = x[:TRAIN_SAMPLES].mean(0), x[:TRAIN_SAMPLES].std(0)
        x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
    return x[:TRAIN_SAMPLES], y[:TRAIN_SAMPLES], x[TRAIN_SAMPLES:], y[TRAIN_SAMPLES:]


def regression(samples: int = 768, features: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardized inputs (N, features) and targets (N, 1) = a fixed linear map + noise, standardized."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=generator)
    w = torch.randn(features, 1, generator=generator)
    y = x @ w + 0.1 * torch.randn(samples, 1, generator=generator)
    return x, (y - y.mean()) / y.std()


def loader(x: torch.Tensor, y: torch.Tensor, shuffle: bool = True, batch_size: int = BATCH_SIZE) -> DataLoader:
    """A DataLoader over (x, y) with its own seeded generator."""
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator)


class RepeatingLoader:
    """A buggy loader: its index never advances, so it yields the first batch ``times`` times."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, times: int = 20, batch_size: int = BATCH_SIZE):
        self.x, self.y, self.times, self.batch_size = x, y, times, batch_size

    def __iter__(self):
        for _ in range(self.times):
            yield self.x[: self.batch_size], self.y[: self.batch_size]

    def __len__(self) -> int:
        return self.times
