"""The console over HTTP: a data folder with the demo tenancy, people of acme and globex with
passwords, a fresh registry, and the real ASGI app (`create_app`) driven through Starlette's
TestClient. No Dagster webserver answers (port 9), so "run now" launches in-process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from report_platform.registry.service import ReportService
from report_platform.registry.signin import SignInStore
from report_platform.settings import Home, PlatformSettings
from report_platform.web.app import create_app
from report_platform.web.security import CSRF_HEADER
from report_platform_tests.registry.conftest import FixedClock, snapshot
from report_platform_tests.servers.fixtures import sshd_shared  # noqa: F401  (the connection-test endpoint tests)

OWNER = "owner@acme.example"
ADMIN = "admin@acme.example"
USER = "user@acme.example"  # a User credentialed for acme-east only
GLOBEX_OWNER = "owner@globex.example"
PEOPLE = {
    OWNER: ("acme", "owner", []),
    ADMIN: ("acme", "admin", []),
    USER: ("acme", "user", ["acme-east"]),
    GLOBEX_OWNER: ("globex", "owner", []),
}
SIGN_IN_TABLES = {"user_passwords", "sign_in_sessions", "api_tokens", "auth_events"}
NO_WEBSERVER = "http://127.0.0.1:9"  # the discard port: nothing listens


def password_of(email: str) -> str:
    return f"the long password of {email}"


def cheap_hasher() -> PasswordHasher:
    """argon2id with the smallest parameters: the same code path, a thousandth of the work."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class Console:
    """The app of one data folder, and what its tests look at."""

    app: FastAPI
    home: Home
    clock: FixedClock | None = None
    clients: dict[str, TestClient] = field(default_factory=dict)

    @property
    def service(self) -> ReportService:
        return self.app.state.service

    @property
    def sign_in(self) -> SignInStore:
        return self.app.state.sign_in

    @property
    def engine(self) -> Engine:
        return self.service.engine

    def anonymous(self) -> TestClient:
        return TestClient(self.app)

    def browser(self, email: str) -> TestClient:
        """A client signed in as `email` with the cookie; it sends the session's CSRF token."""
        client = TestClient(self.app)
        answer = client.post("/api/v1/session", json={"email": email, "password": password_of(email)})
        assert answer.status_code == 200, answer.text
        client.headers[CSRF_HEADER] = answer.json()["csrf_token"]
        return client

    def signed_in(self, email: str) -> TestClient:
        """`browser(email)`, made once per console."""
        if email not in self.clients:
            self.clients[email] = self.browser(email)
        return self.clients[email]

    def registry_rows(self) -> dict[str, list[tuple]]:
        """Every row of the registry's tables but the sign-in ones (a session's last use may move)."""
        return {table: rows for table, rows in snapshot(self.engine).items() if table not in SIGN_IN_TABLES}

    def wait_for_runs(self) -> None:
        assert self.app.state.background.wait(timeout=120), "a run-now launch did not finish"


def make_console(root: Path, *, clock: FixedClock | None = None, **settings: object) -> Console:
    home = Home(root).ensure()
    # E-mail reports name the default SMTP connection; nothing listens on port 9.
    smtp = {"host": "127.0.0.1", "port": 9, "security": "none", "from_address": "reports@acme.example"}
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": {**smtp, "organizations": ["acme", "globex"]}}}))
    app = create_app(
        PlatformSettings(home=root, dagster_url=NO_WEBSERVER, **settings), clock=clock, hasher=cheap_hasher()
    )
    console = Console(app, home, clock)
    for email, (org, role, workspaces) in PEOPLE.items():
        console.service.add_user(email, org, role, workspaces)
        console.sign_in.set_password(email, password_of(email))
    return console


@pytest.fixture(scope="session", autouse=True)
def _no_dagster_webserver() -> Iterator[None]:
    """Nothing here reloads or submits to a developer's running Dagster."""
    saved = os.environ.get("REPORT_PLATFORM_DAGSTER_URL")
    os.environ["REPORT_PLATFORM_DAGSTER_URL"] = NO_WEBSERVER
    yield
    if saved is None:
        os.environ.pop("REPORT_PLATFORM_DAGSTER_URL", None)
    else:
        os.environ["REPORT_PLATFORM_DAGSTER_URL"] = saved


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Console:
    """One console per test module, for tests that make their own targets or change nothing."""
    return make_console(tmp_path_factory.mktemp("console"))


@pytest.fixture
def fresh_console(tmp_path: Path) -> Console:
    """A console of its own, with a clock the test moves (throttles and sessions start empty)."""
    return make_console(tmp_path / "console", clock=FixedClock(datetime(2026, 3, 5, 9, 0, tzinfo=UTC)))
