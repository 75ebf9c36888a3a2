"""Loud failures: a run that fails for good mails the owner and `notify_on_failure` once (never per
retry attempt), and after `pause_after_failures` final failures in a row the report pauses itself,
says so in its audit log and by mail; resuming resets the count. Mails are counted at aiosmtpd."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from report_platform import launch
from report_platform.app import registry_service
from report_platform.launch import launch_report_run
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, evaluate_failure_sensor, failing_sftp_report

FIRST = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))
ONCALL = "oncall@acme.example"


def _failing_report(platform, **fields) -> str:
    service = registry_service(Home.from_env())
    report_id = failing_sftp_report(platform)
    definition = {**service.get_report(OWNER, report_id).definition, **fields}
    service.update_report(OWNER, report_id, definition)
    return report_id


def _attempt(monkeypatch, report_id: str, at: datetime, parent: str | None = None) -> str:
    """One attempt of the scheduled run at `at`; with `parent`, the retry of that run as Dagster's
    run retries tag it. Dagster counts the retries left from the run's group, which a run executed
    in this process does not join, so the last attempt says it has none left (`dagster/max_retries`)."""
    original = launch._tags
    retry = {"dagster/retry_number": "1", "dagster/parent_run_id": parent, "dagster/max_retries": "0"}
    monkeypatch.setattr(launch, "_tags", lambda *a, **k: {**original(*a, **k), **(retry if parent else {})})
    try:
        launched = launch_report_run(report_id, "sms_usage", at, trigger="schedule")
    finally:
        monkeypatch.setattr(launch, "_tags", original)
    assert launched.success is False
    return launched.dagster_run_id


@pytest.fixture
def retrying_instance(platform):
    dagster_home = platform.root.parent / "dagster_home"
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_retries:\n  enabled: true\n  max_retries: 1\n"
    )
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_each_final_failure_mails_the_owner_and_notify_on_failure_once_not_per_attempt(
    platform, smtp, retrying_instance, monkeypatch
):
    report_id = _failing_report(platform, notify_on_failure=[ONCALL, "Owner@acme.example"])
    for day in range(2):
        at = FIRST + timedelta(days=day)
        first = _attempt(monkeypatch, report_id, at)
        assert retrying_instance.get_run_by_id(first).tags["dagster/will_retry"] == "true"
        evaluate_failure_sensor(retrying_instance, first)
        assert len(smtp.received) == day  # an attempt Dagster retries mails nobody
        last = _attempt(monkeypatch, report_id, at, parent=first)
        assert retrying_instance.get_run_by_id(last).tags["dagster/will_retry"] == "false"
        evaluate_failure_sensor(retrying_instance, last)
        evaluate_failure_sensor(retrying_instance, last)  # the sensor looking again at the same failure
        assert len(smtp.received) == day + 1

    for mail in smtp.received:
        # The owner once, even though notify_on_failure names them again in other letters.
        assert sorted(mail.rcpt_tos) == [ONCALL, OWNER]
        message = mail.message
        assert message["Subject"] == "Scheduled report failed: Daily SMS usage"
        body = message.get_content()
        assert "Error: " in body and "NOPE_PASSWORD" in body
        assert f"/reports/{report_id}/audit-log" in body and f"reports audit-log {report_id}" in body
    assert "Failed runs in a row: 2" in smtp.received[1].message.get_content()
    runs = registry_service(Home.from_env()).audit_log(USER, report_id).runs
    assert [r.status for r in runs] == ["FAILED"] * 4
    assert [r.notified_owner_at is not None for r in runs] == [True, False, True, False]


def test_the_report_pauses_itself_after_pause_after_failures_and_resume_resets_the_count(platform, smtp):
    with dg.DagsterInstance.get() as instance:  # no run retries: every failure is final
        report_id = _failing_report(platform, notify_on_failure=[ONCALL], pause_after_failures=2)
        service = registry_service(Home.from_env())
        for day in range(2):
            launched = launch_report_run(report_id, "sms_usage", FIRST + timedelta(days=day), trigger="schedule")
            evaluate_failure_sensor(instance, launched.dagster_run_id)
        (row,) = service.list_reports(USER)
        assert (row.status, row.consecutive_failures) == ("disabled", 2)
        assert [m.message["Subject"] for m in smtp.received] == [
            "Scheduled report failed: Daily SMS usage",
            "Scheduled report paused after 2 failed runs: Daily SMS usage",
        ]
        paused_mail = smtp.received[1]
        assert sorted(paused_mail.rcpt_tos) == [ONCALL, OWNER]
        assert f"reports resume {report_id}" in paused_mail.message.get_content()
        change = service.audit_log(USER, report_id).changes[0]
        assert (change.by, change.action) == ("report-platform", "pause")
        assert change.diff == {
            "status": {"old": "enabled", "new": "disabled"},
            "reason": {"old": None, "new": "paused automatically after 2 consecutive failed runs"},
        }

        assert service.resume(OWNER, report_id)
        (row,) = service.list_reports(USER)
        assert (row.status, row.consecutive_failures) == ("enabled", 0)
        assert service.audit_log(USER, report_id).changes[0].diff["consecutive_failures"] == {"old": 2, "new": 0}
        launched = launch_report_run(report_id, "sms_usage", FIRST + timedelta(days=2), trigger="schedule")
        evaluate_failure_sensor(instance, launched.dagster_run_id)
        (row,) = service.list_reports(USER)
        assert (row.status, row.consecutive_failures) == ("enabled", 1)  # counting afresh: not paused
        assert smtp.received[-1].message["Subject"] == "Scheduled report failed: Daily SMS usage"


def test_a_failure_the_sensor_sees_before_dagster_tags_its_retry_mails_nobody(
    platform, smtp, retrying_instance, monkeypatch
):
    # Dagster stores a run's failure first and tags the run `dagster/will_retry` just after; the
    # daemon may evaluate the failure sensor in between. A run Dagster is about to retry must not
    # be taken for a final failure then: no mail, nothing counted towards pausing the report.
    report_id = _failing_report(platform)
    seen: list[str | None] = []
    add_run_tags = dg.DagsterInstance.add_run_tags

    def sensor_first(instance: dg.DagsterInstance, run_id: str, new_tags: dict[str, str]) -> None:
        if "dagster/will_retry" in new_tags and not seen:
            seen.append(instance.get_run_by_id(run_id).tags.get("dagster/will_retry"))
            evaluate_failure_sensor(instance, run_id)
        add_run_tags(instance, run_id, new_tags)

    monkeypatch.setattr(dg.DagsterInstance, "add_run_tags", sensor_first)
    run_id = _attempt(monkeypatch, report_id, FIRST)

    assert seen == [None]  # the sensor looked at the failure before Dagster's tag existed
    assert retrying_instance.get_run_by_id(run_id).tags["dagster/will_retry"] == "true"
    assert smtp.received == []
    service = registry_service(Home.from_env())
    (row,) = service.audit_log(USER, report_id).runs
    assert row.status == "FAILED" and row.notified_owner_at is None
    assert service.list_reports(USER)[0].consecutive_failures == 0
