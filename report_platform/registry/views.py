"""What the service layer hands back: plain, immutable records that every surface can print."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` with dataclasses, datetimes and dates turned into JSON-friendly types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO 8601 timestamps), for `--json` output and the HTTP API."""
        return jsonable(self)


@dataclass(frozen=True)
class ReportRow(_Record):
    """One line of the report list (PRODUCT.md §5)."""

    id: str
    name: str
    type: str
    folder: str | None
    status: str
    schedule: str  # in words, e.g. "Daily at 06:00 America/New_York"
    filters: str  # in words, e.g. "Campaigns: Acme East Sales Line", "All campaigns"; "" for billing
    next_run: datetime | None  # None while paused
    last_run: datetime | None
    last_status: str | None
    organization: str
    workspace: str | None  # None: organisation-scoped
    # The last run's outcome per destination: {"destination", "type", "status", "target"?, "error"?}.
    last_destinations: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    consecutive_failures: int = 0  # final failures in a row; the report pauses itself at its limit


@dataclass(frozen=True)
class ReportView(_Record):
    """One report in full. `definition` is the whole definition, `status` and `folder` included."""

    id: str
    organization: str
    workspace: str | None
    name: str
    type: str
    status: str
    folder: str | None
    definition: dict[str, Any]
    schedule: str
    filters: str  # in words, as in ReportRow
    next_run: datetime | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    deleted_at: datetime | None


@dataclass(frozen=True)
class ChangeRecord(_Record):
    at: datetime
    by: str
    action: str  # create | update | pause | resume | delete | move
    diff: dict[str, Any]  # {"schedule.time_of_day": {"old": ..., "new": ...}}


@dataclass(frozen=True)
class RunRecord(_Record):
    id: str
    report_id: str
    dagster_run_id: str | None
    trigger: str  # schedule | run_now | backfill | retry
    requested_by: str | None
    created_at: datetime
    scheduled_at: datetime | None
    requested_period_start: date | None
    requested_period_end: date | None
    period_start: datetime | None
    period_end: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    status: str  # QUEUED | STARTED | SUCCESS | FAILED | SKIPPED | MISSED
    rows: int | None
    bytes: int | None
    sha256: str | None
    delivered_to: list[Any]
    error: str | None
    note: str | None
    attempt: int
    notified_owner_at: datetime | None
    # One entry per destination: {"destination": label, "type", "status": delivered | already
    # delivered | failed | skipped, "target"?, "error"?}; empty for runs recorded before.
    destinations: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class AuditLog(_Record):
    """A report's runs and changes, newest first; readable after the report is deleted."""

    report: ReportView
    runs: list[RunRecord]
    changes: list[ChangeRecord]


@dataclass(frozen=True)
class RunRequest(_Record):
    """A "run now" that the scheduling layer must launch; `run_id` is its audit-log row."""

    run_id: str
    report_id: str
    trigger: str
    requested_by: str
    requested_at: datetime
    period_start: date | None  # inclusive local dates as the person wrote them; None: latest
    period_end: date | None


@dataclass(frozen=True)
class FolderView(_Record):
    organization: str
    name: str
    reports: int  # live reports in it that the viewer may see
