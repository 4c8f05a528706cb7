"""The main job on embedded data: a small CNN learns scikit-learn's 8x8 digits under ``nbdiag.watch``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


def digits_tensors(seed: int = 0):
    """Digits as (N, 1, 8, 8) float tensors scaled to zero mean / unit std on the training split, and int64 labels.

    Returns:
        ``(x_train, y_train, x_val, y_val)``.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    mean, std = x[:split].mean(), x[:split].std()  # statistics of the training split only
    x = (x - mean) / std
    return x[:split], y[:split], x[split:], y[split:]


def digits_cnn() -> nn.Module:
    """A small CNN for 8x8 digits: conv-bn-relu x2, pool, dropout, linear."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(32 * 4 * 4, 10),
    )


def run_demo(steps: int = 300, out: Path | str = "nbdiag-demo", seed: int = 0) -> object:
    """Train under ``nbdiag.watch``, print the per-layer summary and findings, write what views exist.

    Returns:
        The closed :class:`nbdiag.Monitor`.
    """
    import nbdiag

    torch.manual_seed(seed)
    x_train, y_train, x_val, y_val = digits_tensors(seed)
    model = digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fixed = (x_val[:32], y_val[:32])
    with nbdiag.watch(model, opt, every=10, fixed_batch=fixed, num_classes=10, display=False) as mon:
        for _ in range(steps):
            idx = torch.randint(0, len(x_train), (64,))
            logits = model(x_train[idx])
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc = (logits.argmax(1) == y_train[idx]).float().mean()
            mon.step(loss=loss, acc=acc)
    model.eval()
    with torch.no_grad():
        val_acc = (model(x_val).argmax(1) == y_val).float().mean().item()
    print(mon)
    print(f"\nvalidation accuracy after {steps} steps: {val_acc:.3f}")
    _write_outputs(mon, Path(out))
    return mon


def _write_outputs(mon, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mon.frame().to_csv(out / "stats.csv", index=False)
    written = [out / "stats.csv"]
    for method, name in (("savefig", "dashboard.png"), ("to_html", "report.html")):
        if hasattr(mon, method):
            getattr(mon, method)(out / name)
            written.append(out / name)
    print("wrote " + ", ".join(str(p) for p in written))
