"""No leaks: a monitor dropped without close() detaches and frees everything; the renderer thread ends with its
dashboard; an exception in the middle of a sampled step leaves nothing behind in the next one."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nbdiag
from nbdiag.monitor import _WATCHED, NbdiagWarning
from tests.hooks import hook_count

# A notebook cell, run with exec() in one namespace like a kernel does: build, watch, train a little, never close.
CELL = """
model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
mon = nbdiag.watch(model, opt, every=1, display=False)
for _ in range(3):
    F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,))).backward()
    opt.step(); opt.zero_grad(); mon.step()
"""


def refs(namespace: dict) -> dict[str, weakref.ref]:
    return {name: weakref.ref(namespace[name]) for name in ("model", "opt", "mon")} | {
        "record": weakref.ref(namespace["mon"].record)
    }


def run_cell(namespace: dict) -> None:
    exec(CELL, namespace)  # noqa: S102 - the test is the notebook


def test_a_rerun_cell_frees_the_first_model_optimizer_and_record():
    namespace = {"nn": nn, "torch": torch, "F": F, "nbdiag": nbdiag}
    run_cell(namespace)
    first = refs(namespace)
    run_cell(namespace)  # a new model: the first monitor is dropped, never closed
    gc.collect()
    assert {name: ref() for name, ref in first.items()} == dict.fromkeys(first)
    second = refs(namespace)
    assert hook_count(namespace["model"], namespace["opt"]) > 0  # the live cell's hooks stay
    namespace.clear()
    gc.collect()
    assert {name: ref() for name, ref in second.items()} == dict.fromkeys(second)
    assert len(_WATCHED) == 0


def test_watching_the_same_model_twice_then_dropping_both_frees_everything():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = nbdiag.watch(model, opt, every=1, display=False)
    with pytest.warns(NbdiagWarning, match="already watched"):
        second = nbdiag.watch(model, opt, every=1, display=False)  # the re-run cell, same model
    monitors = [weakref.ref(first), weakref.ref(second)]
    del first, second
    gc.collect()
    assert [ref() for ref in monitors] == [None, None]
    assert hook_count(model, opt) == 0  # the dropped monitor detached its hooks
    model(torch.ones(2, 4)).sum().backward()  # and the model trains on, unobserved
    opt.step()
    model_ref = weakref.ref(model)
    del model, opt
    gc.collect()
    assert model_ref() is None


def test_a_dropped_monitor_finishes_its_run_directory(tmp_path):
    model = nn.Linear(3, 2)
    mon = nbdiag.watch(model, every=1, run_dir=tmp_path / "run", display=False)
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        mon.step()
    writer_thread = mon._writer._thread
    del mon
    gc.collect()
    assert not writer_thread.is_alive()
    run = nbdiag.open_run(tmp_path / "run")
    assert run.finished and run.record.steps() == [0, 1, 2]


def test_the_renderer_thread_ends_when_its_dashboard_is_dropped():
    pytest.importorskip("ipywidgets")
    model = nn.Linear(3, 2)
    mon = nbdiag.watch(model, every=1, display=False)
    model(torch.randn(4, 3)).sum().backward()
    mon.step()
    dashboard = mon.dashboard()
    dashboard.start()  # widgets built, renderer running
    thread = dashboard.renderer._thread
    assert thread.is_alive()
    dashboard_ref, record_ref = weakref.ref(dashboard), weakref.ref(mon.record)
    del dashboard, mon
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive() and dashboard_ref() is None and record_ref() is None


def test_set_state_holds_the_lock():
    pytest.importorskip("ipywidgets")
    from nbdiag.views.dashboard import Dashboard

    mon = nbdiag.watch(nn.Linear(3, 2), every=1, display=False)
    dashboard = Dashboard(mon)
    held = []
    dashboard.refresh = lambda: held.append(dashboard._lock._is_owned())  # a refresh that takes no lock itself
    dashboard.set_state(loss_log=True)
    assert held == [True] and dashboard.state.loss_log  # the state was replaced and redrawn under the lock
    mon.close()


# -- a step interrupted by an exception --------------------------------------------------------------------------
class FailsOnce(nn.Module):
    """Raises in its forward when armed (a bad batch, an interrupted cell), after its first layer ran."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 2)
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.first(x)
        if self.armed:
            self.armed = False
            raise RuntimeError("bad batch")
        return self.second(hidden)


def train_with_a_bad_batch(watched: bool, fail_in: str):
    torch.manual_seed(0)
    model = FailsOnce()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = nbdiag.watch(model, opt, every=1, display=False) if watched else None
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(5, 4, generator=g) * (i + 1) for i in range(4)]
    losses = []
    for step, x in enumerate(batches):
        try:
            if step == 2:  # step 2 first sees a batch that fails, then the good one
                if fail_in == "forward":
                    model.armed = True
                    model(x * 100)
                else:
                    out = model(x * 100)
                    out.register_hook(lambda g: (_ for _ in ()).throw(RuntimeError("bad gradient")))
                    out.sum().backward()
        except RuntimeError:
            opt.zero_grad()  # the loop skips the bad batch
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if mon is not None:
            mon.step(loss=loss)
        losses.append(loss.detach())
    return torch.stack(losses), mon, batches


@pytest.mark.parametrize("fail_in", ["forward", "backward"])
def test_an_exception_mid_step_leaves_no_partial_statistics(fail_in):
    unwatched, _, _ = train_with_a_bad_batch(False, fail_in)
    losses, mon, batches = train_with_a_bad_batch(True, fail_in)
    mon.close()
    assert torch.equal(losses, unwatched)
    frame = mon.frame(kind="activation")
    at_2 = frame[(frame.step == 2) & (frame.layer == "first")].set_index("stat")["value"]
    assert at_2["count"] == batches[2].numel()  # one pass: the good batch's, not merged with the bad one's
    torch.manual_seed(0)
    replay = FailsOnce()
    opt = torch.optim.SGD(replay.parameters(), lr=0.1)
    for x in batches[:2]:
        replay(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        hidden = replay.first(batches[2])
    np.testing.assert_allclose(at_2["mean"], float(hidden.mean()), rtol=1e-5)
    np.testing.assert_allclose(at_2["max"], float(hidden.max()), rtol=1e-6)
    grads = mon.frame(kind="gradient")
    assert grads[(grads.step == 2) & (grads.layer == "second") & (grads.stat == "count")]["value"].item() == 10
    assert mon.errors == []


def test_gradient_accumulation_still_merges_every_pass():
    model = nn.Sequential(nn.Linear(4, 4))
    mon = nbdiag.watch(model, every=1, display=False)
    for _ in range(3):  # three micro-batches, one step
        model(torch.randn(2, 4)).sum().backward()
    mon.step()
    mon.close()
    frame = mon.frame(kind="activation")
    assert frame[(frame.layer == "0") & (frame.stat == "count")]["value"].item() == 3 * 2 * 4
