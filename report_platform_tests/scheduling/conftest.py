from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from report_platform.app import registry_service
from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.runner import ingest_range
from report_platform.settings import Home
from report_platform_devservers.standins import SmtpStandin
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.samples import sms_definition as sample_definition
from report_platform_tests.servers.fixtures import smtp_factory  # noqa: F401

OWNER = "owner@acme.example"
USER = "user@acme.example"


@pytest.fixture(scope="module")
def store_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A data folder with a week of small synthetic usage (made once per module)."""
    home = Home(tmp_path_factory.mktemp("store-home")).ensure()
    import os

    saved = {k: os.environ.get(k) for k in ("REPORT_PLATFORM_ROWS_PER_DAY", "DAGSTER_HOME")}
    os.environ["REPORT_PLATFORM_ROWS_PER_DAY"] = "400"
    os.environ.pop("DAGSTER_HOME", None)  # this store is shared by tests with their own instances
    try:
        ingest_range(home, date(2026, 3, 2), date(2026, 3, 9))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return home


@pytest.fixture
def platform(store_home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """The module's store with a fresh registry, archive and Dagster instance for this test."""
    home = Home(tmp_path / "home").ensure()
    (home.root / "store").rmdir()
    (home.root / "store").symlink_to(store_home.store)
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(home.root))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("REPORT_PLATFORM_DAGSTER_URL", "http://127.0.0.1:9")  # no webserver: run in-process
    # E-mail reports name the default SMTP connection, so saving one needs it; the `smtp` fixture
    # points it at a real server. Port 9 (discard) has no listener here.
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": _smtp_connection(9)}}))
    with fresh_registry(home, [(OWNER, "acme", "owner"), (USER, "acme", "user")]):
        yield home


@pytest.fixture
def smtp(smtp_factory, platform: Home) -> SmtpStandin:  # noqa: F811
    server = smtp_factory(security="none")
    platform.connections.write_text(yaml.safe_dump({"smtp": {"default": _smtp_connection(server.port)}}))
    return server


def _smtp_connection(port: int) -> dict:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "reports@acme.example",
        "organizations": ["acme"],
    }


def sms_definition(**overrides) -> dict:
    """The shared example, with a one-day file name and no body."""
    definition = sample_definition(filename_pattern="{{ReportName}}_{{PeriodStart}}.csv")
    del definition["destination"]["body_template"]
    definition.update(overrides)
    return definition


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as inst:
        yield inst


assert DEMO_TENANCY


def failing_sftp_report(platform: Home) -> str:
    """An SMS report of the Owner's whose SFTP delivery fails for good: its password variable is unset."""
    connections = yaml.safe_load(platform.connections.read_text())
    connections["sftp"] = {
        "partner": {
            "host": "127.0.0.1",
            "port": 9,
            "username": "u",
            "password_env": "NOPE_PASSWORD",
            "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmvr1KqG1qmYFzsT7fD9GmjE8fHqRxG0a2g0fYzb1Zt",
            "organizations": ["acme"],
        }
    }
    platform.connections.write_text(yaml.safe_dump(connections))
    destination = {"type": "sftp", "connection": "partner", "remote_dir": "/in"}
    return registry_service(platform).create_report(OWNER, sample_definition(destination=destination))


def evaluate_failure_sensor(
    instance: dg.DagsterInstance, run_id: str, sensor: dg.RunFailureSensorDefinition | None = None
) -> Any:
    """Evaluate a run failure sensor (default `report_run_failure_sensor`) on the run's failure, as
    the daemon does; returns what the sensor returned."""
    from report_platform.resources import deployment_resources
    from report_platform.scheduling.sensors import report_run_failure_sensor

    sensor = sensor or report_run_failure_sensor
    run = instance.get_run_by_id(run_id)
    (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources=deployment_resources(),
    ) as context:
        return sensor(context.for_run_failure())
