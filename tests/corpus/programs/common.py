"""The loop most programs share: forward, loss, backward, (clip), step, zero_grad, ``mon.step(loss=...)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tests.corpus.harness import Program, step


def supervised_loop(model, optimizer, batches, loss_fn, *, key="model", clip=None, scheduler=None, forward=None):
    """The classic loop; ``forward(model, x)`` replaces ``model(x)`` when given."""

    def train(monitors):
        losses = []
        model.train()
        for x, y in batches:
            optimizer.zero_grad()
            out = forward(model, x) if forward is not None else model(x)
            loss = loss_fn(out, y)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
            step(monitors, key, loss=loss)
        return losses

    return train


def classifier(model: nn.Module, optimizer, batches, loss_fn: Callable | None = None, **kw) -> Program:
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    """A classifier with preflight on its first 8 batches."""
    return Program(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, loss_fn, **kw),
        {"model": model, "data": batches[:8], "loss_fn": loss_fn, "optimizer": optimizer},
    )


def regression(model: nn.Module, optimizer, batches, **kw) -> Program:
    return classifier(model, optimizer, batches, nn.MSELoss(), **kw)


def as_loss_list(values) -> list[torch.Tensor]:
    return [torch.as_tensor(v).detach() for v in values]
