"""The failure and registry sensors, evaluated through Dagster's own sensor contexts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from report_platform.app import registry_service
from report_platform.launch import launch_report_run
from report_platform.resources import deployment_resources
from report_platform.scheduling.sensors import registry_sensor
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import (
    OWNER,
    USER,
    evaluate_failure_sensor,
    failing_sftp_report,
    sms_definition,
)

SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))


def _instance_with_retries(platform, extra: str = "") -> dg.DagsterInstance:
    """The test's Dagster instance with run retries on (two retries), as production runs it."""
    dagster_home = platform.root.parent / "dagster_home"
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_retries:\n  enabled: true\n  max_retries: 2\n" + extra
    )
    return dg.DagsterInstance.get()


@pytest.fixture
def retrying_instance(platform):
    with _instance_with_retries(platform) as instance:
        yield instance


@pytest.mark.parametrize(("max_retries", "owner_told"), [(None, False), ("0", True)])
def test_the_failure_sensor_mails_the_owner_only_when_dagster_will_not_retry(
    platform, smtp, retrying_instance, monkeypatch, max_retries, owner_told
):
    report_id = failing_sftp_report(platform)
    if max_retries is not None:
        # A run may carry its own retry budget (the `dagster/max_retries` tag); none left here.
        from report_platform import launch

        original = launch._tags
        monkeypatch.setattr(launch, "_tags", lambda *a, **k: {**original(*a, **k), "dagster/max_retries": max_retries})
    launched = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert launched.success is False
    run = retrying_instance.get_run_by_id(launched.dagster_run_id)
    assert run.tags["dagster/will_retry"] == ("false" if owner_told else "true")  # Dagster's own answer
    evaluate_failure_sensor(retrying_instance, launched.dagster_run_id)
    assert len(smtp.received) == (1 if owner_told else 0)
    (row,) = registry_service(Home.from_env()).audit_log(USER, report_id).runs
    assert row.status == "FAILED" and (row.notified_owner_at is not None) == owner_told


def test_an_owner_is_told_when_dagster_does_not_retry_step_failures(platform, smtp):
    # With retry_on_asset_or_op_failure off, Dagster retries only runs whose process died; a
    # delivery that failed in its step is final, whatever the retry budget says.
    with _instance_with_retries(platform, "  retry_on_asset_or_op_failure: false\n") as instance:
        report_id = failing_sftp_report(platform)
        launched = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
        assert instance.get_run_by_id(launched.dagster_run_id).tags["dagster/will_retry"] == "false"
        evaluate_failure_sensor(instance, launched.dagster_run_id)
    assert len(smtp.received) == 1


def test_the_registry_sensor_skips_when_unchanged_and_asks_for_a_reload_after_a_change(platform, smtp):
    service = registry_service(Home.from_env())
    revision = service.system.revision()
    sensor = registry_sensor(revision)
    with dg.build_sensor_context(resources=deployment_resources()) as context:
        unchanged = sensor(context)
    assert isinstance(unchanged, dg.SkipReason) and "unchanged" in unchanged.skip_message
    service.create_report(OWNER, sms_definition())
    with dg.build_sensor_context(resources=deployment_resources()) as context:
        changed = sensor(context)
    assert f"registry revision {revision} -> {revision + 1}" in changed.skip_message
