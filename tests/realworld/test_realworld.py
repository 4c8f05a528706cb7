"""Correct programs must train bitwise-identically under ``watch``, leave no hook, and raise no warn/fail finding,
live or in ``preflight``. A known false alarm is an ``xfail(strict=True)`` naming its owner: fixing it turns the
test into an unexpected pass, which fails until the mark is removed."""

from __future__ import annotations

import pytest
import torch

import nbdiag
from tests.hooks import hook_count
from tests.realworld.harness import alarms, build, train_plain, train_watched
from tests.realworld.programs import PROGRAMS

# program -> reason, for the live (watch) and preflight halves
KNOWN_LIVE: dict[str, str] = {}
KNOWN_PREFLIGHT: dict[str, str] = {}


def _marked(known: dict[str, str], names) -> list:
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=known[n])) if n in known else n for n in names]


@pytest.mark.parametrize("name", _marked(KNOWN_LIVE, PROGRAMS))
def test_watching_changes_nothing_and_raises_no_alarm(name, one_thread):
    make = PROGRAMS[name]
    plain_losses, plain_state = train_plain(make)
    losses, state, monitors = train_watched(make, every=5, dense=5)
    assert torch.equal(torch.stack(losses), torch.stack(plain_losses))
    assert all(torch.equal(state[k], plain_state[k]) for k in plain_state)
    for key, mon in monitors.items():
        assert mon.errors == [], mon.errors
        assert len(mon.record.steps()) > 2
        assert alarms(mon.findings()) == [], key


PREFLIGHT = [n for n in PROGRAMS if build(PROGRAMS[n]).preflight is not None]


@pytest.mark.parametrize("name", _marked(KNOWN_PREFLIGHT, PREFLIGHT))
def test_preflight_raises_no_alarm(name, one_thread):
    args = dict(build(PROGRAMS[name]).preflight)
    report = nbdiag.preflight(
        args.pop("model"), args.pop("data"), args.pop("loss_fn"), progress=False, budget_s=8, **args
    )
    assert alarms(report.findings) == []


def bert_trainer(tmp_path, callbacks):
    """BERT sequence classification through ``transformers.Trainer`` (Accelerate underneath), CPU, a few steps."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 40, (96, 12), generator=generator)
    labels = (ids[:, 1] > 22).long()  # the label is a function of one token: learnable
    rows = [
        {"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y} for i, y in zip(ids, labels, strict=True)
    ]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=24,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=model, args=args, train_dataset=rows[:80], eval_dataset=rows[80:], callbacks=callbacks
    )


def test_bert_trainer_changes_nothing_and_raises_no_alarm(tmp_path, one_thread):
    pytest.importorskip("transformers")
    from nbdiag.integrations.huggingface import NbdiagCallback

    plain = bert_trainer(tmp_path, [])
    plain.train()
    callback = NbdiagCallback(every=5, dense=5, display=False, num_classes=2)
    watched = bert_trainer(tmp_path, [callback])
    before = hook_count(watched.model)
    watched.train()
    assert watched.evaluate()["eval_loss"] == plain.evaluate()["eval_loss"]
    assert all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), watched.model.parameters(), strict=True))
    assert hook_count(watched.model) == before
    assert callback.monitor.errors == [] and len(callback.monitor.record.steps()) > 5
    assert alarms(callback.monitor.findings()) == []
