from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.schedules import schedule_execution_time_iterator

from report_platform.app import registry_service
from report_platform.definitions import build_definitions
from report_platform.resources import deployment_resources
from report_platform.scheduling.schedules import evaluate_tick, report_schedules, schedule_name
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, sms_definition

NY = ZoneInfo("America/New_York")


def _schedule(report_id: str) -> dg.ScheduleDefinition:
    schedules, _ = report_schedules(registry_service(Home.from_env()))
    return next(s for s in schedules if s.name == schedule_name(report_id))


def _fires(schedule: dg.ScheduleDefinition, start: float):
    """When Dagster's scheduler fires this schedule (its own iterator, not ours)."""
    return schedule_execution_time_iterator(start, schedule.cron_schedule, schedule.execution_timezone)


def _tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, at: datetime):
    """Evaluate a tick as the daemon would: in the code location that holds the schedule."""
    repository = build_definitions([schedule], 0)
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        repository_def=repository.get_repository_def(),
        resources=deployment_resources(),
    ) as context:
        result = schedule.evaluate_tick(context)
    return list(result.run_requests or []), result.skip_message


def test_each_report_is_a_schedule_named_from_its_id_in_its_own_timezone(platform, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    schedule = _schedule(report_id)
    assert schedule.name == f"report_{report_id}_schedule"
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.job_name == "sms_usage_report_job"


def test_the_schedule_fires_at_six_local_on_both_sides_of_dst(platform, instance):
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    schedule = _schedule(report_id)
    start = datetime(2026, 3, 6, tzinfo=NY).timestamp()
    times = _fires(schedule, start)
    fired = [next(times) for _ in range(5)]
    assert [t.astimezone(NY).hour for t in fired] == [6, 6, 6, 6, 6]
    assert [t.utcoffset().total_seconds() / 3600 for t in fired] == [
        -5,
        -5,
        -4,
        -4,
        -4,
    ]  # 2026-03-06 … 03-10; DST starts 03-08


def test_a_tick_asks_for_one_run_keyed_by_report_and_scheduled_time(platform, instance):
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    at = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
    runs, _ = _tick(_schedule(report_id), instance, at)
    (run,) = runs
    assert run.run_key == f"{report_id}@2026-03-09T10:00:00+00:00"
    assert run.partition_key == f"2026-03-09|{report_id}"
    assert run.tags["report_platform/scheduled_at"] == "2026-03-09T06:00:00-04:00"
    assert instance.has_dynamic_partition("sms_usage_reports", report_id)
    again, _ = _tick(_schedule(report_id), instance, at)
    assert again[0].run_key == run.run_key  # the same tick never means a second run


def test_a_paused_or_deleted_report_skips_its_tick_with_the_reason(platform, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    schedule = _schedule(report_id)
    at = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
    service.pause(OWNER, report_id)
    runs, skip = _tick(schedule, instance, at)
    assert runs == [] and "paused" in skip
    service.resume(OWNER, report_id)
    assert len(_tick(schedule, instance, at)[0]) == 1
    service.delete(OWNER, report_id)
    runs, skip = _tick(schedule, instance, at)
    assert runs == [] and "deleted" in skip
    assert schedule_name(report_id) not in [s.name for s in report_schedules(registry_service(Home.from_env()))[0]]


def test_an_edited_time_takes_effect_at_the_reload_and_the_old_schedule_skips(platform, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    old = _schedule(report_id)
    before = service.system.revision()
    service.update_report(
        OWNER,
        report_id,
        sms_definition(schedule={"timezone": "America/New_York", "frequency": "daily", "time_of_day": "07:30:00"}),
    )
    assert service.system.revision() > before
    runs, skip = _tick(old, instance, datetime(2026, 3, 9, 6, 0, tzinfo=NY))
    assert runs == [] and "rescheduled" in skip
    assert _schedule(report_id).cron_schedule == "30 7 * * *"


def test_monthly_on_the_31st_runs_on_the_last_day_of_short_months(platform, instance):
    report_id = registry_service(Home.from_env()).create_report(
        OWNER,
        sms_definition(
            schedule={
                "timezone": "America/New_York",
                "frequency": "monthly",
                "day_of_month": 31,
                "time_of_day": "06:00:00",
            },
            period={"kind": "previous_month"},
        ),
    )
    schedule = _schedule(report_id)
    start = datetime(2027, 1, 1, tzinfo=NY).timestamp()
    times = _fires(schedule, start)
    due = []
    for _ in range(20):
        at = next(times)
        if at.year > 2028:
            break
        result = evaluate_tick(
            registry_service(Home.from_env()),
            report_id,
            schedule.cron_schedule if isinstance(schedule.cron_schedule, list) else [schedule.cron_schedule],
            at,
            instance,
        )
        if isinstance(result, dg.RunRequest):
            due.append(at.astimezone(NY).date().isoformat())
    assert due[:4] == ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
