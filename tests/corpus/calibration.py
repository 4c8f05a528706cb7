"""Print, for every warn/fail finding id, how many corpus programs it fires on (live under ``watch(every=1)`` or
``watch(every=10)``, or in ``preflight``): the corpus column of docs/findings.md's calibration table.

    PYTHONPATH=. python -m tests.corpus.calibration [program ...]

Every program here is correct, so every count should be 0. Also prints each program's failure classes.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import torch

import nbdiag
from tests.corpus import programs  # noqa: F401  (registers the programs)
from tests.corpus.harness import ALARMS, CORPUS, build, train_plain, train_watched


def findings_of(name: str) -> tuple[dict[str, set[str]], list[str]]:
    """``({finding id: {where it fired}}, [failure classes])`` for one program."""
    fired: dict[str, set[str]] = defaultdict(set)
    classes: list[str] = []
    plain = train_plain(name)
    for every in (1, 10):
        try:
            run = train_watched(name, every=every, dense=min(every, 10))
        except Exception as error:  # noqa: BLE001 (reported as a class)
            classes.append(f"exception every={every}: {type(error).__name__}: {error}"[:200])
            continue
        same = len(run.losses) == len(plain.losses) and all(
            torch.equal(a, b) for a, b in zip(run.losses, plain.losses, strict=True)
        )
        if not same or any(not torch.equal(plain.state[k], run.state[k]) for k in plain.state):
            classes.append(f"loss not bitwise every={every}")
        if any(run.hooks_left.values()):
            classes.append(f"hook left every={every}: {dict(run.hooks_left)}")
        for key, mon in run.monitors.items():
            if mon.errors:
                classes.append(f"exception every={every} ({key}): {mon.errors[0].message}"[:200])
            for f in mon.findings():
                if f.severity in ALARMS:
                    fired[f"{f.severity} {f.id}"].add(f"live every={every}")
    args = build(name).preflight
    if args is not None:
        args = dict(args)
        with torch.random.fork_rng():
            report = nbdiag.preflight(
                args.pop("model"), args.pop("data"), args.pop("loss_fn"), progress=False, budget_s=8, **args
            )
        for f in report.findings:
            if f.severity in ALARMS:
                fired[f"{f.severity} {f.id}"].add("preflight")
    return fired, classes


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    by_rule: dict[str, list[str]] = defaultdict(list)
    for name in names:
        fired, classes = findings_of(name)
        for rule, where in fired.items():
            by_rule[rule].append(f"{name} ({', '.join(sorted(where))})")
        for c in classes:
            print(f"{name}: {c}")
    print(f"\n| finding (severity id) | corpus programs it fires on (of {len(names)}) | which |")
    print("| --- | --- | --- |")
    for rule in sorted(by_rule):
        print(f"| `{rule}` | {len(by_rule[rule])} | {'; '.join(by_rule[rule])} |")
    if not by_rule:
        print("| (none) | 0 | |")


if __name__ == "__main__":
    main(sys.argv[1:] or list(CORPUS))
