"""The Dagster schedules of the registered reports: one per timing, in its timezone.

Reports that share a timing (frequency, time of day, day, timezone: timings.py) share one
schedule, named from the timing. Its tick decides for each report as the registry says now
(`evaluate_tick`: a paused, deleted or rescheduled report skips, with the reason in the tick's
log) and asks for one run of `report_batch_job` per batch of the due ones (batches.py): at the
busiest minute the cost of a Dagster run per report came to as much as the reports' own work
(docs/throughput.md, "Batches"). A report alone at its time is a batch of one.

An edit of the time takes effect at the next code-location reload (the registry sensor asks for
one when the registry changes). A batch's `run_key` is the timing's schedule, the scheduled time,
the batch's number and a digest of its reports, so a tick evaluated again (a daemon restarted
during it) asks for the same runs; a report's deliveries of one scheduled time are in the ledger
once, whichever run makes them. Each evaluated tick is recorded on each report, so scheduled
times the scheduler skipped over (a daemon down across several) are found and recorded MISSED
(missed.py). A schedule's name does not change when reports join or leave its timing, so the
daemon's catch-up of the latest tick it missed covers every report of the timing.
"""

import hashlib
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform.app import definition_of
from report_platform.registry.service import ReportService
from report_platform.reports.schedule import cron_schedules, dagster_cron_schedule, is_due
from report_platform.scheduling.batches import (
    BATCH_JOB,
    BATCH_SIZE,
    TAG_BATCH,
    TAG_BATCH_SIZE,
    batch_run_config,
    batches,
    member_tag,
    report_batch_job,
)
from report_platform.scheduling.exports import (
    TAG_REPORT,
    TAG_SCHEDULED,
    TAG_TRIGGER,
    ensure_report_partition,
    one_line,
    partition_key,
)
from report_platform.scheduling.missed import missed_between
from report_platform.scheduling.timings import run_key, schedule_groups, timing_of, timing_schedule_name


def evaluate_tick(  # noqa: ANN201
    service: ReportService, report_id: str, crons: list[str], scheduled: datetime, instance: dg.DagsterInstance
):
    """One report's decision at a tick of its timing: the RunRequest of a run of the report alone
    (the timing's tick puts the due ones in batches), or a SkipReason saying why not."""
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


def batch_run_key(name: str, scheduled: datetime, number: int, members: list[str]) -> str:
    """A batch's run key: the timing's schedule, the scheduled time, the batch's number and a digest
    of its reports; so the same tick evaluated again asks for the same runs, and a batch whose
    reports changed in between (one paused) is another run, whose reports the ledger keeps from
    being sent twice."""
    digest = hashlib.sha256(",".join(members).encode()).hexdigest()[:12]
    return f"{name}@{scheduled.astimezone(UTC).isoformat()}#{number}:{digest}"


SKIPS_SHOWN = 20


def evaluate_timing_tick(  # noqa: ANN201
    service: ReportService,
    name: str,
    report_ids: list[str],
    crons: list[str],
    scheduled: datetime,
    instance: dg.DagsterInstance,
    log: Any = None,
):
    """The decision for one tick of a timing's schedule: each report decided as its own schedule
    would, the due ones in batches (one RunRequest each), or a SkipReason when none is due."""
    due: list[str] = []
    skipped: list[str] = []
    failed: list[Exception] = []
    local = scheduled
    for report_id in report_ids:
        try:
            decision = evaluate_tick(service, report_id, crons, scheduled, instance)
        except Exception as exc:
            # One report's error (its registry row, its partition) must not cost the others their
            # tick. Its tick is not recorded, so the next one finds the time MISSED (missed.py).
            failed.append(exc)
            if log is not None:
                log.error(f"report {report_id}: its tick could not be evaluated: {one_line(exc)}")
            continue
        if isinstance(decision, dg.RunRequest):
            due.append(report_id)
            local = datetime.fromisoformat(decision.tags[TAG_SCHEDULED])
        else:
            skipped.append(decision.skip_message or report_id)
    if log is not None and skipped:
        for message in skipped:
            log.info(message)
    if failed and len(failed) == len(report_ids):
        raise failed[0]  # nothing could be decided: the tick fails, as a lone report's did
    if not due:
        shown = "; ".join(skipped[:SKIPS_SHOWN]) + (
            f"; and {len(skipped) - SKIPS_SHOWN} more" if len(skipped) > SKIPS_SHOWN else ""
        )
        return dg.SkipReason(f"no report due: {shown}")
    requests = []
    for number, members in enumerate(batches(due), start=1):
        requests.append(
            dg.RunRequest(
                run_key=batch_run_key(name, scheduled, number, members),
                job_name=BATCH_JOB,
                run_config=batch_run_config(members),
                tags={
                    TAG_BATCH: name,
                    TAG_BATCH_SIZE: str(len(members)),
                    TAG_SCHEDULED: local.isoformat(),
                    TAG_TRIGGER: "schedule",
                    **{member_tag(report_id): "in batch" for report_id in members},
                },
            )
        )
    return requests


def timing_schedule(schedule: dict, report_ids: list[str]) -> dg.ScheduleDefinition:
    """The schedule of the reports that share `schedule`'s timing."""
    parsed, crons, words = timing_of(schedule)
    name = timing_schedule_name(parsed)
    members = sorted(report_ids)

    def _evaluate(context: dg.ScheduleEvaluationContext):  # noqa: ANN202
        service = context.resources.registry.service()
        decision = evaluate_timing_tick(
            service, name, members, list(crons), context.scheduled_execution_time, context.instance, context.log
        )
        # A schedule returns one RunRequest or SkipReason, or yields several.
        yield from decision if isinstance(decision, list) else [decision]

    return dg.ScheduleDefinition(
        name=name,
        # The same cron strings and timezone that next runs and backfill ticks iterate over.
        cron_schedule=dagster_cron_schedule(parsed),
        execution_timezone=parsed.timezone,
        job=report_batch_job,
        execution_fn=_evaluate,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{_reports(len(members))}, {words}: the due ones in batches of up to {BATCH_SIZE}",
        required_resource_keys={"registry"},
    )


def _reports(count: int) -> str:
    return "1 report" if count == 1 else f"{count} reports"


def report_schedules(service: ReportService) -> tuple[list[dg.ScheduleDefinition], int]:
    """A schedule for every timing of the live reports, and the registry revision they were built from."""
    specs = service.system.schedule_specs()
    schedules = [timing_schedule(group[0][3], [spec[0] for spec in group]) for group in schedule_groups(specs).values()]
    return schedules, service.system.revision()
