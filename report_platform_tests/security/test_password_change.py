"""A password change ends what the old password opened: every session and every API token of
that person, in every browser and script, over real HTTP (uvicorn on 127.0.0.1). The change is
made as the operator makes it, with `report-platform users set-password`. Others stay signed in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from click.testing import CliRunner

from report_platform.cli.main import cli
from report_platform.web.security import CSRF_HEADER, SESSION_COOKIE
from report_platform_devservers.standins.net import free_port
from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import ADMIN, OWNER, Console, make_console, password_of

NEW_PASSWORD = "a new passphrase after a leak"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Console, str]]:
    """A console of its own served by uvicorn, and its address; the CLI works on its data folder."""
    console = make_console(tmp_path / "console")
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(console.home.root))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(console.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the console did not start"
        time.sleep(0.02)
    try:
        yield console, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _browser(base: str, email: str, password: str) -> httpx2.Client:
    client = httpx2.Client(base_url=base, timeout=30)
    answer = client.post("/api/v1/session", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers[CSRF_HEADER] = answer.json()["csrf_token"]
    return client


def _operator(*args: str, stdin: str | None = None) -> str:
    ran = CliRunner().invoke(cli, list(args), input=stdin)
    assert ran.exit_code == 0, ran.output
    return ran.stdout


def test_a_password_change_refuses_every_session_and_api_token_issued_before_it(served) -> None:  # noqa: ANN001
    console, base = served
    laptop, phone = (_browser(base, OWNER, password_of(OWNER)) for _ in range(2))
    script = httpx2.Client(base_url=base, timeout=30)
    script.headers["Authorization"] = "Bearer " + _operator("users", "token", OWNER, "--name", "nightly").strip()
    colleague = _browser(base, ADMIN, password_of(ADMIN))
    for client in (laptop, phone, script, colleague):
        assert client.get("/api/v1/reports").status_code == 200

    said = _operator("users", "set-password", OWNER, "--password-stdin", stdin=NEW_PASSWORD + "\n")

    for client in (laptop, phone, script):
        assert client.get("/api/v1/reports").status_code == 401, client.headers.get("Authorization", "cookie")[:6]
        assert client.post("/api/v1/reports", json=sms_definition()).status_code == 401
        page = client.get("/")
        assert (page.status_code, page.headers["location"]) == (303, "/login")
    assert said == f"password of {OWNER} set; 2 session(s) ended, 1 API token(s) revoked\n"
    assert colleague.get("/api/v1/reports").status_code == 200  # someone else's change ends nothing of theirs
    old = httpx2.post(f"{base}/api/v1/session", json={"email": OWNER, "password": password_of(OWNER)}, timeout=30)
    assert old.status_code == 401
    fresh = _browser(base, OWNER, NEW_PASSWORD)
    assert fresh.cookies[SESSION_COOKIE] not in (laptop.cookies[SESSION_COOKIE], phone.cookies[SESSION_COOKIE])
    assert fresh.post("/api/v1/reports", json=sms_definition()).status_code == 201
    script.headers["Authorization"] = "Bearer " + _operator("users", "token", OWNER, "--name", "nightly").strip()
    assert script.get("/api/v1/reports").status_code == 200
    assert [t.revoked_at is not None for t in console.sign_in.tokens(OWNER)] == [False, True]


def test_setting_a_first_password_keeps_the_api_tokens_of_someone_who_had_none(served) -> None:  # noqa: ANN001
    console, base = served
    _operator("users", "add", "robot@acme.example", "--org", "acme", "--role", "user")
    script = httpx2.Client(base_url=base, timeout=30)
    script.headers["Authorization"] = "Bearer " + _operator("users", "token", "robot@acme.example").strip()

    said = _operator("users", "set-password", "robot@acme.example", "--password-stdin", stdin=NEW_PASSWORD + "\n")

    assert said == "password of robot@acme.example set; 0 session(s) ended, 0 API token(s) revoked\n"
    assert script.get("/api/v1/reports").status_code == 200
    assert _browser(base, "robot@acme.example", NEW_PASSWORD).get("/api/v1/reports").status_code == 200
