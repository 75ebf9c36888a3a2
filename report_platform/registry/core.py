"""What every part of the service shares: sessions and the clock, what a principal may see, and
the records handed back (`views.py`) built from the stored rows."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from report_platform.registry.errors import NotFound
from report_platform.registry.models import Report, ReportChange, ReportRun
from report_platform.registry.permissions import Principal, can_view
from report_platform.registry.views import ReportView, RunRecord

Describe = Callable[[Mapping[str, Any]], str]
NextRun = Callable[[Mapping[str, Any], datetime], datetime | None]


def default_describe(schedule: Mapping[str, Any]) -> str:
    """Schedule in words, e.g. "Daily at 06:00 America/New_York"."""
    from report_platform.reports.definition import Schedule
    from report_platform.reports.schedule import describe_schedule

    return describe_schedule(Schedule.model_validate(dict(schedule)))


def default_next_run(schedule: Mapping[str, Any], after: datetime) -> datetime | None:
    """The first scheduled time strictly after `after`."""
    from report_platform.reports.definition import Schedule
    from report_platform.reports.schedule import next_run_after

    return next_run_after(Schedule.model_validate(dict(schedule)), after)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """`prefix_` + 10 lowercase base32 characters (50 random bits)."""
    return prefix + "_" + base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]


class RegistryCore:
    """The session factory, the schedule functions and the clock, and the report view built with them.

    `describe` and `next_run` put schedules into words and compute the next tick (by default with
    `reports.schedule`); `clock` gives "now". All are injectable for tests.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        describe: Describe | None = None,
        next_run: NextRun | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._describe = describe or default_describe
        self._next_run = next_run or default_next_run
        self._clock = clock or utc_now

    @property
    def engine(self) -> Engine:
        """The registry's database engine (for health checks and tests)."""
        return self._sessions.kw["bind"]

    def _touch(self, report: Report, email: str) -> None:
        report.updated_at = self._clock()
        report.updated_by = email

    def _log(self, s: Session, report: Report, email: str, action: str, diff: dict) -> None:
        s.add(ReportChange(report_id=report.id, at=self._clock(), by=email, action=action, diff=diff))

    def _schedule_words(self, report: Report) -> str:
        schedule = report.definition.get("schedule")
        return self._describe(schedule) if isinstance(schedule, Mapping) else "no schedule"

    def _filter_words(self, report: Report) -> str:
        from report_platform.reports.definition import describe_filters

        filters = report.definition.get("filters")
        return describe_filters(report.type, filters if isinstance(filters, Mapping) else None)

    def _next(self, report: Report, now: datetime) -> datetime | None:
        schedule = report.definition.get("schedule")
        if report.status != "enabled" or report.deleted_at or not isinstance(schedule, Mapping):
            return None
        return self._next_run(schedule, now)

    def _view(self, report: Report) -> ReportView:
        return ReportView(
            id=report.id,
            organization=report.organization_id,
            workspace=report.workspace_id,
            name=report.name,
            type=report.type,
            status=report.status,
            folder=report.folder.name if report.folder else None,
            definition=whole_definition(report),
            schedule=self._schedule_words(report),
            filters=self._filter_words(report),
            next_run=self._next(report, self._clock()),
            created_at=report.created_at,
            created_by=report.created_by,
            updated_at=report.updated_at,
            updated_by=report.updated_by,
            deleted_at=report.deleted_at,
        )


def visible_report(
    s: Session,
    p: Principal,
    report_id: str,
    *,
    for_update: bool = False,
    include_deleted: bool = False,
) -> Report:
    """The report if `p` may see it; missing, deleted and not-yours all read "not found"."""
    # Existence must not leak, so the three cases share one answer.
    query = select(Report).where(Report.id == report_id).options(selectinload(Report.folder))
    if for_update:
        query = query.with_for_update()
    report = s.scalar(query)
    if (
        report is None
        or not can_view(p, report.organization_id, report.workspace_id)
        or (report.deleted_at is not None and not include_deleted)
    ):
        raise NotFound(f"no report {report_id}")
    return report


def find_run(s: Session, run_id: str, *, for_update: bool = False) -> ReportRun | None:
    query = select(ReportRun).where(ReportRun.id == run_id)
    return s.scalar(query.with_for_update() if for_update else query)


def new_run_id(s: Session) -> str:
    run_id = new_id("run")
    while find_run(s, run_id) is not None:
        run_id = new_id("run")
    return run_id


def whole_definition(report: Report) -> dict[str, Any]:
    """The definition as a person wrote it: stored fields plus status and folder."""
    return {
        **report.definition,
        "status": report.status,
        "folder": report.folder.name if report.folder else None,
    }


def run_record(run: ReportRun) -> RunRecord:
    return RunRecord(
        id=run.id,
        report_id=run.report_id,
        dagster_run_id=run.dagster_run_id,
        trigger=run.trigger,
        requested_by=run.requested_by,
        created_at=run.created_at,
        scheduled_at=run.scheduled_at,
        requested_period_start=run.requested_period_start,
        requested_period_end=run.requested_period_end,
        period_start=run.period_start,
        period_end=run.period_end,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status,
        rows=run.rows,
        bytes=run.bytes,
        sha256=run.sha256,
        delivered_to=list(run.delivered_to or []),
        error=run.error,
        note=run.note,
        attempt=run.attempt,
        notified_owner_at=run.notified_owner_at,
        destinations=list(run.destinations or []),
    )
