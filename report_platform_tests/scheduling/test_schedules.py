from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import schedule_execution_time_iterator

from report_platform.app import registry_service
from report_platform.definitions import build_definitions
from report_platform.reports.definition import Schedule
from report_platform.resources import deployment_resources
from report_platform.scheduling.batches import batches
from report_platform.scheduling.schedules import batch_run_key, evaluate_tick, evaluate_timing_tick, report_schedules
from report_platform.scheduling.timings import schedule_names, timing_schedule_name
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, sms_definition

NY = ZoneInfo("America/New_York")


def _schedule(report_id: str) -> dg.ScheduleDefinition:
    """The schedule that ticks for the report: its own, or its timing's when another report shares it."""
    service = registry_service(Home.from_env())
    schedules, _ = report_schedules(service)
    name = schedule_names(service.system.schedule_specs())[report_id]
    return next(s for s in schedules if s.name == name)


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


def test_a_report_alone_at_its_time_has_its_timings_schedule_in_its_own_timezone(platform, instance):
    service = registry_service(Home.from_env())
    report_id = service.create_report(OWNER, sms_definition())
    schedule = _schedule(report_id)
    assert schedule.name == f"reports_daily_0600_{_digest()}_schedule"
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.job_name == "report_batch_job"


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


def test_a_tick_asks_for_one_run_keyed_by_schedule_scheduled_time_and_reports(platform, instance):
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition())
    at = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
    schedule = _schedule(report_id)
    runs, _ = _tick(schedule, instance, at)
    (run,) = runs
    assert run.run_key == batch_run_key(schedule.name, at, 1, [report_id])
    assert run.run_key.startswith(f"{schedule.name}@2026-03-09T10:00:00+00:00#1:")
    assert run.run_config == {"ops": {"deliver_reports": {"config": {"report_ids": [report_id]}}}}
    assert run.tags["report_platform/scheduled_at"] == "2026-03-09T06:00:00-04:00"
    assert run.tags[f"report_platform/report.{report_id}"] == "in batch"
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
    assert schedule.name not in [s.name for s in report_schedules(registry_service(Home.from_env()))[0]]


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


def _seven_thirty(**overrides) -> dict:
    return sms_definition(
        schedule={"timezone": "America/New_York", "frequency": "daily", "time_of_day": "07:30:00"}, **overrides
    )


def test_reports_that_share_a_timing_share_one_schedule_of_batches(platform, instance):
    service = registry_service(Home.from_env())
    shared = sorted(service.create_report(OWNER, sms_definition(name=f"Shared {i}")) for i in range(3))
    alone = service.create_report(OWNER, _seven_thirty(name="Alone"))
    schedules, _ = report_schedules(service)
    names = schedule_names(service.system.schedule_specs())
    assert len(schedules) == 2 and names[alone] != names[shared[0]]
    assert {s.name for s in schedules} == {names[alone], f"reports_daily_0600_{_digest()}_schedule"}
    (timing,) = [s for s in schedules if s.name != names[alone]]
    assert {names[r] for r in shared} == {timing.name}
    assert timing.job_name == "report_batch_job"
    assert (timing.cron_schedule, timing.execution_timezone) == ("0 6 * * *", "America/New_York")

    at = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
    assert set(shared) <= {report_id for report_id, *_ in service.system.never_ticked()}
    (run,), _ = _tick(timing, instance, at)
    # Each report's tick is recorded, as its own schedule's would be (missed-tick detection).
    assert not set(shared) & {report_id for report_id, *_ in service.system.never_ticked()}
    assert run.run_config == {"ops": {"deliver_reports": {"config": {"report_ids": shared}}}}
    assert run.run_key.startswith(f"{timing.name}@2026-03-09T10:00:00+00:00#1:")
    assert run.tags["report_platform/scheduled_at"] == "2026-03-09T06:00:00-04:00"
    assert all(instance.has_dynamic_partition("sms_usage_reports", r) for r in shared)
    again, _ = _tick(timing, instance, at)
    assert [r.run_key for r in again] == [run.run_key]

    # A paused report is left out of the batch; the batch of the others has another key.
    service.pause(OWNER, shared[0])
    (fewer,), _ = _tick(timing, instance, at)
    assert fewer.run_config["ops"]["deliver_reports"]["config"]["report_ids"] == shared[1:]
    assert fewer.run_key != run.run_key
    for report_id in shared[1:]:
        service.pause(OWNER, report_id)
    runs, skip = _tick(timing, instance, at)
    assert runs == [] and skip.startswith("no report due:") and skip.count("paused") == 3


def test_batches_are_even_and_the_same_for_the_same_due_reports():
    ids = [f"r{i:03d}" for i in range(41)]
    made = batches(list(reversed(ids)))
    assert [len(b) for b in made] == [14, 14, 13]
    assert [i for b in made for i in b] == ids  # every report once, in id order
    assert batches(ids, size=20) == made
    assert batches(ids[:20]) == [ids[:20]]
    assert batches([]) == []


def _digest() -> str:
    """The digest in the name of the schedule of sms_definition()'s timing (06:00 New York, daily)."""
    name = timing_schedule_name(Schedule.model_validate(sms_definition()["schedule"]))
    return name.removeprefix("reports_daily_0600_").removesuffix("_schedule")


def test_a_report_whose_tick_cannot_be_evaluated_costs_the_others_nothing(platform, instance, monkeypatch):
    service = registry_service(Home.from_env())
    broken, *fine = sorted(service.create_report(OWNER, sms_definition(name=f"Report {i}")) for i in range(3))
    at = datetime(2026, 3, 9, 6, 0, tzinfo=NY)
    record_tick = service.system.record_tick

    def failing(report_id, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if report_id == broken:
            raise RuntimeError("the registry row could not be locked")
        return record_tick(report_id, *args, **kwargs)

    monkeypatch.setattr(service.system, "record_tick", failing)
    errors: list[str] = []

    class Log:
        def info(self, message: str) -> None:
            pass

        def error(self, message: str) -> None:
            errors.append(message)

    name = _schedule(broken).name
    (run,) = evaluate_timing_tick(service, name, [broken, *fine], ["0 6 * * *"], at, instance, Log())
    assert run.run_config["ops"]["deliver_reports"]["config"]["report_ids"] == fine
    assert errors == [f"report {broken}: its tick could not be evaluated: the registry row could not be locked"]
    # When no report of the timing can be decided, the tick itself fails.
    with pytest.raises(RuntimeError, match="could not be locked"):
        evaluate_timing_tick(service, name, [broken], ["0 6 * * *"], at, instance, Log())
