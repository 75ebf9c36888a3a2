"""Report runs end to end in Dagster (in-process): build, archive, deliver to a real SMTP server,
audit log, retries that neither rebuild nor re-send, failures that reach the owner once."""

import hashlib
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform.app import registry_service
from report_platform.delivery.connections import Connections
from report_platform.launch import launch_report_run
from report_platform.scheduling.exports import TAG_REPORT
from report_platform.scheduling.failures import record_failure
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, failing_sftp_report, sms_definition

NY = ZoneInfo("America/New_York")
SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=NY)


def _materializations(instance: dg.DagsterInstance, run_id: str):
    return [
        e.asset_materialization for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    ]


def test_a_scheduled_run_builds_archives_delivers_and_writes_the_audit_log(platform, smtp, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    launched = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert launched.success and launched.where == "in-process"
    (mail,) = smtp.received
    message = mail.message
    assert message["Subject"] == "Daily SMS usage - 2026-03-09"
    assert "Bcc" not in message and "audit@example.com" in mail.rcpt_tos
    (attachment,) = list(message.iter_attachments())
    data = attachment.get_content()
    data = data if isinstance(data, bytes) else data.encode()
    assert attachment.get_filename() == "Daily SMS usage_2026-03-08.csv"
    assert data.startswith(b"Timestamp,Status,From,To,Core Campaign")
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "SUCCESS" and run.trigger == "schedule" and run.dagster_run_id == launched.dagster_run_id
    assert run.sha256 == hashlib.sha256(data).hexdigest() and run.bytes == len(data)
    assert run.rows == data.count(b"\r\n") - 1 - data.count(b'"\r\n"')  # records, not counting the header
    assert run.period_start.isoformat() == "2026-03-08T05:00:00+00:00"
    assert run.period_end.isoformat() == "2026-03-09T04:00:00+00:00"  # 23 hours: DST began that day
    assert run.delivered_to[0]["location"] == message["Message-ID"]
    (materialization,) = _materializations(instance, launched.dagster_run_id)
    assert materialization.asset_key == dg.AssetKey("sms_usage_export")
    assert materialization.partition == f"2026-03-09|{report_id}"
    meta = materialization.metadata
    assert meta["sha256"].value == run.sha256 and meta["rows"].value == run.rows
    assert meta["period_start"].value == "2026-03-08T00:00:00-05:00"
    assert meta["message_id"].value == message["Message-ID"]


def test_running_the_same_tick_again_reuses_the_archived_file_and_does_not_resend(platform, smtp, instance):
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    first = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    second = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert first.success and second.success
    assert len(smtp.received) == 1
    meta = _materializations(instance, second.dagster_run_id)[0].metadata
    assert meta["rebuilt"].value is False and meta["reused_earlier_delivery"].value is True


def test_an_empty_period_with_send_when_empty_false_succeeds_without_delivering(platform, smtp):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition(send_when_empty=False))
    launched = launch_report_run(report_id, "sms_usage", datetime(2026, 1, 10, 6, 0, tzinfo=NY), trigger="schedule")
    assert launched.success and smtp.received == []
    (run,) = service.audit_log(USER, report_id).runs
    assert (run.status, run.rows, run.note) == ("SUCCESS", 0, "skipped: no rows")


def test_run_now_for_a_past_period_redelivers_that_period(platform, smtp):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    request = service.request_run_now(OWNER, report_id, datetime(2026, 3, 3).date(), datetime(2026, 3, 4).date())
    launched = launch_report_run(
        report_id,
        "sms_usage",
        datetime(2026, 11, 29, 9, 0, tzinfo=NY),
        trigger="run_now",
        audit_run_id=request.run_id,
        period=(request.period_start, request.period_end),
    )
    assert launched.success
    (run,) = service.audit_log(OWNER, report_id).runs
    assert run.id == request.run_id and run.trigger == "run_now" and run.status == "SUCCESS"
    assert run.period_start.isoformat() == "2026-03-03T05:00:00+00:00"
    assert run.period_end.isoformat() == "2026-03-05T05:00:00+00:00"
    assert smtp.received[0].message["Subject"] == "Daily SMS usage - 2026-11-29"


def test_a_failed_delivery_is_failed_in_the_audit_log_and_the_owner_is_told_once(platform, smtp, instance):
    service = registry_service(Home.from_env())
    report_id = failing_sftp_report(platform)
    launched = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert launched.success is False
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "FAILED" and "NOPE_PASSWORD" in run.error
    dagster_run = instance.get_run_by_id(launched.dagster_run_id)
    assert dagster_run.tags[TAG_REPORT] == report_id
    # Retries are off on this instance, so this failure is final: one notice to the owner ...
    assert record_failure(dagster_run, "delivery failed", service, Connections.from_env()) == [OWNER]
    (notice,) = smtp.received
    assert notice.rcpt_tos == [OWNER] and report_id in notice.message.get_content()
    # ... and evaluating the same failure again (a sensor re-run) does not mail again.
    assert record_failure(dagster_run, "delivery failed", service, Connections.from_env()) == []
    assert len(smtp.received) == 1
    assert service.audit_log(USER, report_id).runs[0].notified_owner_at is not None


def test_the_retention_job_removes_archived_files_past_retention(platform, smtp, monkeypatch):
    from report_platform.definitions import build_definitions

    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    assert launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule").success
    archived = list((platform.archive / report_id).rglob("manifest.json"))
    assert len(archived) == 1
    job = build_definitions([], 0).resolve_job_def("archive_retention_job")
    assert job.execute_in_process().success
    assert list((platform.archive / report_id).rglob("manifest.json")) == archived  # still young
    manifest = archived[0]
    manifest.write_text(manifest.read_text().replace('"built_at": "20', '"built_at": "19'))  # a century old
    assert job.execute_in_process().success
    assert list((platform.archive / report_id).rglob("manifest.json")) == []


def test_a_backfill_redelivers_an_already_delivered_period_once_even_when_retried(platform, smtp, instance):
    from report_platform.definitions import build_definitions
    from report_platform.scheduling.exports import TAG_SCHEDULED, partition_key

    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    assert launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule").success
    job = build_definitions([], 0).resolve_job_def("sms_usage_report_job")
    key = str(partition_key(report_id, SCHEDULED.date()))
    backfill = {TAG_SCHEDULED: SCHEDULED.isoformat(), "dagster/backfill": "bf01"}
    assert job.execute_in_process(instance=instance, partition_key=key, tags=backfill).success
    assert len(smtp.received) == 2  # the backfill re-delivered the period on purpose
    retry = {**backfill, "dagster/retry_number": "1"}
    assert job.execute_in_process(instance=instance, partition_key=key, tags=retry).success
    assert len(smtp.received) == 2  # ... and its retry did not send it a third time
    runs = service.audit_log(USER, report_id).runs
    assert sorted(r.trigger for r in runs) == ["backfill", "retry", "schedule"]
    assert {r.status for r in runs} == {"SUCCESS"}
    assert len({r.sha256 for r in runs}) == 1  # same data, same file
