"""`report-platform console` for real: uvicorn on 127.0.0.1 on a free port, spoken to over a socket,
stopped with SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from report_platform_devservers.standins.net import free_port
from report_platform_tests.web.conftest import NO_WEBSERVER, OWNER, make_console, password_of


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    console = make_console(tmp_path / "console")
    port = free_port()
    env = {
        **os.environ,
        "REPORT_PLATFORM_HOME": str(console.home.root),
        "REPORT_PLATFORM_DAGSTER_URL": NO_WEBSERVER,
    }
    env.pop("DAGSTER_HOME", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "report_platform.cli.main", "console", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until it accepts connections (importing the app takes a few seconds)
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("HEAD", "/api/v1/openapi.json")
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the console did not start within 60 s"
                time.sleep(0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _call(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    return connection.getresponse()


def test_the_console_serves_the_api_over_a_socket_and_stops_on_sigterm(served) -> None:  # noqa: ANN001
    port, process = served
    credentials = json.dumps({"email": OWNER, "password": password_of(OWNER)}).encode()
    signed = _call(port, "POST", "/api/v1/session", credentials)
    assert signed.status == 200
    cookie = signed.getheader("Set-Cookie").split(";")[0]
    csrf = json.loads(signed.read())["csrf_token"]

    listed = _call(port, "GET", "/api/v1/reports", headers={"Cookie": cookie})
    assert (listed.status, json.loads(listed.read())) == (200, [])
    assert listed.getheader("Content-Security-Policy").startswith("default-src 'self'")
    assert listed.getheader("Cache-Control") == "no-store" and listed.getheader("Server") is None

    too_big = _call(
        port, "POST", "/api/v1/folders", b"{" + b" " * (300 * 1024) + b"}", {"Cookie": cookie, "X-CSRF-Token": csrf}
    )
    assert too_big.status == 413

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    # A graceful stop is a clean exit: supervisors and `make run` see 0, not a death by signal.
    assert process.returncode == 0
    assert "Waiting for application shutdown." in stderr and "Finished server process" in stderr
    assert password_of(OWNER) not in stderr
