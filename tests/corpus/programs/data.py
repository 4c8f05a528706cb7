"""Generated and bundled data for the corpus (nothing is downloaded): digits, token chains, sine waves, graphs,
and a small CartPole (the classic-control equations) for the reinforcement-learning programs."""

from __future__ import annotations

import functools
import math

import torch


@functools.cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's bundled 8x8 digits as (N, 1, 8, 8) floats in [0, 1] and int labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.tensor(data.target)


def normalized_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits normalised with the set's mean and std, like ``transforms.Normalize((0.1307,), (0.3081,))``."""
    x, y = digits()
    return (x - x.mean()) / x.std(), y


def digit_batches(n: int, batch: int = 32, normalize: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` shuffled batches (a DataLoader with shuffle=True, drop_last=True)."""
    x, y = normalized_digits() if normalize else digits()
    order = torch.randperm(len(x))
    return [(x[i], y[i]) for i in order[: n * batch].split(batch)]


def markov_chain(vocab: int, branching: int = 3) -> torch.Tensor:
    """A random sparse next-token table: a sequence from it has learnable structure."""
    return torch.randint(1, vocab, (vocab, branching))


def markov_tokens(n_seq: int, length: int, vocab: int, table: torch.Tensor | None = None) -> torch.Tensor:
    """(n_seq, length) token ids in 1..vocab-1 walked on a sparse Markov chain."""
    table = markov_chain(vocab) if table is None else table
    tokens = torch.empty(n_seq, length, dtype=torch.long)
    tokens[:, 0] = torch.randint(1, vocab, (n_seq,))
    for t in range(1, length):
        pick = torch.randint(0, table.shape[1], (n_seq,))
        tokens[:, t] = table[tokens[:, t - 1], pick]
    return tokens


def sine_waves(n: int, length: int, period: float = 20.0) -> torch.Tensor:
    """time_sequence_prediction/generate_sine_wave.py: sin of shifted ramps, (n, length) float64."""
    x = torch.arange(length, dtype=torch.float64) + torch.randint(-4 * int(period), 4 * int(period), (n, 1))
    return torch.sin(x / 1.0 / period)


def two_moons(n: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=noise, random_state=int(torch.randint(0, 2**16, ())))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def community_graph(n_nodes: int = 60, n_classes: int = 3, n_feat: int = 16, p_in: float = 0.25, p_out: float = 0.02):
    """A stochastic block model: node labels are communities, features are noisy class means. Returns
    (features, adjacency with self loops, labels, train mask)."""
    labels = torch.arange(n_nodes) % n_classes
    same = labels[:, None] == labels[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu((torch.rand(n_nodes, n_nodes) < prob).float(), 1)
    adj = upper + upper.T + torch.eye(n_nodes)
    means = torch.randn(n_classes, n_feat)
    feats = means[labels] * 0.5 + torch.randn(n_nodes, n_feat)
    train_mask = torch.rand(n_nodes) < 0.5
    return feats, adj, labels, train_mask


def normalize_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """D^-1/2 A D^-1/2 (Kipf and Welling)."""
    d = adj.sum(1).rsqrt()
    return d[:, None] * adj * d[None, :]


class CartPole:
    """gymnasium's CartPole-v1 dynamics (Euler), observations as float32 tensors, episodes capped at ``max_steps``."""

    def __init__(self, max_steps: int = 100) -> None:
        self.max_steps = max_steps
        self.state = torch.zeros(4)
        self.t = 0

    def reset(self) -> torch.Tensor:
        self.state = (torch.rand(4) - 0.5) * 0.1
        self.t = 0
        return self.state.float().clone()

    def step(self, action: int) -> tuple[torch.Tensor, float, bool]:
        x, x_dot, theta, theta_dot = (float(v) for v in self.state)
        force = 10.0 if action == 1 else -10.0
        cos, sin = math.cos(theta), math.sin(theta)
        temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        x, x_dot = x + 0.02 * x_dot, x_dot + 0.02 * x_acc
        theta, theta_dot = theta + 0.02 * theta_dot, theta_dot + 0.02 * theta_acc
        self.state = torch.tensor([x, x_dot, theta, theta_dot])
        self.t += 1
        done = abs(x) > 2.4 or abs(theta) > 12 * 2 * math.pi / 360 or self.t >= self.max_steps
        return self.state.float().clone(), 1.0, done
