"""Suite-wide settings: in CI a skipped test is a failure (nothing may be silently left out)."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

# Tests never touch the developer's data folder or Dagster instance: each test that needs them
# makes its own; anything else lands in a throwaway folder.
os.environ.pop("DAGSTER_HOME", None)
os.environ["REPORT_PLATFORM_HOME"] = tempfile.mkdtemp(prefix="report-platform-tests-")

# Started in the background (a CI runner, `make test &`), the suite inherits SIGINT ignored, and
# Dagster's in-process execution maps SIGTERM to SIGINT's handler (`setup_interrupt_handlers`):
# SIGTERM became ignored in the test process, and in every server or service a later test started
# (an ignored signal survives exec), so they could only be SIGKILLed. Python's own handler, as in a
# foreground run, is reset to the default in each child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, which is not allowed: {reason}"


@pytest.fixture
def home(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """A fresh data folder, set as $REPORT_PLATFORM_HOME for the test."""
    from report_platform.settings import Home

    root = tmp_path / "home"
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(root))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return Home(root).ensure()


# Modules that spend minutes waiting for real schedule ticks, longest first. Handed out first (one
# to each xdist worker), they wait while the other modules run; handed out last, as xdist's own
# order by test count did, the suite ended with one worker idle for their whole length.
WAITING_MODULES = (
    "report_platform_tests/production/test_daemon_kill.py",
    "report_platform_tests/production/test_backup_restore.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return WAITING_MODULES.index(path) if path in WAITING_MODULES else len(WAITING_MODULES)

    items.sort(key=rank)  # stable: every other test keeps its place


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    """One Playwright driver per test process: its sync API runs an event loop in this thread,
    and a second `sync_playwright()` while one is open refuses to start, so every browser
    fixture (the Dagster UI's and the console's) launches from this one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright
