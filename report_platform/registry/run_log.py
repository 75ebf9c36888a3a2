"""The scheduler's side of the registry: every live report, and the runs it records.

No method takes an acting user: code acting for a person holds e-mail addresses, and none of
them can reach these. Only the scheduling layer (ticks, runs, their failure hooks) and the
launcher of a run-now use `ReportService.system`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from report_platform.redaction import redact_optional
from report_platform.registry.audit import find_secrets
from report_platform.registry.core import RegistryCore, find_run, new_run_id, run_record
from report_platform.registry.errors import BadRequest, NotFound
from report_platform.registry.models import RUN_TRIGGERS, Report, ReportChange, ReportRun
from report_platform.registry.views import ReportView, RunRecord

_FINISHED = ("SUCCESS", "FAILED", "SKIPPED")


class RunLog(RegistryCore):
    """What the scheduler reads (reports, schedules, the revision) and writes (run records)."""

    def scheduled_reports(self) -> list[ReportView]:
        """Every live report, paused ones included (their ticks must skip)."""
        with self._sessions() as s:
            reports = s.scalars(
                select(Report)
                .options(selectinload(Report.folder))
                .where(Report.deleted_at.is_(None))
                .order_by(Report.id)
            ).all()
            return [self._view(r) for r in reports]

    def schedule_specs(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(id, name, type, schedule) of every live report: what building schedules needs, and
        nothing it does not (no next-run arithmetic, no folders), so thousands load quickly."""
        with self._sessions() as s:
            rows = s.execute(
                select(Report.id, Report.name, Report.type, Report.definition)
                .where(Report.deleted_at.is_(None))
                .order_by(Report.id)
            ).all()
            return [(r.id, r.name, r.type, dict(r.definition["schedule"])) for r in rows]

    def report_for_run(self, report_id: str) -> ReportView | None:
        """The report as a tick or run sees it, deleted ones included; None if it never existed."""
        with self._sessions() as s:
            report = s.get(Report, report_id)
            return self._view(report) if report else None

    def revision(self) -> int:
        """A number that grows with every report change: reload schedules when it moves."""
        with self._sessions() as s:
            return int(s.scalar(select(func.coalesce(func.max(ReportChange.id), 0))) or 0)

    def record_run_start(
        self,
        report_id: str,
        *,
        trigger: str,
        dagster_run_id: str | None = None,
        scheduled_at: datetime | None = None,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        attempt: int = 1,
        run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> str:
        """Mark a run STARTED and return its id.

        With `run_id`, this is the QUEUED row of a "run now"; a `dagster_run_id` already recorded
        for the report updates that row instead of adding a second one.
        """
        _require_aware(
            scheduled_at=scheduled_at, period_start=period_start, period_end=period_end, started_at=started_at
        )
        _require_one_of("trigger", trigger, RUN_TRIGGERS)
        with self._sessions.begin() as s:
            if s.get(Report, report_id) is None:
                raise NotFound(f"no report {report_id}")
            if run_id is not None:
                run = find_run(s, run_id, for_update=True)
                if run is None or run.report_id != report_id:
                    raise NotFound(f"no run {run_id} of report {report_id}")
            elif dagster_run_id and (existing := _same_run(s, report_id, dagster_run_id, scheduled_at)):
                # The same Dagster run reported twice (a worker restarted): one audit row. One
                # Dagster run may carry several scheduled times (a backfill of an hourly report's
                # date): one row each.
                run = existing
            else:
                run = ReportRun(id=new_run_id(s), report_id=report_id, created_at=self._clock(), delivered_to=[])
                s.add(run)
            run.trigger = trigger
            run.dagster_run_id = dagster_run_id
            run.scheduled_at = scheduled_at
            run.period_start = period_start
            run.period_end = period_end
            run.attempt = attempt
            run.started_at = started_at or self._clock()
            run.status = "STARTED"
            return run.id

    def runs_for_dagster_run(self, dagster_run_id: str) -> list[RunRecord]:
        """The audit rows a Dagster run wrote (to mark them FAILED when the run dies)."""
        with self._sessions() as s:
            rows = s.scalars(select(ReportRun).where(ReportRun.dagster_run_id == dagster_run_id)).all()
            return [run_record(r) for r in rows]

    def record_run_finish(
        self,
        run_id: str,
        *,
        status: str,
        rows: int | None = None,
        bytes: int | None = None,
        sha256: str | None = None,
        delivered_to: list[Any] | None = None,
        error: str | None = None,
        note: str | None = None,
        finished_at: datetime | None = None,
        destinations: list[dict[str, Any]] | None = None,
    ) -> None:
        """Record a run's outcome: SUCCESS, FAILED or SKIPPED, what it built and where it went.

        `destinations` holds each destination's own outcome (None leaves what was recorded).
        `error` and `note` are stored redacted: they are often an exception's text, and the audit
        log is readable by every User of the report. A SUCCESS ends a streak of failed runs.
        """
        _require_aware(finished_at=finished_at)
        _require_one_of("status", status, _FINISHED)
        if delivered_to and find_secrets(delivered_to):
            raise BadRequest("delivery receipts must not hold secrets")
        if destinations and find_secrets(destinations):
            raise BadRequest("destination outcomes must not hold secrets")
        with self._sessions.begin() as s:
            run = _existing_run(s, run_id, for_update=True)
            run.status = status
            run.rows, run.bytes, run.sha256 = rows, bytes, sha256
            run.delivered_to = list(delivered_to or [])
            if destinations is not None:
                run.destinations = [
                    {k: redact_optional(v) if k == "error" else v for k, v in entry.items()} for entry in destinations
                ]
            run.error, run.note = redact_optional(error), redact_optional(note)
            run.finished_at = finished_at or self._clock()
            if status == "SUCCESS":
                report = s.get(Report, run.report_id, with_for_update=True)
                if report is not None and report.consecutive_failures:
                    report.consecutive_failures = 0

    def record_owner_notified(self, run_id: str, at: datetime | None = None) -> None:
        """Note that the report's owner was told about this (failed) run."""
        with self._sessions.begin() as s:
            _existing_run(s, run_id).notified_owner_at = at or self._clock()

    def record_final_failure(self, report_id: str, run_ids: Collection[str], *, pause_after: int) -> FinalFailure:
        """Count a run that failed for good, once: its audit rows are marked notified, the report's
        count of consecutive failures grows by one, and at `pause_after` an enabled report is
        paused, with a change in its audit log saying why.

        Rows already marked (a second look at the same failure) change nothing: `counted` is then
        False, so the caller mails nobody again.
        """
        with self._sessions.begin() as s:
            report = s.get(Report, report_id, with_for_update=True)
            if report is None:
                raise NotFound(f"no report {report_id}")
            rows = s.scalars(select(ReportRun).where(ReportRun.id.in_(list(run_ids))).with_for_update()).all()
            fresh = [r for r in rows if r.notified_owner_at is None]
            if not fresh:
                return FinalFailure(counted=False, consecutive=report.consecutive_failures, paused=False)
            now = self._clock()
            for row in fresh:
                row.notified_owner_at = now
            report.consecutive_failures = (report.consecutive_failures or 0) + 1
            paused = (
                report.status == "enabled" and report.deleted_at is None and report.consecutive_failures >= pause_after
            )
            if paused:
                report.status = "disabled"
                reason = f"paused automatically after {report.consecutive_failures} consecutive failed runs"
                diff = {"status": {"old": "enabled", "new": "disabled"}, "reason": {"old": None, "new": reason}}
                # Not `_touch`: updated_by names the people who are told of failures.
                self._log(s, report, SYSTEM_ACTOR, "pause", diff)
            return FinalFailure(counted=True, consecutive=report.consecutive_failures, paused=paused)

    # Missed scheduled times

    def record_tick(
        self,
        report_id: str,
        scheduled_at: datetime,
        missed_between: Callable[[datetime, datetime], Sequence[MissedTick]],
    ) -> list[str]:
        """The scheduler evaluated the report's tick at `scheduled_at`; returns the ids of the
        MISSED rows this added.

        The times `missed_between(after, scheduled_at)` names, after the previous evaluated tick
        (or the start of the schedule) and before this one, were never evaluated: Dagster runs
        only the latest of the ticks a stopped daemon missed. Each becomes a MISSED row of an
        enabled report, once. In the same transaction as the new latest tick, so a daemon killed
        here finds either both or neither when it evaluates the tick again.
        """
        _require_aware(scheduled_at=scheduled_at)
        with self._sessions.begin() as s:
            report = s.get(Report, report_id, with_for_update=True)
            if report is None:
                raise NotFound(f"no report {report_id}")
            previous = report.last_tick_at
            if previous is not None and scheduled_at <= previous:
                return []  # the same tick evaluated again, after a daemon died during it
            report.last_tick_at = scheduled_at
            after = previous or report.ticks_expected_from
            if after is None or report.status != "enabled" or report.deleted_at is not None:
                return []
            return _add_missed(s, report, missed_between(after, scheduled_at), self._clock())

    def record_missed(self, report_id: str, ticks: Sequence[MissedTick]) -> list[str]:
        """MISSED rows for scheduled times the scheduler will never evaluate (once each)."""
        with self._sessions.begin() as s:
            report = s.get(Report, report_id, with_for_update=True)
            if report is None or report.deleted_at is not None or report.status != "enabled":
                return []
            return _add_missed(s, report, ticks, self._clock())

    def never_ticked(self) -> list[tuple[str, dict[str, Any], datetime]]:
        """(id, definition, ticks expected from) of enabled reports no tick was evaluated for yet."""
        with self._sessions() as s:
            rows = s.execute(
                select(Report.id, Report.definition, Report.ticks_expected_from)
                .where(
                    Report.deleted_at.is_(None),
                    Report.status == "enabled",
                    Report.last_tick_at.is_(None),
                    Report.ticks_expected_from.is_not(None),
                )
                .order_by(Report.id)
            ).all()
            return [(r.id, dict(r.definition), r.ticks_expected_from) for r in rows]

    def missed_unnotified(self, limit: int = 1000) -> list[RunRecord]:
        """MISSED rows whose owner was not told yet, oldest first (at most `limit`)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(ReportRun)
                .where(ReportRun.status == "MISSED", ReportRun.notified_owner_at.is_(None))
                .order_by(ReportRun.seq)
                .limit(limit)
            ).all()
            return [run_record(r) for r in rows]


SYSTEM_ACTOR = "report-platform"  # who the audit log names for what the platform did by itself


@dataclass(frozen=True)
class FinalFailure:
    """What counting a final failure did: whether it was new, the streak, and whether it paused the report."""

    counted: bool
    consecutive: int
    paused: bool


@dataclass(frozen=True)
class MissedTick:
    """A scheduled time no run was made for: when, the period it would have covered, and why."""

    scheduled_at: datetime
    period_start: datetime | None
    period_end: datetime | None
    error: str


def _instant(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _add_missed(s: Session, report: Report, ticks: Sequence[MissedTick], now: datetime) -> list[str]:
    """A MISSED row for each time that has no row of the report yet (a run, or MISSED before)."""
    if not ticks:
        return []
    times = [t.scheduled_at for t in ticks]
    _require_aware(**{f"tick{i}": at for i, at in enumerate(times)})
    known = {
        _instant(at)
        for at in s.scalars(
            select(ReportRun.scheduled_at).where(ReportRun.report_id == report.id, ReportRun.scheduled_at.in_(times))
        )
    }
    added = []
    for tick in ticks:
        if _instant(tick.scheduled_at) in known:
            continue
        known.add(_instant(tick.scheduled_at))
        run = ReportRun(
            id=new_run_id(s),
            report_id=report.id,
            created_at=now,
            trigger="schedule",
            scheduled_at=tick.scheduled_at,
            period_start=tick.period_start,
            period_end=tick.period_end,
            finished_at=now,
            status="MISSED",
            error=redact_optional(tick.error),
            delivered_to=[],
        )
        s.add(run)
        s.flush()  # new_run_id looks at the ids in the table
        added.append(run.id)
    return added


def _existing_run(s: Session, run_id: str, *, for_update: bool = False) -> ReportRun:
    run = find_run(s, run_id, for_update=for_update)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run


def _same_run(s: Session, report_id: str, dagster_run_id: str, scheduled_at: datetime | None) -> ReportRun | None:
    rows = s.scalars(
        select(ReportRun)
        .where(ReportRun.report_id == report_id, ReportRun.dagster_run_id == dagster_run_id)
        .with_for_update()
    ).all()

    return next((r for r in rows if _instant(r.scheduled_at) == _instant(scheduled_at)), None)


def _require_one_of(name: str, value: str, allowed: Collection[str]) -> None:
    if value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}, got '{value}'")


def _require_aware(**values: datetime | None) -> None:
    # A naive time in the audit log would be ambiguous by the report's UTC offset.
    for name, value in values.items():
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} must carry a UTC offset, got {value.isoformat()}")
