"""Shared fixtures: small deterministic models and data."""

from __future__ import annotations

import pytest
import torch

from tests import hardware


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny models: torch's threads only add contention on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    torch.set_num_threads(2)


def pytest_runtest_setup(item):
    """``@pytest.mark.needs("feature")``: skipped, saying why, where this machine lacks it (tests/hardware.py)."""
    for mark in item.iter_markers("needs"):
        for feature in mark.args:
            reason = hardware.missing(feature)
            if reason is not None:
                pytest.skip(reason)
