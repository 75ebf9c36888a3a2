"""One live deployment (webserver + daemon + stand-in delivery servers) per test session.

Starting Dagster dominates the time of these tests, so it happens once; the slow actions the
tests check (a backfill, a "run now", a report created while Dagster runs) are started together
by `launched` and checked by the tests one by one while they proceed in parallel.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from report_platform_devservers.standins.net import free_port
from report_platform_tests.ui.live import OWNER, VIEWER, LivePlatform, Pending, late_report_definition

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def live_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    platform = LivePlatform.create(tmp_path_factory.mktemp("live"), free_port())
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()


@dataclass
class Launched:
    """The background CLI commands started against the live deployment, and what they asked."""

    late_report: Pending
    backfill: Pending
    backfill_by_user: Pending  # the same backfill asked for by a User (read-only role)
    backfill_dates: list[date]
    run_now: Pending
    run_now_period: date


@pytest.fixture(scope="session")
def launched(live_platform: LivePlatform) -> Launched:
    assert live_platform.data_days is not None
    last = live_platform.data_days[1]
    late_file = live_platform.workdir / "reports" / "late_aegis.yaml"
    late_file.write_text(yaml.safe_dump(late_report_definition(), sort_keys=False))
    dates = [last - timedelta(days=1), last]
    period = last - timedelta(days=1)
    ids = live_platform.report_ids
    return Launched(
        late_report=live_platform.cli_background("reports", "create", str(late_file), "--user", OWNER),
        backfill=live_platform.cli_background(
            "reports",
            "backfill",
            ids["sms_email"],
            "--user",
            OWNER,
            "--start",
            dates[0].isoformat(),
            "--end",
            dates[-1].isoformat(),
            "--json",
        ),
        backfill_by_user=live_platform.cli_background(
            "reports",
            "backfill",
            ids["sms_email"],
            "--user",
            VIEWER,
            "--start",
            dates[0].isoformat(),
            "--end",
            dates[-1].isoformat(),
            "--json",
        ),
        backfill_dates=dates,
        run_now=live_platform.cli_background(
            "reports",
            "run-now",
            ids["voice_sftp"],
            "--user",
            OWNER,
            "--period-start",
            period.isoformat(),
            "--period-end",
            period.isoformat(),
            "--wait",
            "--json",
        ),
        run_now_period=period,
    )


@pytest.fixture(scope="session")
def browser_context(playwright_driver: Any) -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile, driven by Playwright's sync API."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    profile = tempfile.mkdtemp(prefix="rp-chromium-")
    try:
        context = playwright_driver.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1200},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A new tab; Dagster's first-visit "Join the Dagster community" dialog is skipped if shown."""
    tab = browser_context.new_page()
    tab.add_locator_handler(tab.get_by_role("button", name="Skip"), lambda skip: skip.click())
    try:
        yield tab
    finally:
        tab.close()
