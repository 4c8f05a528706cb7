"""WatchConfig (validated once, stamped into run manifests), RunMeta (typed, swapped under the record's lock) and
the row-name helpers."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from torch import nn

import nbdiag
from nbdiag.config import WatchConfig
from nbdiag.meta import InputMeta, RunMeta
from nbdiag.names import module_of, owning_layer, rank_row, without_rank
from nbdiag.record import Record


def test_capacity_error_names_the_keyword_the_user_set():
    """The symptom of issue 23: watch(capacity=2) answered about scalar_capacity, which the user never set."""
    with pytest.raises(ValueError) as raised:
        nbdiag.watch(nn.Linear(2, 2), capacity=2, display=False)
    message = str(raised.value)
    assert "capacity=2" in message and ">= 4" in message and "try watch(..., capacity=512)" in message
    assert "scalar_capacity" not in message and "20000" not in message


def test_record_names_the_capacity_that_is_wrong():
    with pytest.raises(ValueError, match="got scalar_capacity=1, expected an int >= 4"):
        Record(capacity=64, scalar_capacity=1)
    with pytest.raises(ValueError, match="got capacity=3, expected") as raised:
        Record(capacity=3)
    assert "scalar_capacity" not in str(raised.value)


@pytest.mark.parametrize(
    ("keyword", "value", "error", "expected"),
    [
        ("every", 0, ValueError, "an int >= 1"),
        ("every", 2.5, TypeError, "an int >= 1"),
        ("every", True, TypeError, "an int >= 1"),
        ("dense", -1, ValueError, "an int >= 0"),
        ("capacity", "512", TypeError, "an int >= 4"),
        ("hist_sample", 0, ValueError, "an int >= 1"),
        ("num_classes", 0, ValueError, "an int >= 1"),
        ("run_dir", 3, TypeError, "a folder path"),
        ("per_rank", "yes", TypeError, "True, False or None"),
        ("activations", 1, TypeError, "True, False or None"),
        ("inputs", "no", TypeError, "True, False or None"),
        ("objective", "adversarial", ValueError, "one of ('supervised'"),
        ("display", "inlined", ValueError, '"widget", "inline", "static"'),
    ],
)
def test_bad_values_name_the_keyword_what_was_expected_and_what_to_do(keyword, value, error, expected):
    with pytest.raises(error) as raised:
        nbdiag.watch(nn.Linear(2, 2), **{keyword: value})
    message = str(raised.value)
    assert f"got {keyword}={value!r}" in message and expected in message and f"try watch(..., {keyword}=" in message
    with pytest.raises(error):  # the same check, once, wherever a config is built
        WatchConfig(**{keyword: value})


def test_good_values_pass_and_paths_become_strings(tmp_path):
    config = WatchConfig(every=1, dense=0, capacity=4, hist_sample=None, run_dir=tmp_path, display="static")
    assert config.run_dir == str(tmp_path) and config.replace(every=5).every == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.every = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="got every=0"):
        config.replace(every=0)


def test_integrations_check_their_keywords_when_built():
    lightning = pytest.importorskip("nbdiag.integrations.lightning")
    with pytest.raises(ValueError, match="got dense=-1"):
        lightning.NbdiagCallback(every=5, dense=-1)
    callback = lightning.NbdiagCallback(every=5, num_classes=3)
    assert callback.config == WatchConfig(every=5, num_classes=3)


def _train(mon, model, opt, steps=3):
    for _ in range(steps):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss)


def test_config_and_meta_round_trip_through_a_run_directory(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nbdiag.watch(model, opt, every=2, dense=1, num_classes=2, run_dir=tmp_path / "run", inputs=True) as mon:
        _train(mon, model, opt)
        mon.validate(val_loss=1.0)
    assert mon.record.meta.inputs == InputMeta((4,), "float32")
    assert mon.record.meta.validation_mode.calls == 1 and mon.record.meta.validation_mode.train_mode_calls == 1
    run = nbdiag.open_run(tmp_path / "run")
    assert (
        run.config
        == mon.config
        == WatchConfig(every=2, dense=1, num_classes=2, run_dir=str(tmp_path / "run"), inputs=True)
    )
    assert run.record.meta == mon.record.meta
    assert RunMeta.from_dict({"model": "Old", "every": 10, "filters": None}) == RunMeta(model="Old")  # old manifests


def test_meta_is_swapped_whole_under_the_records_lock():
    """The run writer serializes record.meta on its own thread: a change must never be seen half-made."""
    record = Record(capacity=8)
    before = record.meta
    done = threading.Event()

    def change():
        record.update_meta(model="Net", inputs=InputMeta((3,), "float32"))
        done.set()

    with record._lock:  # a reader (or writer) holding the lock: the change waits for it
        worker = threading.Thread(target=change)
        worker.start()
        assert not done.wait(0.2)
        assert record.meta is before
    worker.join(5)
    assert done.is_set() and record.meta.model == "Net" and record.meta.inputs.shape == (3,)
    assert before == RunMeta()  # a snapshot taken earlier is unchanged (frozen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.meta.model = "x"  # type: ignore[misc]


def test_row_names():
    assert rank_row("enc.0", 1) == "enc.0@rank1" and without_rank("enc.0@rank1") == "enc.0"
    assert without_rank("enc.0") == "enc.0" and module_of("lstm/1/0@rank2") == "lstm"
    assert owning_layer("enc.0.weight") == "enc.0" and owning_layer("bias") == "bias"
