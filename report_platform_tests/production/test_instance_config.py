"""deploy/dagster.production.yaml, loaded as the webserver and the daemon load it, on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator

from report_platform.deployment import INSTANCE_TEMPLATE
from report_platform.scheduling.fork_launcher import ForkRunLauncher
from report_platform.scheduling.pg_storage import PooledRunStorage
from report_platform_tests.servers.postgres import PostgresServer


def test_the_production_instance_answers_the_webservers_queries_from_postgresql(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webserver holds its storage connection open (`optimize_for_webserver`); with psycopg 3
    behind a bare postgresql:// that connection was closed as soon as it was made."""
    name = "instance_config"
    postgres.create_database(name)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_TEMPLATE, home / "dagster.yaml")
    for variable, value in {
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": "not-checked-on-loopback",
        "DAGSTER_PG_DB": name,
    }.items():
        monkeypatch.setenv(variable, value)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance._run_storage, PooledRunStorage)  # noqa: SLF001 - one kept connection
            assert isinstance(instance.run_launcher, ForkRunLauncher)
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            assert instance.run_monitoring_enabled and instance.run_retries_enabled
            instance.optimize_for_webserver(statement_timeout=15000, pool_recycle=3600, max_overflow=20)
            assert instance.get_daemon_heartbeats() == {}
            assert instance.get_runs(limit=1) == []
    finally:
        postgres.drop_database(name)
