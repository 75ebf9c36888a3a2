"""One Dagster schedule per registered report, named from its id, in the report's timezone.

The registry is the source of truth: every tick reads the report again, so a paused or deleted
report skips with the reason shown in the Dagster UI, and an edit of the time takes effect at
the next code-location reload (the registry sensor asks for one when the registry changes).
`run_key` = report id + scheduled time, so a tick never launches two runs, also across daemon
restarts. Each evaluated tick is recorded on the report, so scheduled times the scheduler skipped
over (a daemon down across several) are found and recorded MISSED (missed.py).
"""

import functools
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform.app import definition_of
from report_platform.registry.service import ReportService
from report_platform.reports.definition import Schedule
from report_platform.reports.schedule import cron_schedules, dagster_cron_schedule, describe_schedule, is_due
from report_platform.scheduling.exports import (
    TAG_REPORT,
    TAG_SCHEDULED,
    TAG_TRIGGER,
    ensure_report_partition,
    partition_key,
    report_jobs,
    schedule_name,
)
from report_platform.scheduling.missed import missed_between


def run_key(report_id: str, scheduled_at: datetime) -> str:
    return f"{report_id}@{scheduled_at.astimezone(UTC).isoformat()}"


def evaluate_tick(  # noqa: ANN201
    service: ReportService, report_id: str, crons: list[str], scheduled: datetime, instance: dg.DagsterInstance
):
    """The decision for one tick: a RunRequest, or a SkipReason saying why not."""
    view = service.system.report_for_run(report_id)
    if view is None or view.deleted_at is not None:
        return dg.SkipReason(f"report {report_id} was deleted; its schedule goes at the next reload")
    definition = definition_of(view.definition)
    current = cron_schedules(definition.schedule) == crons
    if current:
        # Every evaluated tick of the current schedule, skipped ones too; due times it finds were
        # skipped over since the previous one become MISSED rows (see missed.py).
        service.system.record_tick(report_id, scheduled, missed_between(definition))
    if view.status != "enabled":
        return dg.SkipReason(f"report {report_id} ({view.name}) is paused")
    if not current:
        return dg.SkipReason(f"report {report_id} was rescheduled; the new schedule applies after the reload")
    local = scheduled.astimezone(ZoneInfo(definition.schedule.timezone))
    if not is_due(definition.schedule, local):
        return dg.SkipReason(f"not a run day for {view.name} (day {definition.schedule.day_of_month} of the month)")
    ensure_report_partition(instance, view.type, report_id)
    return dg.RunRequest(
        run_key=run_key(report_id, scheduled),
        partition_key=partition_key(report_id, local.date()),
        tags={TAG_REPORT: report_id, TAG_SCHEDULED: local.isoformat(), TAG_TRIGGER: "schedule"},
    )


@functools.lru_cache(maxsize=4096)
def _timing(schedule_json: str) -> tuple[Schedule, tuple[str, ...], str]:
    """The schedule, its cron strings and words; many reports share the same schedule."""
    schedule = Schedule.model_validate(json.loads(schedule_json))
    return schedule, tuple(cron_schedules(schedule)), describe_schedule(schedule)


def report_schedule(report_id: str, name: str, report_type: str, schedule: dict) -> dg.ScheduleDefinition:
    parsed, crons, words = _timing(json.dumps(schedule, sort_keys=True))

    def _evaluate(context: dg.ScheduleEvaluationContext):  # noqa: ANN202
        service = context.resources.registry.service()
        return evaluate_tick(service, report_id, list(crons), context.scheduled_execution_time, context.instance)

    return dg.ScheduleDefinition(
        name=schedule_name(report_id),
        # The same cron strings and timezone that next runs and backfill ticks iterate over.
        cron_schedule=dagster_cron_schedule(parsed),
        execution_timezone=parsed.timezone,
        job=report_jobs[report_type],
        execution_fn=_evaluate,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{name} ({report_type}): {words}",
        tags={TAG_REPORT: report_id},
        required_resource_keys={"registry"},
    )


def report_schedules(service: ReportService) -> tuple[list[dg.ScheduleDefinition], int]:
    """A schedule for every live report, and the registry revision they were built from."""
    specs = service.system.schedule_specs()
    return [report_schedule(*spec) for spec in specs], service.system.revision()
