"""The real console (`create_app`) served by uvicorn from a fresh data folder, and one headless
Chromium, per test module.

The data folder holds two days of small synthetic usage (yesterday and today, so "run now" of the
latest period has rows), a `default` SMTP connection pointing at a real SMTP stand-in (and an SFTP
and an S3 connection that reports may name), and the
users Owner and Admin of acme with passwords. "Run now" runs execute in the console's own process
(no Dagster webserver answers), against a Dagster instance of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from argon2 import PasswordHasher

from report_platform.app import _service
from report_platform.ingest.runner import ingest_range
from report_platform.settings import Home, PlatformSettings
from report_platform.web.app import create_app
from report_platform_devservers.standins import SmtpStandin
from report_platform_devservers.standins.net import free_port

OWNER = "owner@acme.example"
ADMIN = "admin@acme.example"
PASSWORDS = {OWNER: "owner-password-for-tests", ADMIN: "admin-password-for-tests"}

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Console:
    """The running console: its address, data folder, app and the SMTP server its mail goes to."""

    url: str
    home: Home
    app: Any
    smtp: SmtpStandin
    shots: Path  # screenshots and measurements, under pytest's tmp folder

    @property
    def service(self) -> Any:
        return self.app.state.service

    def at(self, path: str) -> str:
        return self.url + path


def _smtp_connection(port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "reports@acme.example",
        "organizations": ["acme"],
    }


# Named so a report may be saved with SFTP and S3 destinations (saving checks names only); nothing
# listens at these addresses, so a connection test of them fails at its first network step.
SFTP_CONNECTION = "partner-sftp"
S3_CONNECTION = "reports-s3"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFnAphZQG3Eea3rxL9sdpoLCgxC+anAWuVhdYXrKQYhF"


def _connections(smtp_port: int) -> dict[str, Any]:
    return {
        "smtp": {"default": _smtp_connection(smtp_port)},
        "sftp": {
            SFTP_CONNECTION: {
                "host": "127.0.0.1",
                "port": free_port(),
                "username": "upload",
                "password_env": "WEB_UI_SFTP_PASSWORD",
                "host_key": HOST_KEY,
                "organizations": ["acme"],
            }
        },
        "s3": {S3_CONNECTION: {"region": "us-east-1", "organizations": ["acme"]}},
    }


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    home = Home(work / "home").ensure()
    dagster_home = work / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    shots = work / "screenshots"
    shots.mkdir()
    with pytest.MonkeyPatch.context() as env:
        # Runs launched by the console read the deployment's settings from the environment.
        env.setenv("REPORT_PLATFORM_HOME", str(home.root))
        env.setenv("REPORT_PLATFORM_ROWS_PER_DAY", "150")
        env.setenv("DAGSTER_HOME", str(dagster_home))
        env.setenv("REPORT_PLATFORM_DAGSTER_URL", "http://127.0.0.1:9")  # no webserver: runs execute in-process
        today = datetime.now(UTC).date()
        ingest_range(home, today - timedelta(days=2), today)
        smtp = SmtpStandin(security="none").start()
        home.connections.write_text(yaml.safe_dump(_connections(smtp.port)))
        _service.cache_clear()
        # Cheap argon2id parameters: the tests sign in a few times, not a million.
        app = create_app(PlatformSettings(), hasher=PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
        service = app.state.service
        service.add_user(OWNER, "acme", "owner")
        service.add_user(ADMIN, "acme", "admin")
        for email, password in PASSWORDS.items():
            app.state.sign_in.set_password(email, password)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, name="console", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the console did not start")
            time.sleep(0.02)
        try:
            yield Console(f"http://127.0.0.1:{port}", home, app, smtp, shots)
        finally:
            server.should_exit = True
            thread.join(timeout=60)
            smtp.stop()
            _service.cache_clear()


@pytest.fixture(scope="module")
def browser(playwright_driver: Any) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright's sync API (never `playwright install`)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    launched = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    try:
        yield launched
    finally:
        launched.close()
