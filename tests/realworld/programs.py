"""Small, correct training programs in the styles of pytorch/examples and Hugging Face (written for these tests).

Each ``make_*`` builds a :class:`~tests.realworld.harness.Setup` from seed 0; loops are short and models tiny so the
whole suite stays within about two minutes of CI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

from tests.realworld.harness import Setup, step


@functools.cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8x8 digits, standardised per pixel over the set, as (N, 1, 8, 8) floats and int labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-3)
    return x, torch.tensor(data.target)


def digit_batches(n: int, batch: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = digits()
    order = torch.randperm(len(x))
    return [(x[i], y[i]) for i in order[: n * batch].split(batch)]


def markov_tokens(n_seq: int, length: int, vocab: int, pad_lengths: bool = False) -> list[torch.Tensor]:
    """Sequences from a random sparse Markov chain over tokens 1..vocab-1 (0 is padding): learnable next tokens."""
    table = torch.randint(1, vocab, (vocab, 3))
    sequences = []
    for _ in range(n_seq):
        n = int(torch.randint(length // 2, length + 1, ())) if pad_lengths else length
        tokens = [int(torch.randint(1, vocab, ()))]
        for _ in range(n - 1):
            tokens.append(int(table[tokens[-1], torch.randint(0, 3, ())]))
        sequences.append(torch.tensor(tokens))
    return sequences


def supervised_loop(model, optimizer, batches, loss_fn, key="model", clip=None, scheduler=None):
    """The classic loop: forward, loss, backward, (clip), step, zero_grad, mon.step."""

    def train(monitors):
        losses = []
        model.train()
        for x, y in batches:
            loss = loss_fn(model(x), y)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
            step(monitors, key, loss=loss)
        return losses

    return train


# -- pytorch/examples mnist ---------------------------------------------------------------------------------------
class DigitNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(F.relu(self.fc1(x)))


def classifier_setup(model, optimizer, batches) -> Setup:
    """A plain classifier: cross-entropy training loop, preflight on the first 8 batches."""
    return Setup(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, F.cross_entropy),
        {"model": model, "data": batches[:8], "loss_fn": nn.CrossEntropyLoss(), "optimizer": optimizer},
    )


def make_mnist_cnn() -> Setup:
    model = DigitNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    batches = digit_batches(24)
    return classifier_setup(model, optimizer, batches)


def make_clipping_schedulers() -> Setup:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = digit_batches(24)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=len(batches))
    return Setup(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, F.cross_entropy, clip=1.0, scheduler=scheduler),
        {"model": model, "data": batches[:8], "loss_fn": nn.CrossEntropyLoss(), "optimizer": optimizer},
    )


def make_amp_bf16() -> Setup:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = digit_batches(24)

    def train(monitors):
        losses = []
        for x, y in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Setup(
        {"model": model},
        {"model": optimizer},
        train,
        {"model": model, "data": batches[:8], "loss_fn": nn.CrossEntropyLoss(), "optimizer": optimizer},
    )


def make_compiled() -> Setup:
    """``torch.compile`` (aot_eager: the same dynamo graph capture and AOT autograd as inductor, without C++ builds)."""
    torch._dynamo.reset()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    compiled = torch.compile(model, backend="aot_eager")
    batches = digit_batches(24)
    return Setup(
        {"model": compiled},
        {"model": optimizer},
        supervised_loop(compiled, optimizer, batches, F.cross_entropy),
        {"model": model, "data": batches[:8], "loss_fn": nn.CrossEntropyLoss(), "optimizer": optimizer},
        expected_warning="records parameters only",
    )


def make_freezing_schedule() -> Setup:
    """Fine-tuning style: the head trains first, the body is unfrozen at step 8, the first layer frozen at 18."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    model[1].requires_grad_(False)
    model[3].requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = digit_batches(30)

    def train(monitors):
        losses = []
        for i, (x, y) in enumerate(batches):
            if i == 8:
                model[1].requires_grad_(True)
                model[3].requires_grad_(True)
            if i == 18:
                model[1].requires_grad_(False)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Setup({"model": model}, {"model": optimizer}, train, None)


def make_grad_accumulation(micro: int) -> Callable:
    """Gradient accumulation over ``micro`` micro-batches, mon.step() after every micro-batch (as users do)."""

    def make() -> Setup:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        batches = digit_batches(2 * micro + 8, batch=16)

        def train(monitors):
            losses = []
            for i, (x, y) in enumerate(batches):
                loss = F.cross_entropy(model(x), y) / micro
                loss.backward()
                if (i + 1) % micro == 0:
                    optimizer.step()
                    optimizer.zero_grad()
                losses.append(loss.detach())
                step(monitors, "model", loss=loss * micro)
            return losses

        data = batches[:8]
        return Setup(
            {"model": model},
            {"model": optimizer},
            train,
            {"model": model, "data": data, "loss_fn": nn.CrossEntropyLoss(), "optimizer": optimizer},
        )

    make.__name__ = f"make_grad_accumulation_x{micro}"
    return make


# -- pytorch/examples word_language_model -------------------------------------------------------------------------
class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int, dim: int = 24, tie: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, num_layers=2, dropout=0.1, batch_first=True)
        self.decoder = nn.Linear(dim, vocab)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens, hidden=None):
        output, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(output), hidden


def make_lstm_lm() -> Setup:
    vocab = 16
    model = LSTMLanguageModel(vocab)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    stream = torch.cat(markov_tokens(8, 200, vocab)).reshape(8, -1)  # 8 parallel streams, truncated BPTT of 20

    def train(monitors):
        losses, hidden = [], None
        for start in range(0, stream.shape[1] - 21, 20):
            x, y = stream[:, start : start + 20], stream[:, start + 1 : start + 21]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    lm_batches = [(stream[:, s : s + 20], stream[:, s + 1 : s + 21]) for s in range(0, 160, 20)]
    return Setup(
        {"model": model},
        {"model": optimizer},
        train,
        {
            "model": model,
            "data": lm_batches,
            "loss_fn": lambda out, y: F.cross_entropy(out[0].reshape(-1, vocab), y.reshape(-1)),
            "optimizer": optimizer,
            "num_classes": vocab,
        },
    )


class PaddedTransformerLM(nn.Module):
    """word_language_model's TransformerModel, batch first, with a causal mask and a key-padding mask (pad = 0)."""

    def __init__(self, vocab: int, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, 64, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 2, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        n = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n)
        h = self.embed(tokens) + self.pos[:, :n]
        return self.head(self.encoder(h, mask=mask, src_key_padding_mask=tokens == 0, is_causal=True))


def make_transformer_lm_padding() -> Setup:
    vocab = 16
    model = PaddedTransformerLM(vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sequences = markov_tokens(192, 24, vocab, pad_lengths=True)
    padded = pad_sequence(sequences, batch_first=True)
    batches = [(b[:, :-1], b[:, 1:]) for b in padded.split(16)]

    def loss_fn(logits, y):
        return F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1), ignore_index=0)

    return Setup(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, loss_fn, clip=1.0),
        {"model": model, "data": batches[:8], "loss_fn": loss_fn, "optimizer": optimizer, "num_classes": vocab},
    )


class PackedLSTMClassifier(nn.Module):
    def __init__(self, vocab: int, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.rnn = nn.LSTM(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        lengths = (tokens != 0).sum(1)
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)
        return self.head(h[-1])


def make_packed_lstm() -> Setup:
    vocab, classes = 12, 4
    model = PackedLSTMClassifier(vocab, classes=classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    sequences = markov_tokens(512, 12, vocab, pad_lengths=True)
    # the class is the most frequent token residue: it needs the whole sequence, no single position decides it
    labels = torch.stack([torch.bincount(s % classes, minlength=classes).argmax() for s in sequences])
    padded = pad_sequence(sequences, batch_first=True)
    batches = list(zip(padded.split(32), labels.split(32), strict=True))
    return classifier_setup(model, optimizer, batches)


# -- pytorch/examples time_sequence_prediction: nn.LSTMCell in a Python loop ----------------------------------------
class Sequence(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.lstm1 = nn.LSTMCell(1, dim)
        self.lstm2 = nn.LSTMCell(dim, dim)
        self.linear = nn.Linear(dim, 1)

    def forward(self, x):
        h1 = c1 = h2 = c2 = x.new_zeros(x.shape[0], self.dim)
        outputs = []
        for t in range(x.shape[1]):
            h1, c1 = self.lstm1(x[:, t : t + 1], (h1, c1))
            h2, c2 = self.lstm2(h1, (h2, c2))
            outputs.append(self.linear(h2))
        return torch.cat(outputs, dim=1)


def make_lstmcell_loop() -> Setup:
    model = Sequence()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    phase = torch.rand(16, 1) * 6.28
    wave = torch.sin(torch.arange(101) * 0.2 + phase)
    batches = [(wave[:, :-1], wave[:, 1:])] * 12
    return Setup(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, F.mse_loss),
        {"model": model, "data": batches[:1], "loss_fn": nn.MSELoss(), "optimizer": optimizer},
    )


# -- pytorch/examples dcgan and vae ---------------------------------------------------------------------------------
def make_dcgan() -> Setup:
    nz = 8
    generator = nn.Sequential(
        nn.ConvTranspose2d(nz, 16, 4, 1, 0, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(True),
        nn.ConvTranspose2d(16, 1, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    discriminator = nn.Sequential(
        nn.Conv2d(1, 16, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(16, 1, 4, 1, 0, bias=False),
        nn.Flatten(0),
    )
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x, _ = digits()
    real_batches = torch.tanh(x[torch.randperm(len(x))[: 30 * 32]]).split(32)

    def train(monitors):
        losses = []
        for real in real_batches:
            discriminator.zero_grad()
            ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
            fake = generator(torch.randn(len(real), nz, 1, 1))
            loss_d = F.binary_cross_entropy_with_logits(discriminator(real), ones)
            loss_d = loss_d + F.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros)
            loss_d.backward()
            opt_d.step()
            generator.zero_grad()
            loss_g = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
            loss_g.backward()
            opt_g.step()
            losses += [loss_d.detach(), loss_g.detach()]
            step(monitors, "discriminator", loss=loss_d)
            step(monitors, "generator", loss=loss_g)
        return losses

    return Setup(
        {"generator": generator, "discriminator": discriminator},
        {"generator": opt_g, "discriminator": opt_d},
        train,
        None,
    )


class VAE(nn.Module):
    def __init__(self, latent: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc_mu = nn.Linear(32, latent)
        self.fc_logvar = nn.Linear(32, latent)
        self.fc3 = nn.Linear(latent, 32)
        self.fc4 = nn.Linear(32, 64)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def vae_loss(output, x):
    recon, mu, logvar = output
    bce = F.binary_cross_entropy(recon, x.flatten(1), reduction="sum")
    return (bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / len(x)


def make_vae() -> Setup:
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    from sklearn.datasets import load_digits

    pixels = torch.tensor(load_digits().images, dtype=torch.float32) / 16  # in [0, 1] for the Bernoulli decoder
    batches = [(b, b) for b in pixels[torch.randperm(len(pixels))[: 30 * 32]].split(32)]
    return Setup(
        {"model": model},
        {"model": optimizer},
        supervised_loop(model, optimizer, batches, lambda out, x: vae_loss(out, x)),
        {"model": model, "data": batches[:8], "loss_fn": vae_loss, "optimizer": optimizer},
    )


# -- mixture of experts and reinforcement learning ----------------------------------------------------------------
class TopOneMoE(nn.Module):
    """A switch-style layer: a router picks one of four experts per sample (gates scale the chosen output)."""

    def __init__(self, dim: int = 64, experts: int = 4) -> None:
        super().__init__()
        self.router = nn.Linear(dim, experts)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(dim, 32), nn.ReLU()) for _ in range(experts))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = x.flatten(1)
        gates = F.softmax(self.router(x), dim=-1)
        weight, choice = gates.max(dim=-1)
        hidden = x.new_zeros(len(x), 32)
        for i, expert in enumerate(self.experts):
            picked = choice == i
            if picked.any():
                hidden[picked] = expert(x[picked]) * weight[picked, None]
        return self.head(hidden)


def make_moe_top1() -> Setup:
    model = TopOneMoE()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = digit_batches(24)
    return classifier_setup(model, optimizer, batches)


def make_reinforce() -> Setup:
    """REINFORCE on a 5-state corridor (reach the right end): one policy call per environment step."""
    policy = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)

    def episode():
        state, log_probs, rewards = 0, [], []
        for _ in range(12):
            logits = policy(F.one_hot(torch.tensor(state), 5).float())
            action = torch.distributions.Categorical(logits=logits).sample()
            log_probs.append(torch.distributions.Categorical(logits=logits).log_prob(action))
            state = min(4, state + 1) if action == 1 else max(0, state - 1)
            rewards.append(1.0 if state == 4 else 0.0)
            if state == 4:
                break
        returns = torch.tensor([sum(0.9**k * r for k, r in enumerate(rewards[t:])) for t in range(len(rewards))])
        return -(torch.stack(log_probs) * returns).sum()

    def train(monitors):
        losses = []
        for _ in range(30):
            loss = episode()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    return Setup({"model": policy}, {"model": optimizer}, train, None)


class Siamese(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 1)

    def forward(self, a, b):
        return self.head(torch.abs(self.tower(a) - self.tower(b))).squeeze(1)


def make_siamese() -> Setup:
    model = Siamese()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = digits()
    pairs = []
    for _ in range(24):
        i, j = torch.randint(0, len(x), (2, 32))
        pairs.append((x[i], x[j], (y[i] == y[j]).float()))

    def train(monitors):
        losses = []
        for a, b, same in pairs:
            loss = F.binary_cross_entropy_with_logits(model(a, b), same)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    data = [((a, b), same) for a, b, same in pairs[:8]]  # the natural batch of a two-input model
    return Setup(
        {"model": model},
        {"model": optimizer},
        train,
        {"model": model, "data": data, "loss_fn": nn.BCEWithLogitsLoss(), "optimizer": optimizer},
    )


# -- Hugging Face models built from small configs (never downloaded) ------------------------------------------------
def make_gpt2_tied() -> Setup:
    """GPT-2 (tied ``wte``/``lm_head``) on a padded token stream, in a plain loop with ``labels=`` (-100 on padding)."""
    import transformers

    vocab = 24
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=vocab, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sequences = pad_sequence(markov_tokens(160, 20, vocab, pad_lengths=True), batch_first=True)
    batches = [(ids, ids != 0) for ids in sequences.split(16)]

    def train(monitors):
        losses = []
        for ids, mask in batches:
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(~mask, -100)).loss
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            step(monitors, "model", loss=loss)
        return losses

    def loss_fn(output, ids):
        logits = output.logits[:, :-1]
        return F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1), ignore_index=0)

    data = [(ids, ids) for ids, _ in batches[:8]]
    return Setup(
        {"model": model},
        {"model": optimizer},
        train,
        {"model": model, "data": data, "loss_fn": loss_fn, "optimizer": optimizer, "num_classes": vocab},
    )


PROGRAMS = {
    "mnist_cnn": make_mnist_cnn,
    "clipping_schedulers": make_clipping_schedulers,
    "amp_bf16": make_amp_bf16,
    "torch_compile": make_compiled,
    "freezing_schedule": make_freezing_schedule,
    "grad_accumulation_x4": make_grad_accumulation(4),
    "grad_accumulation_x16": make_grad_accumulation(16),
    "grad_accumulation_x32": make_grad_accumulation(32),
    "lstm_lm_tied": make_lstm_lm,
    "transformer_lm_padding": make_transformer_lm_padding,
    "packed_lstm": make_packed_lstm,
    "lstmcell_loop": make_lstmcell_loop,
    "dcgan": make_dcgan,
    "vae": make_vae,
    "moe_top1": make_moe_top1,
    "reinforce": make_reinforce,
    "siamese": make_siamese,
    "gpt2_tied": make_gpt2_tied,
}
