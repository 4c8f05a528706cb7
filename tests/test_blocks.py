"""Repeated blocks and each layer's role within its block, recognised from layer names and types (nbdiag.blocks)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn

from nbdiag.blocks import find_blocks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from overhead_models import GPT  # noqa: E402


def leaves(model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """The model's leaf modules (what nbdiag hooks), in registration order, and their type names."""
    names = [name for name, m in model.named_modules() if name and not list(m.children())]
    types = {name: type(m).__name__ for name, m in model.named_modules() if name in names}
    return names, types


GPT_ROLES = ("ln1", "attn.qkv", "attn.proj", "ln2", "mlp.0", "mlp.1", "mlp.2")


def test_a_48_block_gpt_has_48_blocks_of_7_roles_and_its_embeddings_and_head_outside():
    names, types = leaves(GPT(vocab=64, context=32, d=64, heads=4, layers=48))
    assert len(names) == 340  # the 340-layer proxy
    found = find_blocks(names, types)
    assert found.blocks == tuple(f"blocks.{i}" for i in range(48))
    assert found.roles == GPT_ROLES  # forward order of the block's leaves
    assert found.locate("blocks.11.attn.qkv") == (11, "attn.qkv")
    assert found.locate("blocks.47.mlp.1") == (47, "mlp.1")
    for outside in ("wte", "wpe", "ln_f", "head"):
        assert found.locate(outside) is None
    assert found.of_role("mlp.1") == [f"blocks.{i}.mlp.1" for i in range(48)]
    assert found.of_block(3) == [f"blocks.3.{role}" for role in GPT_ROLES]
    assert len(found.layers) == 48 * 7


def test_hugging_face_gpt2_blocks_are_its_h_children():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=4, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    names, types = leaves(transformers.GPT2Model(config))
    found = find_blocks(names, types)
    assert found.blocks == ("h.0", "h.1", "h.2", "h.3")
    block_leaves = [name.split(".", 2)[2] for name in names if name.startswith("h.0.")]
    assert list(found.roles) == block_leaves  # every leaf of a block, in order: ln_1, attn.c_attn, ..., mlp.act
    assert {"ln_1", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "mlp.act"} <= set(found.roles)
    assert found.locate("h.2.mlp.c_fc") == (2, "mlp.c_fc")
    assert found.locate("wte") is None and found.locate("ln_f") is None


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, stride=1 if c_in == c_out else 2)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            None if c_in == c_out else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2), nn.BatchNorm2d(c_out))
        )


class ResNetLike(nn.Module):
    """ResNet-18's layout at toy width: a stem, two stages of two BasicBlocks (the second stage's first block has a
    downsample), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16), BasicBlock(16, 16))
        self.fc = nn.Linear(16, 10)


def test_resnet_stages_are_numbered_on_and_a_downsample_is_a_role_only_its_block_has():
    names, types = leaves(ResNetLike())
    found = find_blocks(names, types)
    assert found.blocks == ("layer1.0", "layer1.1", "layer2.0", "layer2.1")
    assert found.roles == ("conv1", "bn1", "relu", "conv2", "bn2", "downsample.0", "downsample.1")
    assert found.of_role("downsample.0") == [None, None, "layer2.0.downsample.0", None]
    assert found.of_role("conv2") == ["layer1.0.conv2", "layer1.1.conv2", "layer2.0.conv2", "layer2.1.conv2"]
    assert found.locate("conv1") is None and found.locate("fc") is None  # the stem and head are no block


def test_plain_models_have_no_blocks():
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 10), nn.Softmax(1)
    )
    for model in (mlp, cnn):
        assert find_blocks(*leaves(model)) is None


def test_children_of_different_structure_are_no_blocks():
    # an encoder and a decoder of one block each, and numbered children that differ: nothing repeats
    names = ["enc.0.fc", "enc.0.act", "dec.0.fc", "dec.0.norm", "stack.0.fc", "stack.0.act", "stack.1.fc"]
    types = {"enc.0.fc": "Linear", "enc.0.act": "ReLU", "dec.0.fc": "Linear", "dec.0.norm": "LayerNorm"}
    types |= {"stack.0.fc": "Linear", "stack.0.act": "GELU", "stack.1.fc": "Linear"}
    assert find_blocks(names, types) is None
    # the same roles with another layer type are another structure
    names = ["s.0.fc", "s.0.act", "s.1.fc", "s.1.act"]
    assert find_blocks(names, {"s.0.fc": "Linear", "s.0.act": "ReLU", "s.1.fc": "Linear", "s.1.act": "Tanh"}) is None
    assert len(find_blocks(names, {n: "ReLU" if n.endswith("act") else "Linear" for n in names})) == 2


def test_per_rank_rows_and_layer_outputs():
    names = ["h.0.lstm/0", "h.0.lstm/1", "h.1.lstm/0", "h.1.lstm/1", "h.1.lstm/0@rank1"]
    found = find_blocks(names, {})
    assert found.roles == ("lstm/0", "lstm/1")
    assert found.locate("h.1.lstm/1") == (1, "lstm/1")
    assert found.locate("h.1.lstm/0@rank1") is None  # a rank's own row is not laid out by depth
