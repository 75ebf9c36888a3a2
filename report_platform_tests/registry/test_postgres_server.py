"""The PostgreSQL test server fails loudly, with the fix, when PostgreSQL is not installed."""

from __future__ import annotations

import pytest

from report_platform_tests.servers import postgres


def test_missing_binaries_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("REPORT_PLATFORM_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)

    with pytest.raises(postgres.PostgresUnavailable, match="apt-get install postgresql"):
        postgres.find_bindir()


def test_server_accepts_connections_and_makes_databases(postgres_server) -> None:
    import psycopg

    url = postgres_server.create_database("probe")
    assert url.endswith("/probe")
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port, user="postgres", dbname="probe") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("probe",)
    postgres_server.drop_database("probe")
