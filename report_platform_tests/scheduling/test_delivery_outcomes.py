"""Report runs in Dagster against an SMTP server that misbehaves: the audit log and the number of
copies at the server agree with what the server confirmed."""

from datetime import datetime
from zoneinfo import ZoneInfo

from report_platform.app import registry_service
from report_platform.launch import launch_report_run
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition

SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))


def test_a_run_whose_mail_was_accepted_succeeds_once_even_when_quit_fails(platform, smtp):
    smtp.fail_quit("421 4.3.2 service shutting down")
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    launched = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert launched.success
    assert len(smtp.received) == 1
    (run,) = registry_service(Home.from_env()).audit_log(USER, report_id).runs
    assert run.status == "SUCCESS"
    assert run.delivered_to[0]["extra"]["outcomes"] == {"ops@example.com": "accepted", "audit@example.com": "accepted"}


def test_a_recipient_refused_for_good_fails_the_run_naming_it_and_the_rerun_sends_only_to_it(platform, smtp):
    smtp.refuse_recipient("audit@example.com", "550 5.1.1 mailbox unavailable")
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    failed = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert not failed.success
    assert [m.rcpt_tos for m in smtp.received] == [["ops@example.com"]]
    (run,) = service.audit_log(USER, report_id).runs
    assert run.status == "FAILED"
    assert "audit@example.com" in run.error and "550" in run.error
    # The mailbox is fixed and the tick is run again: only the refused address gets the file.
    again = launch_report_run(report_id, "sms_usage", SCHEDULED, trigger="schedule")
    assert again.success
    assert [m.rcpt_tos for m in smtp.received] == [["ops@example.com"], ["audit@example.com"]]
    assert smtp.received[0].message["Message-ID"] == smtp.received[1].message["Message-ID"]
