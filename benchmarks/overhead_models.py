"""The models and data of the overhead benchmark: two CPU cases and two GPU cases (no torchvision, no downloads).

Each case is a ``Case``: a model factory, a fixed pool of batches, the loss, and whether to run under bf16 autocast.
``smoke=True`` shrinks the GPU cases (depth, width, batch, resolution) so they run on a CPU in a test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Case:
    """One benchmark case: what every method trains, on identical data."""

    name: str
    build: Callable[[], nn.Module]
    batches: list[Batch]
    amp: bool  # bf16 autocast
    description: str

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy; sequence outputs (B, T, V) are flattened to (B*T, V)."""
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction=reduction)


# --- CPU cases -------------------------------------------------------------------------------------------------


def small_cnn() -> nn.Module:
    """Three 3x3 convolutions (8, 16, 16 channels) on 16x16 single-channel images, two linear layers."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def mlp() -> nn.Module:
    """256 -> 512 -> 512 -> 10 with ReLU."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def image_batches(n: int, batch_size: int, channels: int, size: int, classes: int, device: str) -> list[Batch]:
    """``n`` random image batches with labels, generated from the current RNG state."""
    return [
        (
            torch.randn(batch_size, channels, size, size, device=device),
            torch.randint(0, classes, (batch_size,), device=device),
        )
        for _ in range(n)
    ]


# --- GPU case 1: ResNet-50-like CNN ----------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, 3x3 (stride here), 1x1 expand (x4), projection shortcut when needed."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-style ResNet with bottleneck blocks; ``blocks=(3, 4, 6, 3), base=64`` is ResNet-50 (25.6M params)."""

    def __init__(self, blocks: tuple[int, ...] = (3, 4, 6, 3), base: int = 64, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(base),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers, in_ch = [], base
        for i, n in enumerate(blocks):
            width = base * 2**i
            for j in range(n):
                layers.append(Bottleneck(in_ch, width, stride=2 if (i > 0 and j == 0) else 1))
                in_ch = width * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


# --- GPU case 2: GPT-2-small-like transformer ------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (fused qkv projection, scaled_dot_product_attention)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), x + mlp(ln(x)), MLP 4d with GELU."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT-2 layout: token + learned position embeddings, ``layers`` blocks, final LayerNorm, head tied to wte.

    The defaults are GPT-2 small (124M parameters).
    """

    def __init__(self, vocab: int = 50257, context: int = 1024, d: int = 768, heads: int = 12, layers: int = 12):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.blocks = nn.Sequential(*(Block(d, heads) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.ln_f(self.blocks(self.wte(idx) + self.wpe(pos))))


def token_batches(n: int, batch_size: int, seq: int, vocab: int, device: str) -> list[Batch]:
    """``n`` random token batches: inputs and next-token targets."""
    out = []
    for _ in range(n):
        tokens = torch.randint(0, vocab, (batch_size, seq + 1), device=device)
        out.append((tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()))
    return out


# --- registry ---------------------------------------------------------------------------------------------------

CPU_MODELS = ("mlp", "cnn")
GPU_MODELS = ("resnet50", "gpt2")
MODELS = CPU_MODELS + GPU_MODELS


def make_case(name: str, *, steps: int, device: str, smoke: bool = False, batch_size: int | None = None) -> Case:
    """Build case ``name``; the batch pool has ``steps`` batches for CPU cases and at most 8 for GPU cases."""
    torch.manual_seed(0)
    if name in CPU_MODELS:
        bs = batch_size or (16 if smoke else 64)
        build = mlp if name == "mlp" else small_cnn
        desc = f"{name}, batch {bs}, 1x16x16 inputs, fp32"
        return Case(name, build, image_batches(steps, bs, 1, 16, 10, device), False, desc)
    pool = min(steps, 8)  # distinct batches cycled: the same for every method, bounded device memory
    if name == "resnet50":
        blocks, base, size, bs = ((1, 1, 1, 1), 4, 32, 2) if smoke else ((3, 4, 6, 3), 64, 224, 128)
        bs = batch_size or bs

        def build() -> nn.Module:
            return ResNet(blocks, base, classes=10 if smoke else 1000)

        desc = f"ResNet blocks {list(blocks)} base {base}, batch {bs}, 3x{size}x{size}, bf16 autocast"
        return Case(name, build, image_batches(pool, bs, 3, size, 10 if smoke else 1000, device), True, desc)
    if name == "gpt2":
        vocab, seq, d, heads, layers, bs = (64, 16, 32, 2, 2, 2) if smoke else (50257, 512, 768, 12, 12, 8)
        bs = batch_size or bs

        def build() -> nn.Module:
            return GPT(vocab, seq if smoke else 1024, d, heads, layers)

        desc = f"GPT {layers} layers d={d} {heads} heads vocab {vocab}, batch {bs}x{seq}, bf16 autocast"
        return Case(name, build, token_batches(pool, bs, seq, vocab, device), True, desc)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
