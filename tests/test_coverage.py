"""Coverage of layers that are not plain leaves: attention, parametrized weights, third-party activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

import nbdiag
from nbdiag.activation_types import activation_kind, register_activation
from nbdiag.probe import leaf_modules


def activations(mon) -> dict[str, dict[str, float]]:
    frame = mon.frame().query("kind == 'activation' and step == 0")
    return {layer: dict(zip(g.stat, g.value, strict=True)) for layer, g in frame.groupby("layer")}


def test_self_attention_inside_a_transformer_layer_is_recorded_with_its_output():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    seen = {}
    layer.self_attn.register_forward_hook(lambda m, i, o: seen.update(out=o[0].detach().clone()))
    with nbdiag.watch(layer, every=1, display=False) as mon:
        layer(torch.randn(4, 5, 16)).sum().backward()
        mon.step()
    stats = activations(mon)["self_attn"]
    assert stats["mean"] == pytest.approx(seen["out"].mean().item(), abs=1e-6)
    assert stats["std"] == pytest.approx(seen["out"].std(correction=0).item(), rel=1e-4)
    assert "self_attn" in set(mon.frame().query("kind == 'gradient'").layer)
    assert not any("out_proj" in name for name in mon.layers)  # never called as a module: no empty row


def test_multihead_attention_weights_are_their_own_row():
    mha = nn.MultiheadAttention(8, 2)
    with nbdiag.watch(mha, every=1, display=False) as mon:
        x = torch.randn(3, 2, 8)
        out, _ = mha(x, x, x)
        out.sum().backward()
        mon.step()
    stats = activations(mon)
    assert set(stats) == {"MultiheadAttention", "MultiheadAttention/weights"}
    assert stats["MultiheadAttention/weights"]["mean"] == pytest.approx(1 / 3, abs=1e-6)  # softmax rows sum to 1


@pytest.mark.parametrize("norm", [parametrizations.weight_norm, parametrizations.spectral_norm])
def test_parametrized_layers_are_recorded_and_their_parametrization_is_not(norm):
    model = nn.Sequential(norm(nn.Linear(4, 8)), nn.ReLU(), norm(nn.Conv1d(1, 2, 3)))
    assert [name for name, _ in leaf_modules(model)] == ["0", "1", "2"]
    first = {}
    model[0].register_forward_hook(lambda m, i, o: first.update(out=o.detach().clone()))
    with nbdiag.watch(model, every=1, display=False) as mon:
        hidden = model[1](model[0](torch.randn(5, 4)))
        model[2](hidden.unsqueeze(1)).sum().backward()
        mon.step()
    stats = activations(mon)
    assert set(stats) == {"0", "1", "2"} and mon.record.meta.layer_types["0"] == "Linear"
    assert stats["0"]["mean"] == pytest.approx(first["out"].mean().item(), abs=1e-6)
    assert not any("parametrizations" in layer for layer in mon.frame().query("kind != 'weight'").layer)


def collapsing_net(activation: type[nn.Module]) -> nn.Sequential:
    """Eight layers at std 0.01 init: each layer shrinks the activation std ~20x (seeds/004's small-init net)."""
    layers = []
    for _ in range(8):
        linear = nn.Linear(32, 32)
        nn.init.normal_(linear.weight, std=0.01)
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
    return nn.Sequential(*layers)


def collapse_findings(activation: type[nn.Module]) -> list:
    model = collapsing_net(activation)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with nbdiag.watch(model, optimizer, every=1, display=False) as mon:
        for _ in range(6):
            model(torch.randn(16, 32)).pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            mon.step()
    return [f for f in mon.findings() if f.id == "act.collapse"]


def test_hugging_face_activations_are_activations():
    activations_module = pytest.importorskip("transformers.activations")
    for name in ("GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation"):
        assert activation_kind(getattr(activations_module, name)()) == "smooth", name
    assert activation_kind(activations_module.ClippedGELUActivation(-3, 3)) == "bounded"
    assert activation_kind(nn.Linear(2, 2)) is None
    reference, hf = collapse_findings(nn.GELU), collapse_findings(activations_module.NewGELUActivation)
    assert reference and hf and hf[0].layer == reference[0].layer  # the same planted collapse, found the same


class ScaledTanh(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * torch.tanh(x)


def test_registered_activations_get_their_kind_and_bounds():
    register_activation(ScaledTanh, kind="bounded", bounds=lambda m: (-m.scale, m.scale))
    model = nn.Sequential(nn.Linear(4, 64), ScaledTanh(3.0), nn.Linear(64, 1))
    nn.init.normal_(model[0].weight, std=10.0)  # pre-activations far beyond tanh's knee: most outputs at +-3
    with nbdiag.watch(model, every=1, display=False) as mon:
        model(torch.randn(32, 4)).sum().backward()
        mon.step()
    assert mon.record.meta.activation_kinds == {"1": "bounded"}
    assert activations(mon)["1"]["saturated_frac"] > 0.5
    assert "saturated_frac" not in activations(mon)["0"]  # NaN (left out of the frame): unbounded


def test_register_activation_rejects_bad_input():
    with pytest.raises(ValueError, match="expected one of"):
        register_activation(ScaledTanh, kind="tanh-like")
    with pytest.raises(ValueError, match="without bounds"):
        register_activation(ScaledTanh, kind="bounded")
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_activation(int, kind="smooth")
