"""What the model sees: a bounded sample of the tensor entering model.forward, copied with the step's flush."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import nbdiag
from nbdiag.inputs import MAX_SAMPLES, input_kind


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 3, **watch):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with nbdiag.watch(model, opt, every=1, display=False, **watch) as mon:
        for _ in range(steps):
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss=1.0)
            with torch.no_grad():
                model(x.flip(0))  # an evaluation pass (other samples first): not what the model trains on
    return mon


def test_image_inputs_are_kept_as_images_with_their_range():
    x = torch.rand(20, 3, 8, 8)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2))
    sample = _train(model, x, torch.randint(0, 2, (20,))).inputs()
    assert sample.kind == "images" and sample.values.shape == (MAX_SAMPLES, 3, 8, 8)
    np.testing.assert_allclose(sample.values, x[:MAX_SAMPLES].double().numpy(), rtol=1e-7)
    assert "images" in str(sample) and f"{float(x[:MAX_SAMPLES].max()):.4g}" in str(sample)


def test_tabular_inputs_give_per_feature_mean_and_std():
    x = torch.randn(16, 5) * torch.tensor([1.0, 2, 3, 4, 100])
    sample = _train(nn.Sequential(nn.Linear(5, 2)), x, torch.randint(0, 2, (16,))).inputs()
    features = sample.features()
    assert sample.kind == "tabular"
    np.testing.assert_allclose(features["std"], x[:MAX_SAMPLES].double().std(0, unbiased=False).numpy(), rtol=1e-6)


def test_token_ids_and_kinds():
    assert input_kind((12,), "int64") == "token ids"
    assert input_kind((32, 32, 3), "float32") == "images (channels last)"
    ids = torch.randint(0, 50, (10, 6))
    model = nn.Sequential(nn.Embedding(50, 4), nn.Flatten(), nn.Linear(24, 2))
    sample = _train(model, ids, torch.randint(0, 2, (10,))).inputs()
    assert sample.kind == "token ids" and (sample.values == ids[:MAX_SAMPLES].numpy()).all()


def test_off_by_default_in_run_directories_unless_asked(tmp_path):
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    assert _train(nn.Linear(4, 2), x, y, run_dir=str(tmp_path / "a")).inputs() is None
    assert _train(nn.Linear(4, 2), x, y, run_dir=str(tmp_path / "b"), inputs=True).inputs() is not None


def test_sampling_inputs_changes_nothing_and_leaves_no_hook():
    def losses(watched: bool) -> list[float]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        mon = nbdiag.watch(model, opt, every=2, display=False) if watched else None
        out = []
        for _ in range(5):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(float(loss.detach()))
            if mon is not None:
                mon.step(loss=loss)
        if mon is not None:
            mon.close()
            assert not model._forward_pre_hooks
        return out

    assert losses(True) == losses(False)
