"""`GET /healthz`: the console's health check for load balancers and the production supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from report_platform.settings import PlatformSettings
from report_platform.web.app import create_app
from report_platform_tests.servers.postgres import PostgresServer, postgres_server  # noqa: F401
from report_platform_tests.web.conftest import NO_WEBSERVER, Console

PASSWORD = "health-check-secret-8f3a"


def test_healthz_answers_ok_without_sign_in(console: Console) -> None:
    answer = console.anonymous().get("/healthz")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok"}
    assert answer.headers["cache-control"] == "no-store"
    assert "set-cookie" not in answer.headers
    assert "/healthz" not in console.anonymous().get("/api/v1/openapi.json").json()["paths"]


def test_healthz_answers_503_and_nothing_more_when_the_registry_is_gone(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "health_check_registry"
    url = postgres_server.create_database(name).replace("postgres@", f"postgres:{PASSWORD}@")
    app = create_app(PlatformSettings(home=tmp_path / "home", registry_url=url, dagster_url=NO_WEBSERVER))
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200

    postgres_server.drop_database(name)
    answer = client.get("/healthz")

    assert answer.status_code == 503, answer.text
    assert answer.json() == {"status": "unavailable"}
    for leak in (PASSWORD, name, str(postgres_server.port)):
        assert leak not in answer.text
    logged = [r.getMessage() for r in caplog.records if "health check" in r.getMessage()]
    assert logged, "the console's log says why the registry did not answer"
    assert all(PASSWORD not in line for line in logged)
