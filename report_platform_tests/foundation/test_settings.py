"""One settings model: every surface (CLI, Dagster assets, resources) answers from the same values."""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from report_platform.settings import SettingsError, current_settings

PACKAGE = Path(__file__).resolve().parents[2] / "report_platform"


def test_scheduled_ingestion_with_source_landing_fails_for_a_day_without_a_landing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPORT_PLATFORM_SOURCE", "landing")
    monkeypatch.delenv("REPORT_PLATFORM_REGISTRY_URL", raising=False)
    from report_platform.definitions import build_definitions
    from report_platform.ingest.assets import voice_calls

    definitions = build_definitions([], 0)
    result = dg.materialize(
        [voice_calls],
        resources=definitions.resources,
        partition_key="2026-03-08",
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    # The production setting says "landing only": never invent synthetic usage for a missing day.
    assert not result.success
    assert not list((tmp_path / "home" / "store" / "voice_calls").glob("day=2026-03-08/*.parquet"))


def test_a_malformed_setting_is_refused_naming_its_variable(monkeypatch):
    monkeypatch.setenv("REPORT_PLATFORM_ROWS_PER_DAY", "lots")
    with pytest.raises(SettingsError, match="REPORT_PLATFORM_ROWS_PER_DAY"):
        current_settings()


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv", "environb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            lines.append(node.lineno)
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_settings_model_reads_the_environment():
    readers = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if relative == "report_platform/settings.py":
            continue
        lines = _reads_environment(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            readers[relative] = lines
    assert readers == {}


def test_every_resource_value_set_in_the_environment_reaches_dagster_as_an_env_var(tmp_path, monkeypatch):
    from report_platform.resources import deployment_resources

    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPORT_PLATFORM_REGISTRY_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("REPORT_PLATFORM_ROWS_PER_DAY", "123")
    monkeypatch.delenv("REPORT_PLATFORM_SOURCE", raising=False)
    resources = deployment_resources()
    store = resources["usage_store"]
    assert store.rows_per_day == dg.EnvVar.int("REPORT_PLATFORM_ROWS_PER_DAY")
    assert store.source == "synthetic"  # not set: the settings' default, as a plain value
    assert resources["registry"].registry_url == dg.EnvVar("REPORT_PLATFORM_REGISTRY_URL")
    # What Dagster resolves the variables to is what the settings model read.
    with dg.build_resources({"usage_store": store, "registry": resources["registry"]}) as built:
        assert built.usage_store.rows_per_day == current_settings().rows_per_day == 123
        assert built.registry.registry_url == current_settings().registry_url


def test_schedules_and_sensors_use_the_registry_the_deployment_names(tmp_path, monkeypatch):
    """A registry named by REPORT_PLATFORM_REGISTRY_URL (not the data folder's registry.db) is the
    one a schedule tick and the registry sensor read, through the `registry` resource."""
    from report_platform.app import registry_service
    from report_platform.definitions import build_definitions
    from report_platform.resources import deployment_resources
    from report_platform.scheduling.schedules import report_schedules
    from report_platform.scheduling.sensors import registry_sensor
    from report_platform.settings import Home
    from report_platform_tests.samples import sms_definition

    home = tmp_path / "home"
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(home))
    monkeypatch.setenv("REPORT_PLATFORM_REGISTRY_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    service = registry_service(Home.from_env())
    service.add_user("owner@acme.example", "acme", "owner")
    definition = sms_definition(destination={"type": "sftp", "connection": "x", "remote_dir": "/in"})
    (home / "connections.yaml").write_text(
        "sftp:\n  x: {host: 127.0.0.1, port: 9, username: u, password_env: NOPE, host_key: 'ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIBmvr1KqG1qmYFzsT7fD9GmjE8fHqRxG0a2g0fYzb1Zt', organizations: [acme]}\n"
    )
    report_id = service.create_report("owner@acme.example", definition)
    assert not (home / "registry.db").exists()
    (schedule,), revision = report_schedules(service)
    repository = build_definitions([schedule], revision).get_repository_def()
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 3, 9, 6, tzinfo=ZoneInfo("America/New_York")),
            repository_def=repository,
            resources=deployment_resources(),
        ) as context,
    ):
        (request,) = schedule.evaluate_tick(context).run_requests
    assert request.run_config["ops"]["deliver_reports"]["config"]["report_ids"] == [report_id]
    with dg.build_sensor_context(resources=deployment_resources()) as context:
        assert "unchanged" in registry_sensor(revision)(context).skip_message
    assert not (home / "registry.db").exists()
