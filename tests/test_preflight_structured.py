"""Preflight on structured inputs and outputs: Hugging Face ModelOutput and dict batches, a two-input model, and one
clear finding (not one error per check) when it cannot tell how to call the model or the loss."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nbdiag
from nbdiag.checks import collect_batches

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def run(model, data, loss_fn, **kwargs):
    return nbdiag.preflight(model, data, loss_fn, progress=False, budget_s=30, **kwargs).findings


def serious(findings) -> list[str]:
    return [str(f) for f in findings if f.severity in ("warn", "fail")]


def tiny_bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def bert_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids = torch.randint(5, 40, (128, 12), generator=torch.Generator().manual_seed(3))
    labels = (ids[:, 1] > 22).long()  # the label is a function of one token: learnable
    return list(zip(ids.split(32), labels.split(32), strict=True))


def test_bert_sequence_classifier_output_reaches_the_loss_as_logits():
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert serious(run(model, bert_batches(), nn.CrossEntropyLoss(), optimizer=optimizer)) == []


def test_hugging_face_dict_batches_are_inputs_plus_labels():
    rows = [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y} for i, y in bert_batches()]
    ((x, y),) = collect_batches(rows[:1])
    assert set(x) == {"input_ids", "attention_mask"} and torch.equal(y, rows[0]["labels"])
    model = tiny_bert()
    assert serious(run(model, rows, nn.CrossEntropyLoss(), optimizer=torch.optim.AdamW(model.parameters()))) == []


class Siamese(nn.Module):
    """pytorch/examples siamese_network style: one tower for both images, a head on their concatenated features."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
        self.head = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, a, b):
        return self.head(torch.cat([self.tower(a), self.tower(b)], dim=1)).squeeze(1)


def pairs(shuffled: bool = False) -> list:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    x, y = x[y < 2], y[y < 2]  # zeros and ones: "same digit?" is learnable from a few hundred pairs
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(8):
        i, j = torch.randint(0, len(x), (2, 64), generator=generator)
        for k in range(32):  # half the pairs show the same digit twice
            same_digit = torch.nonzero(y == y[i[k]])[:, 0]
            j[k] = same_digit[torch.randint(0, len(same_digit), (1,), generator=generator)]
        same = (y[i] == y[j]).float()
        batches.append(((x[i], x[j]), same[torch.randperm(64, generator=generator)] if shuffled else same))
    return batches


def test_two_input_model_is_checked_and_its_planted_bug_found():
    assert serious(run(Siamese(), pairs(), nn.BCEWithLogitsLoss())) == []
    found = {f.id for f in run(Siamese(), pairs(shuffled=True), nn.BCEWithLogitsLoss())}
    assert "data.no_signal" in found  # planted: labels shuffled apart from the pairs


class ScoresAndAux(nn.Module):
    """Returns a dict whose first tensor is not the prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, 4)

    def forward(self, x):
        scores = self.net(x)
        return {"aux": scores.pow(2).mean(dim=1, keepdim=True), "scores": scores}


def test_output_fn_picks_the_prediction_and_forward_fn_calls_the_model():
    x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    wrong = {f.id for f in run(ScoresAndAux(), (x, y), nn.CrossEntropyLoss(), checks=("targets",))}
    assert "data.label_range" in wrong  # the first tensor, (N, 1), is not a 4-class output
    right = run(ScoresAndAux(), (x, y), nn.CrossEntropyLoss(), checks=("targets",), output_fn=lambda o: o["scores"])
    assert right == []
    separable = x[:, :4].argmax(dim=1)
    mlp = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    keyword = run(mlp, ({"features": x}, separable), nn.CrossEntropyLoss(), forward_fn=lambda m, x: m(x["features"]))
    assert serious(keyword) == []


class Opaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, 4)

    def forward(self, x):
        return object()  # nothing preflight can read


def test_what_cannot_be_called_gives_one_clear_finding():
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    errors = [f for f in run(Opaque(), (x, y), nn.CrossEntropyLoss()) if f.id == "check.error"]
    assert len(errors) == 1 and "output_fn" in errors[0].message and "forward_fn" in errors[0].message

    def loss_on_a_tuple(output, target):  # a custom loss that wants the model's (scores, aux) pair
        scores, _ = output
        return F.cross_entropy(scores, target)

    errors = [f for f in run(nn.Linear(8, 4), (x, y), loss_on_a_tuple) if f.id == "check.error"]
    assert len(errors) == 1 and "output_fn" in errors[0].message
