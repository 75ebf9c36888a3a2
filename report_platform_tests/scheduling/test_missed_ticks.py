"""Scheduled times the scheduler skipped over are MISSED in the audit log, and the owner is told once.

Ticks are evaluated as the daemon evaluates them (the schedule's own evaluation in the code
location), at scheduled times after the report was created; the notice goes through a real SMTP
server on loopback.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from report_platform.app import registry_service
from report_platform.reports.definition import Schedule
from report_platform.reports.schedule import next_run_after
from report_platform.resources import deployment_resources
from report_platform.scheduling.missed import report_missed_tick_sensor
from report_platform.scheduling.schedules import batch_run_key
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, sms_definition
from report_platform_tests.scheduling.test_schedules import _schedule as schedule_of
from report_platform_tests.scheduling.test_schedules import _tick as evaluate_schedule

NY = ZoneInfo("America/New_York")


def _tick(report_id: str, instance: dg.DagsterInstance, at: datetime) -> tuple[list[dg.RunRequest], str | None]:
    """Evaluate the report's schedule at `at` as the daemon would."""
    return evaluate_schedule(schedule_of(report_id), instance, at)


def _evaluate_sensor(instance: dg.DagsterInstance) -> str | None:
    with dg.build_sensor_context(instance=instance, resources=deployment_resources()) as context:
        result = report_missed_tick_sensor.evaluate_tick(context)
    return result.skip_message


def _first_tick(report_id: str) -> datetime:
    """The report's first scheduled time after now (it was just created)."""
    view = registry_service(Home.from_env()).system.report_for_run(report_id)
    assert view is not None
    return next_run_after(Schedule.model_validate(view.definition["schedule"]), datetime.now(UTC))


def _skipped_over(instance: dg.DagsterInstance, name: str, days: int) -> tuple[str, datetime]:
    """A new report ticked at its first time and again `days` later: the times between skipped over."""
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition(name=name))
    first = _first_tick(report_id)
    _tick(report_id, instance, first)
    _tick(report_id, instance, first + timedelta(days=days))
    return report_id, first


def _schedule_rows(report_id: str) -> list:
    log = registry_service(Home.from_env()).audit_log(OWNER, report_id)
    return sorted((r for r in log.runs if r.trigger == "schedule"), key=lambda r: r.scheduled_at)


def test_times_skipped_over_between_two_evaluated_ticks_are_missed_once(platform, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    first = _first_tick(report_id)
    runs, _ = _tick(report_id, instance, first)
    assert len(runs) == 1 and _schedule_rows(report_id) == []  # on time: nothing missed
    # The daemon was down for the next two days' ticks: Dagster evaluates only the latest, late.
    late = first + timedelta(days=3)
    runs, _ = _tick(report_id, instance, late)
    assert [r.run_key for r in runs] == [batch_run_key(schedule_of(report_id).name, late, 1, [report_id])]
    rows = _schedule_rows(report_id)
    assert [r.status for r in rows] == ["MISSED", "MISSED"]
    assert [r.scheduled_at for r in rows] == [first + timedelta(days=1), first + timedelta(days=2)]
    # The periods they would have covered: the previous day, in the report's timezone.
    day = (first + timedelta(days=1)).astimezone(NY).date() - timedelta(days=1)
    assert rows[0].period_start == datetime(day.year, day.month, day.day, tzinfo=NY)
    assert rows[0].period_end == rows[0].period_start + timedelta(days=1)
    assert "never evaluated" in rows[0].error and rows[0].finished_at is not None
    # The same tick evaluated again (a daemon killed during it) records nothing more.
    _tick(report_id, instance, late)
    assert len(_schedule_rows(report_id)) == 2


def test_a_gap_in_a_paused_report_or_before_a_schedule_change_is_not_missed(platform, instance):
    service = registry_service(Home.from_env())
    paused = service.create_report(OWNER, sms_definition(name="Paused for a while"))
    first = _first_tick(paused)
    _tick(paused, instance, first)
    service.pause(OWNER, paused)
    _, skip = _tick(paused, instance, first + timedelta(days=3))
    assert "paused" in skip
    assert _schedule_rows(paused) == []
    service.resume(OWNER, paused)
    _tick(paused, instance, first + timedelta(days=4))
    assert _schedule_rows(paused) == []  # the paused tick was evaluated: nothing skipped over

    edited = service.create_report(OWNER, sms_definition(name="Moved to 07:30"))
    _tick(edited, instance, _first_tick(edited))
    later = {"timezone": "America/New_York", "frequency": "daily", "time_of_day": "07:30:00"}
    service.update_report(OWNER, edited, sms_definition(name="Moved to 07:30", schedule=later))
    # The first tick of the new schedule owes nothing from before the change.
    _tick(edited, instance, _first_tick(edited))
    assert _schedule_rows(edited) == []


def test_the_owner_is_told_once_with_the_command_that_re_delivers(platform, instance, smtp):
    report_id, first = _skipped_over(instance, "Daily SMS for finance", 3)
    assert _evaluate_sensor(instance) == "0 scheduled time(s) recorded MISSED; owners of 1 report(s) told"
    (message,) = smtp.received
    mail = message.message
    assert mail["Subject"] == "Scheduled report missed 2 runs: Daily SMS for finance"
    assert message.rcpt_tos == [OWNER]
    body = mail.get_content()
    for missed in (first + timedelta(days=1), first + timedelta(days=2)):
        assert f"{missed.astimezone(NY):%Y-%m-%d %H:%M}" in body
    start, end = ((first + timedelta(days=n)).astimezone(NY).date() for n in (1, 2))
    assert f"report-platform reports backfill {report_id} --user EMAIL --start {start} --end {end}" in body
    assert all(r.notified_owner_at is not None for r in _schedule_rows(report_id))
    # Looked at again: told already, nothing more is sent.
    assert _evaluate_sensor(instance) == "no missed scheduled times"
    assert len(smtp.received) == 1


def test_an_unsent_notice_is_tried_again_at_the_next_look(platform, instance, smtp):
    report_id, _ = _skipped_over(instance, "Told later", 2)
    smtp.fail_next("554 5.7.1 not now")
    # The sensor's tick fails loudly in Dagster; the rows wait for the next look.
    with pytest.raises(Exception, match="refused|554"):
        _evaluate_sensor(instance)
    assert smtp.received == []
    assert all(r.notified_owner_at is None for r in _schedule_rows(report_id))
    _evaluate_sensor(instance)
    assert len(smtp.received) == 1
    assert all(r.notified_owner_at is not None for r in _schedule_rows(report_id))
