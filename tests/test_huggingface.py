"""Hugging Face Trainer (Accelerate underneath) and Accelerate-native loops under nbdiag, on config-built models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are built from configs: nothing may be downloaded

import pytest  # noqa: E402
import torch  # noqa: E402

import nbdiag  # noqa: E402
from tests.hooks import hook_count  # noqa: E402

transformers = pytest.importorskip("transformers")
accelerate = pytest.importorskip("accelerate")
from nbdiag.integrations.huggingface import NbdiagCallback  # noqa: E402  (needs transformers)

VOCAB = 32


def tiny_gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=16, resid_pdrop=0.0, embd_pdrop=0.0
    )
    return transformers.GPT2LMHeadModel(config)


def token_dataset(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=generator)
    ids = (start + torch.arange(12)) % VOCAB  # counting sequences: a next token that can be learned
    return [{"input_ids": row, "labels": row} for row in ids]


def trainer(tmp_path, callbacks, accumulation=1, max_steps=6):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulation,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return transformers.Trainer(
        model=tiny_gpt2(),
        args=args,
        train_dataset=token_dataset(64, 1),
        eval_dataset=token_dataset(16, 2),
        callbacks=callbacks,
    )


def test_trainer_trains_identically_and_writes_a_run(tmp_path, one_thread):
    plain = trainer(tmp_path, [])
    plain.train()
    plain_eval = plain.evaluate()["eval_loss"]

    callback = NbdiagCallback(every=2, dense=2, run_dir=str(tmp_path / "run"), display=False)
    watched = trainer(tmp_path, [callback])
    before = hook_count(watched.model)
    watched.train()
    assert watched.evaluate()["eval_loss"] == plain_eval
    for (name, a), b in zip(plain.model.state_dict().items(), watched.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert hook_count(watched.model) == before

    mon = callback.monitor
    assert mon.closed and mon.errors == []
    assert mon.record.steps() == [0, 1, 2, 4]
    logged = [entry["loss"] for entry in watched.state.log_history if "loss" in entry]
    assert mon.scalars()["loss"].tolist() == pytest.approx(logged, abs=1e-4)  # the Trainer rounds to 4 digits
    assert set(mon.frame().kind) >= {"activation", "gradient", "weight", "update"}
    assert "transformer.h.0.mlp.c_fc" in mon.layers
    run = nbdiag.open_run(tmp_path / "run")
    assert run.frame().equals(mon.frame())


def test_one_monitor_step_per_optimizer_step_under_accumulation(tmp_path, one_thread):
    callback = NbdiagCallback(every=1, display=False)
    run = trainer(tmp_path, [callback], accumulation=2, max_steps=3)
    run.train()
    mon = callback.monitor
    assert list(mon.scalars().index) == [0, 1, 2] and mon.errors == []
    updates = mon.frame().query("kind == 'update'")
    assert sorted(updates.step.unique()) == [0, 1, 2]


def test_watch_inside_a_user_callback_takes_the_accelerated_optimizer(tmp_path, one_thread):
    """The issue's scenario: watch(model, optimizer) with the optimizer a callback receives (AcceleratedOptimizer)
    raised AttributeError inside attach and left the forward hooks on the model."""
    seen = {}

    class UserCallback(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            seen["optimizer"] = type(optimizer).__name__
            seen["mon"] = nbdiag.watch(model, optimizer, every=1, display=False)

        def on_step_end(self, args, state, control, **kwargs):
            seen["mon"].step()

        def on_train_end(self, args, state, control, **kwargs):
            seen["mon"].close()

    run = trainer(tmp_path, [UserCallback()], max_steps=2)
    before = hook_count(run.model)
    run.train()
    assert seen["optimizer"] == "AcceleratedOptimizer"
    mon = seen["mon"]
    assert mon.errors == [] and mon.record.steps() == [0, 1]
    assert "update" in set(mon.frame().kind)
    assert hook_count(run.model) == before


def test_accelerate_prepared_model_and_optimizer(one_thread):
    def run(watched: bool):
        model = tiny_gpt2()
        accelerator = accelerate.Accelerator(cpu=True)
        model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-2))
        mon = nbdiag.watch(model, optimizer, every=2, dense=1, display=False) if watched else None
        batch = torch.stack([row["input_ids"] for row in token_dataset(8, 3)])
        losses = []
        for _ in range(4):
            loss = model(input_ids=batch, labels=batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach())
            if mon is not None:
                mon.step(loss=loss)
        if mon is not None:
            mon.close()
            assert mon.errors == [] and mon.record.steps() == [0, 2]
            assert "update" in set(mon.frame().kind)
            assert hook_count(model, optimizer.optimizer) == 0
        return torch.stack(losses)

    assert torch.equal(run(True), run(False))


def test_a_failing_train_is_cleaned_up_by_the_with_block(tmp_path, one_thread):
    """Trainer has no exception event: ``with callback:`` around ``train()`` removes the hooks when it raises."""

    class Boom(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("boom")

    callback = NbdiagCallback(every=1, display=False)
    run = trainer(tmp_path, [callback, Boom()], max_steps=4)
    before = hook_count(run.model)
    with pytest.raises(RuntimeError, match="boom"), callback:
        run.train()
    assert callback.monitor.closed and list(callback.monitor.scalars().index) == [0, 1]
    assert hook_count(run.model) == before
