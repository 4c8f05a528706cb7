"""The corpus: correct public training programs must train bitwise-identically under ``watch(every=1)`` and
``watch(every=10)``, raise nothing, leave no hook (copies included), give no warn/fail finding (live or preflight), and
record the same activation std as an independent forward hook. Known failures are ``xfail(strict=True)`` (known.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nbdiag
from tests.corpus import programs  # noqa: F401  (registers the programs)
from tests.corpus.harness import CORPUS, Run, alarms, build, train_plain, train_watched
from tests.corpus.known import KNOWN

pytestmark = pytest.mark.slow
EVERY = (1, 10)
_runs: dict[tuple[str, int], Run | BaseException] = {}


def _run(name: str, every: int) -> Run:
    """Each program trains once per setting (0 = unwatched) and the tests share the result."""
    key = (name, every)
    if key not in _runs:
        try:
            with torch.random.fork_rng():
                if every == 0:
                    _runs[key] = train_plain(name)
                else:
                    _runs[key] = train_watched(name, spy=every == 1, every=every, dense=min(every, 10))
        except Exception as error:  # the tests report it
            _runs[key] = error
    result = _runs[key]
    if isinstance(result, BaseException):
        raise result
    return result


def _cases(test: str, names, every=(None,)) -> list:
    cases = []
    for name in names:
        for e in every:
            values = (name,) if e is None else (name, e)
            reason = KNOWN.get((test, name if e is None else f"{name}-every{e}")) or KNOWN.get((test, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(*values, marks=marks, id=name if e is None else f"{name}-every{e}"))
    return cases


@pytest.mark.parametrize(("name", "every"), _cases("bitwise", CORPUS, EVERY))
def test_watching_changes_nothing_and_leaves_no_hook(name, every, one_thread):
    plain, watched = _run(name, 0), _run(name, every)
    assert len(plain.losses) == len(watched.losses)
    pairs = enumerate(zip(plain.losses, watched.losses, strict=True))
    first = next((i for i, (a, b) in pairs if not torch.equal(a, b)), None)
    assert first is None, f"loss {first} differs: {plain.losses[first]} vs {watched.losses[first]}"
    changed = [k for k in plain.state if not torch.equal(plain.state[k], watched.state[k])]
    assert changed == [], f"final state differs: {changed[:5]}"
    assert {k: n for k, n in watched.hooks_left.items() if n} == {}, "hooks left"
    for key, mon in watched.monitors.items():
        assert mon.errors == [], f"{key}: {mon.errors}"
    assert watched.warned == [], "nbdiag warned"
    for key, mon in watched.monitors.items():
        assert len(mon.record.steps()) >= 2, f"{key}: {mon.record.steps()} sampled"


@pytest.mark.parametrize(("name", "every"), _cases("live", CORPUS, EVERY))
def test_no_live_alarm(name, every, one_thread):
    watched = _run(name, every)
    found = {key: alarms(mon.findings()) for key, mon in watched.monitors.items()}
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize("name", _cases("stats", CORPUS))
def test_recorded_std_equals_an_independent_hook(name, one_thread):
    watched = _run(name, 1)
    compared = 0
    for key, mon in watched.monitors.items():
        frame = mon.record.frame("activation", stats=["std"])
        recorded = {(int(s), layer): v for s, layer, v in zip(frame.step, frame.layer, frame.value, strict=True)}
        for (step, layer), (n, total, squares) in sorted(watched.spied[key].items()):
            if step < 3 and n > 1 and (step, layer) in recorded:
                std = max(squares / n - (total / n) ** 2, 0.0) ** 0.5
                assert recorded[step, layer] == pytest.approx(std, rel=1e-4, abs=1e-6), (key, step, layer)
                compared += 1
    layers = {key: mon.record.layers() for key, mon in watched.monitors.items()}
    assert compared > 0, (
        f"no layer to compare: recorded {layers}, spied {[list(s)[:5] for s in watched.spied.values()]}"
    )


@pytest.mark.parametrize("name", _cases("update", CORPUS))
def test_update_ratio_recorded_when_watched_with_the_optimizer(name, one_thread):
    watched = _run(name, 1)
    if not watched.optimized:
        pytest.skip("no optimizer passed to watch (manual updates, or one optimizer per parameter)")
    for key in watched.optimized:
        frame = watched.monitors[key].record.frame("update", stats=["update_ratio"])
        values = frame.value.to_numpy()
        assert len(values) and (np.isfinite(values) & (values > 0)).any(), f"{key}: no update ratio recorded"


@pytest.mark.parametrize("name", _cases("preflight", CORPUS))
def test_preflight_raises_no_alarm(name, one_thread):
    args = build(name).preflight
    if args is None:
        pytest.skip("this program's batches are not (x, y) pairs for a loss_fn: no preflight")
    args = dict(args)
    with torch.random.fork_rng():
        report = nbdiag.preflight(
            args.pop("model"), args.pop("data"), args.pop("loss_fn"), progress=False, budget_s=8, **args
        )
    assert alarms(report.findings) == []
