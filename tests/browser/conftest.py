"""Session fixtures for the browser tests: a private JupyterLab server and Debian's Chromium under Playwright.

Every test here is marked ``browser``; all of them are skipped, with the reason, when Chromium, Playwright or a
Jupyter package is missing. ``playwright install`` is never needed: the system Chromium is launched directly.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.browser.jupyter import LabServer, start_lab

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REQUIRED_MODULES = ("playwright", "jupyterlab", "nbformat", "nbclient", "nbconvert", "ipykernel")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
VIEWPORT = {"width": 1400, "height": 1000}


def missing_requirement() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: the browser tests need Debian's chromium package"
    for module in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            found = False
        if not found:
            return f"the {module} package is not installed (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(config, items):
    """Skip every ``browser`` test, with the reason, when Chromium or a required package is missing."""
    reason = missing_requirement()
    if reason is None:
        return
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/browser/``: screenshots and logs a person can look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, request, artifacts) -> LabServer:
    """JupyterLab on 127.0.0.1 (random port, token); its log is saved to the artifacts when a test failed."""
    server = start_lab(tmp_path_factory.mktemp("jupyterlab"))
    yield server
    server.stop()
    if request.session.testsfailed:
        saved = shutil.copy(server.log_path, artifacts / "jupyterlab.log")
        print(f"\nJupyterLab log: {saved}")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (headless)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell that their test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request, artifacts):
    """A fresh browser page (own context: no cookies or storage shared); screenshot saved when the test fails."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(90_000)  # a hang guard: a screenshot of a busy page took over 30 s on a loaded CI core
    new_page = context.new_page()
    yield new_page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        path = artifacts / f"failed-{request.node.name}.png"
        new_page.screenshot(path=str(path))
        print(f"\nscreenshot of the failed test: {path}")
    context.close()
