"""Scheduled times the scheduler never evaluated: MISSED in the audit log, and the owner told.

Dagster's scheduler evaluates only the latest of the ticks a stopped daemon missed for a schedule
with no partition set (every report's), and a schedule it sees for the first time starts at that
moment. The older times get no tick, no run and only a warning in the daemon's log. The platform
makes them loud itself:

- Each evaluated tick records itself on the report (`RunLog.record_tick`). Due times between the
  previous evaluated tick (or the report's creation, or the last change of its schedule) and this
  one were skipped over: each becomes a MISSED row of the report's audit log, with the period it
  would have covered.
- A report no tick was evaluated for yet (created while the daemon was down, or just before its
  first time) is looked at by `report_missed_tick_sensor`: a due time before the moment Dagster
  started the schedule of its timing will never be evaluated (a timing no report had before), and
  is recorded the same way at once.
- The sensor mails the owner and `notify_on_failure` once per report for the MISSED rows not yet
  told, with the command that re-delivers them. Nothing is re-delivered by itself: a period
  delivered hours or days late may be worse than none, and the owner decides.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from report_platform.app import definition_of
from report_platform.delivery.connections import Connections
from report_platform.registry.run_log import MissedTick
from report_platform.registry.service import ReportService
from report_platform.registry.views import RunRecord
from report_platform.reports.definition import ReportDefinition
from report_platform.reports.periods import resolve_period
from report_platform.reports.schedule import ticks_between
from report_platform.scheduling.resources import ConnectionsResource, RegistryResource
from report_platform.scheduling.timings import schedule_names

log = logging.getLogger(__name__)

# Bounds what one gap records: a schedule stopped for a year in the Dagster UI (an hourly report
# owes 8,760 times) gets its most recent times, and the mail says how many more there were.
MOST_RECORDED = 500

NOT_EVALUATED = (
    "No run: the scheduler (dagster-daemon) never evaluated this scheduled time, "
    "because it was not running or had not loaded the report's schedule yet."
)


def missed_between(definition: ReportDefinition) -> Callable[[datetime, datetime], list[MissedTick]]:
    """The report's due times strictly after `after` and strictly before `before`, as MISSED ticks."""

    def _missed(after: datetime, before: datetime) -> list[MissedTick]:
        return _due(definition, after + timedelta(microseconds=1), before)

    return _missed


def _due(definition: ReportDefinition, start: datetime, end: datetime) -> list[MissedTick]:
    """Due times in [start, end): the most recent MOST_RECORDED of them."""
    times: list[datetime] = []
    for at in ticks_between(definition.schedule, start, end):
        times.append(at)
        if len(times) > MOST_RECORDED:
            del times[0]
    skipped_before = len(times) > MOST_RECORDED
    if skipped_before:
        del times[0]
    tz = definition.schedule.timezone
    ticks = []
    for index, at in enumerate(times):
        period = resolve_period(definition.period, tz, at)
        error = NOT_EVALUATED
        if index == 0 and skipped_before:
            error += f" Earlier times were missed too; only the latest {MOST_RECORDED} are listed."
        ticks.append(MissedTick(scheduled_at=at, period_start=period.start_utc, period_end=period.end_utc, error=error))
    return ticks


def _schedule_starts(instance: dg.DagsterInstance) -> dict[str, float]:
    """When Dagster started each running schedule, by name: it evaluates no time before that."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import InstigatorStatus

    starts: dict[str, float] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
        if state.status == InstigatorStatus.STOPPED:
            continue
        start = getattr(state.instigator_data, "start_timestamp", None)
        if start is not None:
            starts[state.instigator_name] = start
    return starts


def record_never_evaluated(service: ReportService, instance: dg.DagsterInstance, now: datetime) -> list[str]:
    """MISSED rows for due times of reports with no evaluated tick that Dagster will never evaluate:
    those before the moment it started the report's schedule. Returns the new rows' ids."""
    waiting = []
    for report_id, body, expected_from in service.system.never_ticked():
        definition = definition_of(body)
        if next(iter(ticks_between(definition.schedule, expected_from, now)), None) is not None:
            waiting.append((report_id, definition, expected_from))
    if not waiting:
        return []
    # Read only when some report is overdue: the states of thousands of schedules are not free.
    starts = _schedule_starts(instance)
    covering = schedule_names(service.system.schedule_specs())
    added: list[str] = []
    for report_id, definition, expected_from in waiting:
        start = starts.get(covering.get(report_id, ""))
        if start is None:
            continue  # Dagster has not seen the schedule yet: it may still evaluate the time
        # Dagster evaluates no time before it started the schedule, however late it is running.
        started = datetime.fromtimestamp(start, UTC)
        added += service.system.record_missed(report_id, _due(definition, expected_from, min(started, now)))
    return added


def notify_missed(service: ReportService, connections: Connections) -> dict[str, list[str]]:
    """Mail each report's owner and `notify_on_failure` once about its MISSED rows not told yet;
    returns the addresses mailed, by report."""
    from report_platform.delivery.email import send_notice
    from report_platform.scheduling.failures import failure_recipients

    by_report: dict[str, list[RunRecord]] = defaultdict(list)
    for row in service.system.missed_unnotified():
        by_report[row.report_id].append(row)
    mailed: dict[str, list[str]] = {}
    for report_id, rows in by_report.items():
        view = service.system.report_for_run(report_id)
        if view is None:
            continue
        definition = definition_of(view.definition)
        recipients = failure_recipients(view, definition)
        if recipients:
            send_notice(
                connection_name="default",
                connection=connections.get_smtp("default"),
                to=recipients,
                subject=f"Scheduled report missed {_runs(len(rows))}: {view.name}",
                body=_body(view.id, view.name, definition, rows),
            )
            mailed[report_id] = recipients
        # Marked after the mail: a failure to send leaves the rows to be told at the next look.
        for row in rows:
            service.system.record_owner_notified(row.id)
        log.info("report %s: %d missed time(s), notice to %d address(es)", report_id, len(rows), len(recipients))
    return mailed


def _runs(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def _body(report_id: str, name: str, definition: ReportDefinition, rows: Sequence[RunRecord]) -> str:
    tz = ZoneInfo(definition.schedule.timezone)
    lines = []
    for row in rows:
        assert row.scheduled_at is not None
        at = row.scheduled_at.astimezone(tz)
        period = ""
        if row.period_start and row.period_end:
            start, end = row.period_start.astimezone(tz), row.period_end.astimezone(tz)
            period = f", period {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
        lines.append(f"- {at:%Y-%m-%d %H:%M %Z}{period}")
    first = min(r.scheduled_at for r in rows if r.scheduled_at).astimezone(tz).date()
    last = max(r.scheduled_at for r in rows if r.scheduled_at).astimezone(tz).date()
    return (
        f'The scheduled report "{name}" ({report_id}) was not run at these scheduled times, so nothing '
        f"was delivered for them:\n\n" + "\n".join(lines) + "\n\n"
        f"{rows[0].error}\n\n"
        "They are not re-delivered by themselves. To deliver them now:\n"
        f"  report-platform reports backfill {report_id} --user EMAIL --start {first} --end {last}\n"
        f"Audit log: /reports/{report_id}/audit-log in the console, or "
        f"report-platform reports audit-log {report_id} --user EMAIL\n"
    )


@dg.sensor(
    name="report_missed_tick_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records scheduled times the scheduler never evaluated as MISSED and tells the owner.",
)
def report_missed_tick_sensor(
    context: dg.SensorEvaluationContext, registry: RegistryResource, connections: ConnectionsResource
) -> dg.SkipReason:
    service = registry.service()
    added = record_never_evaluated(service, context.instance, datetime.now(UTC))
    mailed = notify_missed(service, connections.load())
    return dg.SkipReason(
        f"{len(added)} scheduled time(s) recorded MISSED; owners of {len(mailed)} report(s) told"
        if added or mailed
        else "no missed scheduled times"
    )
