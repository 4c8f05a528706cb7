"""Preflight on correct models it used to misjudge (tied embeddings, padded tokens, VAE, dense targets, MoE, regression
at init): no warn or fail; and the planted bug next to each still fires, so no check was simply silenced."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nbdiag.checks import check_baseline, check_class_balance, check_gradient_flow, check_initial_loss, check_overfit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def serious(findings) -> list:
    return [f for f in findings if f.severity in ("warn", "fail")]


# -- model.frozen: tied weights, mixture of experts ------------------------------------------------------------------
class TinyGPT2(nn.Module):
    """GPT-2 from a small config (wte and lm_head tied), returning (N, vocab, T) logits for CrossEntropyLoss."""

    def __init__(self, vocab: int = 32) -> None:
        super().__init__()
        config = transformers.GPT2Config(
            n_layer=1, n_head=2, n_embd=16, vocab_size=vocab, n_positions=32, bos_token_id=1, eos_token_id=1
        )
        self.gpt = transformers.GPT2LMHeadModel(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.gpt(input_ids=ids, attention_mask=(ids != 0).long()).logits.transpose(1, 2)


def lm_batches(vocab: int = 32, n: int = 64, length: int = 17) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sequences counting up from a random start (ids 1..vocab-1), right-padded with id 0; next-token targets."""
    ids = (torch.randint(1, vocab, (n, 1)) + torch.arange(length)) % (vocab - 1) + 1
    ids[torch.arange(length) >= torch.randint(9, length + 1, (n, 1))] = 0
    x, y = ids[:, :-1], ids[:, 1:].clone()
    y[y == 0] = -100
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, n, 16)]


def test_tied_embedding_is_held_by_the_optimizer_under_either_name():
    model = TinyGPT2()
    assert model.gpt.lm_head.weight is model.gpt.transformer.wte.weight
    batches, loss_fn = lm_batches(), nn.CrossEntropyLoss()
    assert check_gradient_flow(model, batches, loss_fn, torch.optim.AdamW(model.parameters(), lr=1e-3)) == []
    missing = [p for name, p in model.named_parameters() if not name.startswith("gpt.transformer.ln_f")]
    (finding,) = check_gradient_flow(model, batches, loss_fn, torch.optim.AdamW(missing, lr=1e-3))  # planted
    assert "not in the optimizer" in finding.message
    assert finding.evidence["parameters"] == ["gpt.transformer.ln_f.weight", "gpt.transformer.ln_f.bias"]


class TopOneMoE(nn.Module):
    """Switch-style layer: a router picks one of ``experts`` Linear experts per sample."""

    def __init__(self, experts: int = 8, width: int = 8, detached: int | None = None) -> None:
        super().__init__()
        self.router = nn.Linear(width, experts)
        self.experts = nn.ModuleList(nn.Linear(width, width) for _ in range(experts))
        self.head = nn.Linear(width, 3)
        self.detached = detached  # planted bug: this expert's output is cut from the graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, choice = self.router(x).softmax(dim=1).max(dim=1)
        mixed = torch.zeros_like(x)
        for e in choice.unique().tolist():  # only the experts picked for this batch run
            rows = choice == e
            out = self.experts[e](x[rows])
            mixed[rows] = (out.detach() if e == self.detached else out) * gate[rows, None]
        return self.head(mixed)


def test_experts_a_batch_did_not_route_to_are_not_frozen():
    torch.manual_seed(3)
    model = TopOneMoE()
    batches = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
    routed = [set(model.router(x).argmax(dim=1).tolist()) for x, _ in batches]
    assert len(routed[0]) < 8  # one batch alone leaves experts without a gradient
    assert serious(check_gradient_flow(model, batches, nn.CrossEntropyLoss())) == []
    never = sorted(set(range(8)) - set().union(*routed))
    if never:  # experts no batch routed to: said, but as info
        (unused,) = check_gradient_flow(model, batches, nn.CrossEntropyLoss())
        assert unused.severity == "info" and "mixture-of-experts" in unused.message
    picked = sorted(routed[0])[0]
    model.detached = picked  # planted: an expert that runs but passes no gradient
    (finding,) = serious(check_gradient_flow(model, batches, nn.CrossEntropyLoss()))
    assert finding.severity == "warn" and finding.evidence["parameters"] == [
        f"experts.{picked}.weight",
        f"experts.{picked}.bias",
    ]


class Difference(nn.Module):
    """A head on |f(a) - f(b)|: the tower's last bias cancels in the difference, exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.tower, self.head = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.abs(self.tower(x[:, :4]) - self.tower(x[:, 4:])))


def test_a_bias_cancelled_by_the_model_is_info_and_dead_units_upstream_stay_warn():
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    (cancelled,) = check_gradient_flow(Difference(), (x, y), nn.CrossEntropyLoss())
    assert cancelled.severity == "info" and cancelled.evidence["parameters"] == ["tower.bias"]
    dead = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)  # planted: every first-layer ReLU is off, nothing upstream of it learns
    (finding,) = serious(check_gradient_flow(dead, (x, y), nn.CrossEntropyLoss()))
    assert finding.evidence["parameters"] == ["0.weight", "0.bias"]


# -- data.no_signal: padded token models ---------------------------------------------------------------------------
class PooledTokenClassifier(nn.Module):
    """Embeddings averaged over the non-padding tokens (id 0 is padding), then a linear classifier."""

    def __init__(self, vocab: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16, padding_idx=0)
        self.out = nn.Linear(16, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).unsqueeze(-1).float()
        pooled = (self.embed(ids) * mask).sum(dim=1) / mask.sum(dim=1)  # all padding: 0 / 0 = NaN
        return self.out(pooled)


def sentiment_batches(shuffled_labels: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Label 1 when most tokens come from the upper half of the vocabulary; sequences right-padded with 0."""
    ids = torch.randint(1, 32, (256, 12))
    ids[torch.arange(12) >= torch.randint(4, 13, (256, 1))] = 0
    y = ((ids >= 16).sum(dim=1) > ((ids > 0) & (ids < 16)).sum(dim=1)).long()
    if shuffled_labels:
        y = y[torch.randperm(len(y))]
    return [(ids[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


def test_padded_token_classifier_has_signal_and_shuffled_labels_still_have_none():
    torch.manual_seed(0)
    assert check_baseline(PooledTokenClassifier(), sentiment_batches(), nn.CrossEntropyLoss()) == []
    (finding,) = check_baseline(PooledTokenClassifier(), sentiment_batches(shuffled_labels=True), nn.CrossEntropyLoss())
    assert finding.id == "data.no_signal"


class TokenTagger(nn.Module):
    """Token classification: a tag per token from its embedding and its left neighbour's; (N, tags, T) logits."""

    def __init__(self, vocab: int = 32, tags: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16, padding_idx=0)
        self.mix = nn.Conv1d(16, 16, kernel_size=2, padding=1)
        self.out = nn.Conv1d(16, tags, kernel_size=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.mix(self.embed(ids).transpose(1, 2))[..., : ids.shape[1]])
        return self.out(hidden)


def tagging_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids = torch.randint(1, 32, (256, 10))
    ids[torch.arange(10) >= torch.randint(3, 11, (256, 1))] = 0
    tags = (ids % 4).masked_fill(ids == 0, -100)  # the tag is a function of the token
    return [(ids[i : i + 32], tags[i : i + 32]) for i in range(0, 256, 32)]


def test_token_tagger_that_learns_has_signal():
    torch.manual_seed(0)
    assert check_baseline(TokenTagger(), tagging_batches(), nn.CrossEntropyLoss()) == []
    assert check_baseline(TinyGPT2(), lm_batches(), nn.CrossEntropyLoss(), steps=60) == []


# -- train.cannot_overfit: a VAE on grey pixels --------------------------------------------------------------------
class TinyVAE(nn.Module):
    """pytorch/examples-style VAE (fc1 -> fc21/fc22 -> reparameterize -> fc3 -> fc4, sigmoid) on 64 pixels."""

    def __init__(self, detached: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(64, 32), nn.Linear(32, 4), nn.Linear(32, 4)
        self.fc3, self.fc4 = nn.Linear(4, 32), nn.Linear(32, 64)
        self.detached = detached  # planted bug: the decoder's output is cut from the graph

    def forward(self, x: torch.Tensor):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = torch.sigmoid(self.fc4(F.relu(self.fc3(z))))
        return (recon.detach() if self.detached else recon), mu, logvar


def vae_loss(output, x: torch.Tensor) -> torch.Tensor:
    recon, mu, logvar = output
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + kld) / len(x)


def grey_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    pixels = torch.tensor(load_digits().data[:64], dtype=torch.float32) / 16  # 17 grey levels in [0, 1]
    return pixels, pixels


def test_vae_overfits_to_its_own_floor_and_a_detached_decoder_does_not():
    x, _ = grey_digits()
    floor = float(-(torch.xlogy(x[:16], x[:16]) + torch.xlogy(1 - x[:16], 1 - x[:16])).sum() / 16)
    with torch.no_grad():
        first = float(vae_loss(TinyVAE()(x[:16]), x[:16]))
    assert floor > 0.1 * first  # the 10% rule cannot be met: grey pixels keep BCE far from zero
    assert serious(check_overfit(TinyVAE(), (x, x), vae_loss)) == []
    (finding,) = check_overfit(TinyVAE(detached=True), (x, x), vae_loss)  # planted: KL falls, recon cannot
    assert finding.id == "train.cannot_overfit"


def test_vae_beats_its_input_independent_baseline_and_a_detached_decoder_does_not():
    x, _ = grey_digits()
    batches = [(x[i : i + 16], x[i : i + 16]) for i in range(0, 64, 16)]
    assert check_baseline(TinyVAE(), batches, vae_loss) == []
    (finding,) = check_baseline(TinyVAE(detached=True), batches, vae_loss)  # planted: recon cannot use the input
    assert finding.id == "data.no_signal" and finding.evidence["floor"] is None


def test_known_floors_still_fail_a_loss_that_cannot_reach_them():
    x, y = torch.randn(16, 8), torch.randn(16, 1)
    frozen = nn.Linear(8, 1).requires_grad_(False)  # a regression that cannot move
    (finding,) = check_overfit(frozen, (x, y), nn.MSELoss(), steps=60)
    assert finding.severity == "fail" and finding.evidence["floor"] == 0.0


# -- data.class_imbalance: dense targets ---------------------------------------------------------------------------
def test_per_token_and_per_pixel_imbalance_is_info_and_per_sample_stays_warn():
    zipf = torch.distributions.Categorical(probs=1 / torch.arange(1, 33).float())
    tokens = zipf.sample((64, 16))
    (lm,) = check_class_balance([(tokens[:, :-1], tokens[:, 1:])], nn.CrossEntropyLoss())
    assert lm.severity == "info" and lm.evidence["labels_per_sample"] == 15
    masks = torch.zeros(8, 16, 16, dtype=torch.long)
    masks[:, 6:8, 6:9] = 1  # a small object on a large background
    (seg,) = check_class_balance([(torch.randn(8, 3, 16, 16), masks)], nn.CrossEntropyLoss())
    assert seg.severity == "info"
    labels = torch.cat([torch.zeros(200), torch.ones(10)]).long()  # one label per sample, 20x apart
    (per_sample,) = check_class_balance([(torch.randn(210, 4), labels)], nn.CrossEntropyLoss())
    assert per_sample.severity == "warn"


# -- loss.initial_mismatch: regression at init ---------------------------------------------------------------------
def test_fresh_regression_model_is_judged_with_its_own_output_spread():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = 0.05 * x[:, :1]  # small target variance (0.0025), as scaled targets have
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        ratio = float(F.mse_loss(model(x), y) / y.var(unbiased=False))
    assert ratio > 3  # what the check compared before: a fresh model's spread alone is > 3x the target variance
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    assert check_initial_loss(model, batches, nn.MSELoss()) == []
    (finding,) = check_initial_loss(model, [(xb, yb + 50) for xb, yb in batches], nn.MSELoss())  # planted offset
    assert finding.id == "loss.initial_mismatch"


# -- issue 25: LoRA, multi-label targets, a loss that already weights its classes -----------------------------------
class LoRALinear(nn.Module):
    """A frozen trained Linear plus a low-rank update B @ A, B = 0 at init (Hu et al. 2021, as PEFT builds it)."""

    def __init__(self, base: nn.Linear, rank: int = 4) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_b(self.lora_a(x))


def lora_setup(dead: bool = False) -> tuple[nn.Module, list]:
    """A 2-layer MLP trained on one task (labels from feature 0), then LoRA-adapted to another (from feature 1)."""
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    base = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.Adam(base.parameters(), lr=1e-2)
    for _ in range(100):
        F.cross_entropy(base(x), (x[:, 0] > 0).long() * 3).backward()
        optimizer.step()
        optimizer.zero_grad()
    model = nn.Sequential(LoRALinear(base[0]), nn.ReLU(), LoRALinear(base[2]))
    if dead:  # planted: the hidden ReLU never fires, so A of the last layer gets no gradient, B's value aside
        with torch.no_grad():
            model[0].base.bias.fill_(-100.0)
    y = (x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()
    return model, [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]


def test_lora_on_a_trained_base_is_neither_frozen_nor_an_initial_loss_mismatch():
    """Issue 25: B = 0 gives A a zero gradient at init only; the base is trained and frozen on purpose, and its
    initial loss on the new task is what it learnt, not ln C."""
    model, batches = lora_setup()
    trainable = [p for p in model.parameters() if p.requires_grad]
    found = check_gradient_flow(model, batches, nn.CrossEntropyLoss(), torch.optim.AdamW(model.parameters()))
    found += check_initial_loss(model, batches, nn.CrossEntropyLoss())
    assert serious(found) == [] and trainable
    notes = [f.message for f in found]
    assert any("zero-initialised factor gates them" in note for note in notes), notes
    assert any("a trained (pretrained) base, frozen on purpose" in note for note in notes), notes
    initial = next(f for f in found if f.id == "loss.initial_mismatch")
    assert initial.severity == "info" and initial.evidence["frozen_parameters"] > 0


def test_lora_with_dead_units_upstream_still_warns():
    model, batches = lora_setup(dead=True)
    found = check_gradient_flow(model, batches, nn.CrossEntropyLoss(), torch.optim.AdamW(model.parameters()))
    assert any("exactly zero on all" in f.message for f in serious(found))


def test_target_leak_on_multi_label_float_targets_gives_a_verdict_not_an_error():
    from nbdiag.checks import check_target_leak

    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (torch.randn(256, 5) > 0).float()  # (N, K) multi-label, BCEWithLogitsLoss
    assert check_target_leak([(x, y)], nn.BCEWithLogitsLoss()) == []


def test_class_imbalance_with_a_weighted_loss_is_a_note_without_reweight_advice():
    torch.manual_seed(0)
    y = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(20, dtype=torch.long)])
    batches = [(torch.randn(320, 4), y)]
    (plain,) = check_class_balance(batches, nn.CrossEntropyLoss())
    assert plain.severity == "warn" and "Reweight" in plain.advice
    (weighted,) = check_class_balance(batches, nn.CrossEntropyLoss(weight=torch.tensor([1.0, 15.0])))
    assert weighted.severity == "info" and "Reweight" not in weighted.advice and "already weights" in weighted.message
    (pos_weighted,) = check_class_balance(batches, nn.BCEWithLogitsLoss(pos_weight=torch.tensor(15.0)))
    assert pos_weighted.severity == "info"


def test_preflight_runs_on_a_pruned_model():
    """Issue 25: torch.nn.utils.prune keeps ``weight = weight_orig * weight_mask`` as a non-leaf attribute, which
    deepcopy refuses; preflight raised instead of checking."""
    from torch.nn.utils import prune

    import nbdiag

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    report = nbdiag.preflight(model, (x, y), nn.CrossEntropyLoss(), checks=("gradient_flow", "initial_loss"))
    assert not [f for f in report.findings if f.id == "check.error"] and serious(report.findings) == []
    assert torch.equal(model[0].weight, model[0].weight_orig * model[0].weight_mask)  # the model is unchanged


def test_a_zero_initialised_last_layer_gates_the_layers_before_it():
    """Issue 25: the spatial transformer tutorial zero-inits fc_loc[2].weight (identity transform at init), so the
    localization layers get an exactly zero gradient at init only."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(model[2].weight)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    found = check_gradient_flow(model, [(x, y)], nn.CrossEntropyLoss())
    assert serious(found) == [] and any("zero-initialised factor gates them" in f.message for f in found)
