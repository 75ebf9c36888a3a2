"""The one service layer over the registry: every surface (CLI, HTTP API, Dagster) goes through it.

Each user-facing method takes the acting user's e-mail first, checks permissions
(`permissions.py`) before writing anything, and runs in one transaction, so a refused or failed
action changes nothing. Methods meant for the scheduler take `SYSTEM_ACTOR` instead and are never
reachable with a user's e-mail.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from report_platform.redaction import redact_optional
from report_platform.registry.audit import diff_fields, find_secrets
from report_platform.registry.errors import (
    BadRequest,
    Conflict,
    DefinitionError,
    NotFound,
    PermissionDenied,
    RegistryError,
    UnknownUser,
)
from report_platform.registry.models import (
    REPORT_STATUSES,
    RUN_TRIGGERS,
    Folder,
    Membership,
    MembershipWorkspace,
    Organization,
    Report,
    ReportChange,
    ReportRun,
    User,
    Workspace,
)
from report_platform.registry.permissions import (
    Action,
    Credential,
    Principal,
    Role,
    can_view,
    require,
)
from report_platform.registry.views import (
    AuditLog,
    ChangeRecord,
    FolderView,
    ReportRow,
    ReportView,
    RunRecord,
    RunRequest,
)

# The scheduler's identity. It has no "@", so no registered user can ever be it.
SYSTEM_ACTOR = "system"

Validate = Callable[[dict[str, Any]], dict[str, Any]]
Describe = Callable[[Mapping[str, Any]], str]
NextRun = Callable[[Mapping[str, Any], datetime], datetime | None]

# Fields whose truth is a column, not the stored definition JSON (see models.Report).
_COLUMN_FIELDS = ("status", "folder")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FINISHED = ("SUCCESS", "FAILED", "SKIPPED")


def default_validate(definition: dict[str, Any]) -> dict[str, Any]:
    """`reports.definition.parse_definition`, as the plain dict the registry stores."""
    from report_platform.reports.definition import parse_definition

    return parse_definition(definition).to_dict()


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


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    """`prefix_` + 10 lowercase base32 characters (50 random bits)."""
    return prefix + "_" + base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]


def _normal_email(email: str) -> str:
    return email.strip().lower()


class ReportService:
    """Reports, folders, users, run history and change history, with permissions enforced.

    `validate` turns a raw definition dict into the normalised one or raises an exception whose
    text is the human message; by default `reports.definition.parse_definition`. `describe` and
    `next_run` put schedules into words and compute the next tick (by default with
    `reports.schedule`); `clock` gives "now". All are injectable for tests.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        validate: Validate | None = None,
        *,
        describe: Describe | None = None,
        next_run: NextRun | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._validate_fn = validate or default_validate
        self._describe = describe or default_describe
        self._next_run = next_run or default_next_run
        self._clock = clock or _now

    @property
    def engine(self) -> Engine:
        """The registry's database engine (for health checks and tests)."""
        return self._sessions.kw["bind"]

    # Users and tenancy

    def register_organization(
        self, organization: str, workspaces: Iterable[str] = (), *, name: str | None = None
    ) -> None:
        """Make sure the organisation and its workspaces exist (bootstrap, e.g. `demo-data`)."""
        with self._sessions.begin() as s:
            self._ensure_org(s, organization, name)
            for ws in workspaces:
                self._ensure_workspace(s, organization, ws)

    def add_user(
        self,
        email: str,
        org: str,
        role: str,
        workspaces: Iterable[str] = (),
        *,
        display_name: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Register `email` with `role` in `org`, optionally limited to some workspaces.

        Adding the same user to the same organisation again replaces their role and workspace
        limits. Without `actor` this is a bootstrap action (`report-platform users add`) that also
        creates the organisation and workspaces if missing; with `actor`, only an Owner of `org`
        may do it, and the workspaces must already exist.
        """
        email = _normal_email(email)
        if not _EMAIL.match(email):
            raise BadRequest(f"'{email}' is not an e-mail address")
        try:
            role_ = Role(role.lower())
        except ValueError:
            raise BadRequest(f"role must be owner, admin or user, got '{role}'") from None
        wanted = sorted(set(workspaces))
        if role_ is Role.OWNER and wanted:
            raise BadRequest("an Owner is credentialed organisation-wide; drop the workspace limits")
        with self._sessions.begin() as s:
            if actor is not None:
                require(self._principal(s, actor), Action.MANAGE_USERS, org)
            else:
                self._ensure_org(s, org, None)
            for ws in wanted:
                if actor is None:
                    self._ensure_workspace(s, org, ws)
                elif (found := s.get(Workspace, ws)) is None or found.organization_id != org:
                    raise NotFound(f"no workspace '{ws}' in {org}")
            user = s.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(
                    email=email,
                    display_name=display_name or email.split("@")[0],
                    created_at=self._clock(),
                )
                s.add(user)
                s.flush()
            elif display_name:
                user.display_name = display_name
            membership = s.scalar(
                select(Membership).where(Membership.user_id == user.id, Membership.organization_id == org)
            )
            if membership is None:
                membership = Membership(user_id=user.id, organization_id=org, role=role_.value)
                s.add(membership)
            membership.role = role_.value
            membership.workspaces = [MembershipWorkspace(workspace_id=ws) for ws in wanted]

    def principal(self, actor: str) -> Principal:
        """The acting user's credentials; raises `UnknownUser` if they are not registered."""
        with self._sessions() as s:
            return self._principal(s, actor)

    # Reports: changes (Owner only)

    def create_report(self, actor: str, definition: dict[str, Any]) -> str:
        """Validate and store a new report; returns its id (`rpt_…`)."""
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            # Refuse non-Owners before validating, so they get the reason that matters.
            if not any(c.role is Role.OWNER for c in p.credentials.values()):
                require(p, Action.CREATE, next(iter(sorted(p.credentials))))
            clean = self._validate(definition)
            org, ws = self._scope(s, p, clean)
            require(p, Action.CREATE, org)
            status = self._status_of(clean) or "enabled"
            folder = self._folder_for_definition(s, p, org, clean.get("folder"))
            now = self._clock()
            report_id = _new_id("rpt")
            while s.get(Report, report_id) is not None:
                report_id = _new_id("rpt")
            report = Report(
                id=report_id,
                organization_id=org,
                workspace_id=ws,
                name=clean["name"],
                type=clean["type"],
                status=status,
                folder_id=folder.id if folder else None,
                folder=folder,
                definition=_body(clean),
                created_at=now,
                created_by=p.email,
                updated_at=now,
                updated_by=p.email,
            )
            s.add(report)
            s.flush()
            self._log(s, report, p.email, "create", diff_fields({}, _whole(report)))
            return report_id

    def update_report(self, actor: str, report_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        """Replace the definition; returns the field-level diff (empty if nothing changed).

        `status` and `folder` change only if the new definition names them, so re-applying a
        file does not silently resume a paused report or pull it out of its folder.
        """
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id, for_update=True)
            require(p, Action.UPDATE, report.organization_id)
            clean = self._validate(definition)
            org, ws = self._scope(s, p, clean)
            if org != report.organization_id:
                raise DefinitionError(
                    f"{report_id} belongs to {report.organization_id}; a report cannot move "
                    f"to another organisation (create a new one in {org})"
                )
            before = _whole(report)
            report.workspace_id = ws
            report.name = clean["name"]
            report.type = clean["type"]
            report.definition = _body(clean)
            if "status" in definition:
                report.status = self._status_of(clean) or report.status
            if "folder" in definition:
                folder = self._folder_for_definition(s, p, org, clean.get("folder"))
                report.folder_id, report.folder = (folder.id if folder else None), folder
            diff = diff_fields(before, _whole(report))
            if diff:
                self._touch(report, p.email)
                self._log(s, report, p.email, "update", diff)
            return diff

    def pause(self, actor: str, report_id: str) -> bool:
        """Stop the schedule (nothing is deleted); False if it was already paused."""
        return self._set_status(actor, report_id, "disabled", Action.PAUSE, "pause")

    def resume(self, actor: str, report_id: str) -> bool:
        """Start the schedule again; False if it was not paused."""
        return self._set_status(actor, report_id, "enabled", Action.RESUME, "resume")

    def delete(self, actor: str, report_id: str) -> None:
        """Delete the report and its schedule; its history stays readable in the audit log."""
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id, for_update=True)
            require(p, Action.DELETE, report.organization_id)
            now = self._clock()
            report.deleted_at = now
            self._touch(report, p.email)
            diff = {"deleted_at": {"old": None, "new": now.isoformat()}}
            self._log(s, report, p.email, "delete", diff)

    def move_report(self, actor: str, report_id: str, folder_name: str | None) -> bool:
        """Put the report into an existing folder, or into none; False if it was already there."""
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id, for_update=True)
            require(p, Action.MOVE, report.organization_id)
            folder = None
            if folder_name is not None:
                folder = self._folder(s, report.organization_id, folder_name)
            old = report.folder.name if report.folder else None
            new = folder.name if folder else None
            if old == new:
                return False
            report.folder_id, report.folder = (folder.id if folder else None), folder
            self._touch(report, p.email)
            self._log(s, report, p.email, "move", {"folder": {"old": old, "new": new}})
            return True

    def request_run_now(
        self,
        actor: str,
        report_id: str,
        period_start: date | None = None,
        period_end: date | None = None,
    ) -> RunRequest:
        """Queue a run now, optionally re-delivering a past period (inclusive local dates).

        A paused report may still be run by hand; pausing stops only its schedule. Returns what
        the scheduling layer must launch; the run shows in the audit log as QUEUED until then.
        The period is checked before anything is recorded, so a refused one leaves no row behind.
        """
        if (period_start is None) != (period_end is None):
            raise BadRequest("give both period start and period end, or neither")
        if period_start and period_end and period_start > period_end:
            raise BadRequest(f"period start {period_start} is after period end {period_end}")
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id)
            require(p, Action.RUN_NOW, report.organization_id)
            if period_start is not None and period_end is not None:
                _check_requested_period(period_start, period_end)
            now = self._clock()
            run = ReportRun(
                id=self._new_run_id(s),
                report_id=report.id,
                trigger="run_now",
                requested_by=p.email,
                created_at=now,
                requested_period_start=period_start,
                requested_period_end=period_end,
                status="QUEUED",
                delivered_to=[],
                attempt=1,
            )
            s.add(run)
            return RunRequest(
                run_id=run.id,
                report_id=report.id,
                trigger="run_now",
                requested_by=p.email,
                requested_at=now,
                period_start=period_start,
                period_end=period_end,
            )

    def backfill_target(self, actor: str, report_id: str) -> ReportView:
        """The report `actor` wants to re-deliver over a range of periods, once they may run it.

        A backfill is "run now" for many periods at once, so it needs the same permission; the
        runs it launches record themselves in the audit log as they start.
        """
        with self._sessions() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id)
            require(p, Action.RUN_NOW, report.organization_id)
            return self._view(report)

    # Reports: viewing (every credentialed role)

    def list_reports(
        self, actor: str, folder: str | None = None, *, organization: str | None = None
    ) -> list[ReportRow]:
        """The reports `actor` may see, by folder then name; `folder` filters by folder name."""
        with self._sessions() as s:
            p = self._principal(s, actor)
            orgs = [organization] if organization else sorted(p.credentials)
            query = (
                select(Report)
                .options(selectinload(Report.folder))
                .where(Report.organization_id.in_(orgs), Report.deleted_at.is_(None))
            )
            if folder is not None:
                folder_ids = s.scalars(
                    select(Folder.id).where(Folder.organization_id.in_(orgs), Folder.name == folder)
                ).all()
                if not folder_ids:
                    raise NotFound(f"no folder '{folder}'")
                query = query.where(Report.folder_id.in_(folder_ids))
            reports = [r for r in s.scalars(query) if can_view(p, r.organization_id, r.workspace_id)]
            last = self._last_runs(s, [r.id for r in reports])
            now = self._clock()
            rows = []
            for r in reports:
                run = last.get(r.id)
                rows.append(
                    ReportRow(
                        id=r.id,
                        name=r.name,
                        type=r.type,
                        folder=r.folder.name if r.folder else None,
                        status=r.status,
                        schedule=self._schedule_words(r),
                        next_run=self._next(r, now),
                        last_run=(run.started_at or run.scheduled_at or run.created_at) if run else None,
                        last_status=run.status if run else None,
                        organization=r.organization_id,
                        workspace=r.workspace_id,
                    )
                )
            rows.sort(key=lambda row: (row.folder is None, row.folder or "", row.name.lower(), row.id))
            return rows

    def get_report(self, actor: str, report_id: str) -> ReportView:
        """One live report in full; a deleted one is not found (its audit log still is)."""
        with self._sessions() as s:
            p = self._principal(s, actor)
            return self._view(self._visible(s, p, report_id))

    def audit_log(self, actor: str, report_id: str) -> AuditLog:
        """Every run and every change of the report, newest first, also after deletion."""
        with self._sessions() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id, include_deleted=True)
            runs = s.scalars(
                select(ReportRun).where(ReportRun.report_id == report.id).order_by(ReportRun.seq.desc())
            ).all()
            changes = s.scalars(
                select(ReportChange).where(ReportChange.report_id == report.id).order_by(ReportChange.id.desc())
            ).all()
            return AuditLog(
                report=self._view(report),
                runs=[_run_record(r) for r in runs],
                changes=[ChangeRecord(at=c.at, by=c.by, action=c.action, diff=dict(c.diff)) for c in changes],
            )

    # Folders

    def list_folders(self, actor: str, *, organization: str | None = None) -> list[FolderView]:
        """Folders of the organisations `actor` is credentialed in, with visible report counts."""
        with self._sessions() as s:
            p = self._principal(s, actor)
            orgs = [organization] if organization else sorted(p.credentials)
            folders = s.scalars(select(Folder).where(Folder.organization_id.in_(orgs)).order_by(Folder.name)).all()
            reports = s.scalars(
                select(Report).where(Report.folder_id.in_([f.id for f in folders]), Report.deleted_at.is_(None))
            ).all()
            counts: dict[int, int] = {}
            for r in reports:
                if can_view(p, r.organization_id, r.workspace_id):
                    counts[r.folder_id or 0] = counts.get(r.folder_id or 0, 0) + 1
            return [
                FolderView(organization=f.organization_id, name=f.name, reports=counts.get(f.id, 0))
                for f in folders
                if f.organization_id in p.credentials
            ]

    def create_folder(self, actor: str, name: str, *, organization: str | None = None) -> None:
        """Create an empty folder; names are unique within an organisation."""
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            org = self._org_of(p, organization)
            require(p, Action.CREATE_FOLDER, org)
            self._new_folder(s, p, org, name)

    def rename_folder(self, actor: str, name: str, new_name: str, *, organization: str | None = None) -> None:
        """Rename a folder; its reports stay in it (no report change is logged)."""
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            org = self._org_of(p, organization)
            require(p, Action.RENAME_FOLDER, org)
            folder = self._folder(s, org, name)
            new_name = _folder_name(new_name)
            if new_name == folder.name:
                return
            if s.scalar(select(Folder).where(Folder.organization_id == org, Folder.name == new_name)):
                raise Conflict(f"folder '{new_name}' already exists in {org}")
            folder.name = new_name

    def delete_folder(self, actor: str, name: str, *, organization: str | None = None) -> None:
        """Delete an empty folder. A folder that still holds live reports is refused.

        Deleted reports that were in it keep their history but lose the folder.
        """
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            org = self._org_of(p, organization)
            require(p, Action.DELETE_FOLDER, org)
            folder = self._folder(s, org, name)
            reports = s.scalars(select(Report).where(Report.folder_id == folder.id)).all()
            live = [r for r in reports if r.deleted_at is None]
            if live:
                raise Conflict(
                    f"folder '{folder.name}' still holds {len(live)} report"
                    f"{'s' if len(live) != 1 else ''}; move or delete them first"
                )
            for r in reports:
                r.folder_id, r.folder = None, None
            s.flush()
            s.delete(folder)

    # The scheduler's side (SYSTEM_ACTOR only)

    def scheduled_reports(self, actor: str) -> list[ReportView]:
        """Every live report, paused ones included (their ticks must skip)."""
        with self._sessions() as s:
            _require_system(actor)
            reports = s.scalars(
                select(Report)
                .options(selectinload(Report.folder))
                .where(Report.deleted_at.is_(None))
                .order_by(Report.id)
            ).all()
            return [self._view(r) for r in reports]

    def schedule_specs(self, actor: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(id, name, type, schedule) of every live report: what building schedules needs, and
        nothing it does not (no next-run arithmetic, no folders), so thousands load quickly."""
        with self._sessions() as s:
            _require_system(actor)
            rows = s.execute(
                select(Report.id, Report.name, Report.type, Report.definition)
                .where(Report.deleted_at.is_(None))
                .order_by(Report.id)
            ).all()
            return [(r.id, r.name, r.type, dict(r.definition["schedule"])) for r in rows]

    def report_for_run(self, actor: str, report_id: str) -> ReportView | None:
        """The report as a tick or run sees it, deleted ones included; None if it never existed."""
        with self._sessions() as s:
            _require_system(actor)
            report = s.get(Report, report_id)
            return self._view(report) if report else None

    def revision(self, actor: str) -> int:
        """A number that grows with every report change: reload schedules when it moves."""
        with self._sessions() as s:
            _require_system(actor)
            return int(s.scalar(select(func.coalesce(func.max(ReportChange.id), 0))) or 0)

    def record_run_start(
        self,
        actor: str,
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
        _require_system(actor)
        _require_aware(
            scheduled_at=scheduled_at, period_start=period_start, period_end=period_end, started_at=started_at
        )
        if trigger not in RUN_TRIGGERS:
            raise BadRequest(f"trigger must be one of {', '.join(RUN_TRIGGERS)}, got '{trigger}'")
        with self._sessions.begin() as s:
            if s.get(Report, report_id) is None:
                raise NotFound(f"no report {report_id}")
            if run_id is not None:
                run = self._run(s, run_id, for_update=True)
                if run is None or run.report_id != report_id:
                    raise NotFound(f"no run {run_id} of report {report_id}")
            elif dagster_run_id and (existing := self._same_run(s, report_id, dagster_run_id, scheduled_at)):
                # The same Dagster run reported twice (a worker restarted): one audit row. One
                # Dagster run may carry several scheduled times (a backfill of an hourly report's
                # date): one row each.
                run = existing
            else:
                run = ReportRun(
                    id=self._new_run_id(s),
                    report_id=report_id,
                    created_at=self._clock(),
                    delivered_to=[],
                )
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

    def runs_for_dagster_run(self, actor: str, dagster_run_id: str) -> list[RunRecord]:
        """The audit rows a Dagster run wrote (to mark them FAILED when the run dies)."""
        with self._sessions() as s:
            _require_system(actor)
            rows = s.scalars(select(ReportRun).where(ReportRun.dagster_run_id == dagster_run_id)).all()
            return [_run_record(r) for r in rows]

    @staticmethod
    def _same_run(s: Session, report_id: str, dagster_run_id: str, scheduled_at: datetime | None) -> ReportRun | None:
        rows = s.scalars(
            select(ReportRun)
            .where(ReportRun.report_id == report_id, ReportRun.dagster_run_id == dagster_run_id)
            .with_for_update()
        ).all()

        def instant(value: datetime | None) -> datetime | None:
            if value is None:
                return None
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

        return next((r for r in rows if instant(r.scheduled_at) == instant(scheduled_at)), None)

    def record_run_finish(
        self,
        actor: str,
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
    ) -> None:
        """Record a run's outcome: SUCCESS, FAILED or SKIPPED, what it built and where it went.

        `error` and `note` are stored redacted: they are often an exception's text, and the audit
        log is readable by every User of the report.
        """
        _require_system(actor)
        _require_aware(finished_at=finished_at)
        if status not in _FINISHED:
            raise BadRequest(f"status must be one of {', '.join(_FINISHED)}, got '{status}'")
        if delivered_to and find_secrets(delivered_to):
            raise BadRequest("delivery receipts must not hold secrets")
        with self._sessions.begin() as s:
            run = self._run(s, run_id, for_update=True)
            if run is None:
                raise NotFound(f"no run {run_id}")
            run.status = status
            run.rows, run.bytes, run.sha256 = rows, bytes, sha256
            run.delivered_to = list(delivered_to or [])
            run.error, run.note = redact_optional(error), redact_optional(note)
            run.finished_at = finished_at or self._clock()

    def record_owner_notified(self, actor: str, run_id: str, at: datetime | None = None) -> None:
        """Note that the report's owner was told about this (failed) run."""
        _require_system(actor)
        with self._sessions.begin() as s:
            run = self._run(s, run_id)
            if run is None:
                raise NotFound(f"no run {run_id}")
            run.notified_owner_at = at or self._clock()

    # Internals

    def _principal(self, s: Session, actor: str) -> Principal:
        email = _normal_email(actor)
        user = s.scalar(
            select(User)
            .where(User.email == email)
            .options(selectinload(User.memberships).selectinload(Membership.workspaces))
        )
        if user is None or not user.memberships:
            raise UnknownUser(
                f"unknown user {actor!r}: register them with `report-platform users add {email} --org ORG --role ROLE`"
            )
        return Principal(
            email=email,
            credentials={
                m.organization_id: Credential(
                    organization_id=m.organization_id,
                    role=Role(m.role),
                    workspaces=frozenset(w.workspace_id for w in m.workspaces),
                )
                for m in user.memberships
            },
        )

    def _ensure_org(self, s: Session, organization: str, name: str | None) -> Organization:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", organization or ""):
            raise BadRequest(f"organisation id must be a lower-case slug, got {organization!r}")
        org = s.get(Organization, organization)
        if org is None:
            org = Organization(id=organization, name=name or organization, created_at=self._clock())
            s.add(org)
            s.flush()
        elif name:
            org.name = name
        return org

    @staticmethod
    def _ensure_workspace(s: Session, organization: str, workspace: str) -> Workspace:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", workspace or ""):
            raise BadRequest(f"workspace id must be a lower-case slug, got {workspace!r}")
        found = s.get(Workspace, workspace)
        if found is None:
            found = Workspace(id=workspace, organization_id=organization, name=workspace)
            s.add(found)
            s.flush()
        elif found.organization_id != organization:
            raise Conflict(f"workspace '{workspace}' belongs to another organisation")
        return found

    def _visible(
        self,
        s: Session,
        p: Principal,
        report_id: str,
        *,
        for_update: bool = False,
        include_deleted: bool = False,
    ) -> Report:
        # Missing, deleted and not-yours all read "not found": existence must not leak.
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

    def _validate(self, definition: Any) -> dict[str, Any]:
        if not isinstance(definition, dict):
            raise DefinitionError("a report definition must be a mapping of fields")
        _refuse_secrets(definition)
        try:
            clean = self._validate_fn(definition)
        except RegistryError:
            raise
        except Exception as exc:  # the validator's own error type is its business
            raise DefinitionError(str(exc)) from exc
        if not isinstance(clean, dict):
            raise DefinitionError("the validator returned no definition")
        _refuse_secrets(clean)
        for key in ("name", "type"):
            if not isinstance(clean.get(key), str) or not clean[key].strip():
                raise DefinitionError(f"the definition needs a {key}")
        return clean

    def _scope(self, s: Session, p: Principal, clean: Mapping[str, Any]) -> tuple[str, str | None]:
        """(organisation, workspace or None) of a definition, which must be the actor's."""
        ws, org = clean.get("workspace"), clean.get("organization")
        if ws:
            found = s.get(Workspace, ws)
            # Same message whether the workspace is foreign or does not exist at all.
            if found is None or found.organization_id not in p.credentials:
                known = sorted(s.scalars(select(Workspace.id).where(Workspace.organization_id.in_(p.credentials))))
                raise PermissionDenied(
                    f"{p.email} is not credentialed for workspace '{ws}' "
                    f"(known workspaces: {', '.join(known) or 'none'})"
                )
            if org and org != found.organization_id:
                raise DefinitionError(f"workspace '{ws}' is not in organization '{org}'")
            return found.organization_id, ws
        if org:
            if org not in p.credentials:
                raise PermissionDenied(f"{p.email} has no credentials in organisation '{org}'")
            return org, None
        raise DefinitionError("the definition must name a workspace (or, for billing, an organization)")

    @staticmethod
    def _status_of(clean: Mapping[str, Any]) -> str | None:
        status = clean.get("status")
        if status is None:
            return None
        if status not in REPORT_STATUSES:
            raise DefinitionError(f"status must be enabled or disabled, got '{status}'")
        return str(status)

    def _folder_for_definition(self, s: Session, p: Principal, org: str, name: str | None) -> Folder | None:
        # A definition file names its folder declaratively, so a missing one is created.
        if not name:
            return None
        folder = s.scalar(select(Folder).where(Folder.organization_id == org, Folder.name == name))
        return folder or self._new_folder(s, p, org, name)

    def _new_folder(self, s: Session, p: Principal, org: str, name: str) -> Folder:
        name = _folder_name(name)
        if s.scalar(select(Folder).where(Folder.organization_id == org, Folder.name == name)):
            raise Conflict(f"folder '{name}' already exists in {org}")
        folder = Folder(organization_id=org, name=name, created_at=self._clock(), created_by=p.email)
        s.add(folder)
        s.flush()
        return folder

    @staticmethod
    def _find_folder(s: Session, org: str, name: str) -> Folder | None:
        return s.scalar(select(Folder).where(Folder.organization_id == org, Folder.name == name))

    def _folder(self, s: Session, org: str, name: str) -> Folder:
        folder = self._find_folder(s, org, name)
        if folder is None:
            raise NotFound(f"no folder '{name}' in {org}")
        return folder

    @staticmethod
    def _org_of(p: Principal, organization: str | None) -> str:
        if organization is not None:
            return organization
        if len(p.credentials) == 1:
            return next(iter(p.credentials))
        raise BadRequest(
            f"{p.email} is credentialed in several organisations ({', '.join(sorted(p.credentials))}): say which one"
        )

    def _set_status(self, actor: str, report_id: str, status: str, action: Action, verb: str) -> bool:
        with self._sessions.begin() as s:
            p = self._principal(s, actor)
            report = self._visible(s, p, report_id, for_update=True)
            require(p, action, report.organization_id)
            if report.status == status:
                return False
            old, report.status = report.status, status
            self._touch(report, p.email)
            self._log(s, report, p.email, verb, {"status": {"old": old, "new": status}})
            return True

    def _touch(self, report: Report, email: str) -> None:
        report.updated_at = self._clock()
        report.updated_by = email

    def _log(self, s: Session, report: Report, email: str, action: str, diff: dict) -> None:
        s.add(ReportChange(report_id=report.id, at=self._clock(), by=email, action=action, diff=diff))

    @staticmethod
    def _run(s: Session, run_id: str, *, for_update: bool = False) -> ReportRun | None:
        query = select(ReportRun).where(ReportRun.id == run_id)
        return s.scalar(query.with_for_update() if for_update else query)

    def _new_run_id(self, s: Session) -> str:
        run_id = _new_id("run")
        while self._run(s, run_id) is not None:
            run_id = _new_id("run")
        return run_id

    @staticmethod
    def _last_runs(s: Session, report_ids: list[str]) -> dict[str, ReportRun]:
        if not report_ids:
            return {}
        ranked = (
            select(
                ReportRun.id,
                func.row_number()
                .over(
                    partition_by=ReportRun.report_id,
                    order_by=ReportRun.seq.desc(),
                )
                .label("n"),
            )
            .where(ReportRun.report_id.in_(report_ids))
            .subquery()
        )
        runs = s.scalars(select(ReportRun).join(ranked, ranked.c.id == ReportRun.id).where(ranked.c.n == 1))
        return {r.report_id: r for r in runs}

    def _schedule_words(self, report: Report) -> str:
        schedule = report.definition.get("schedule")
        return self._describe(schedule) if isinstance(schedule, Mapping) else "no schedule"

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
            definition=_whole(report),
            schedule=self._schedule_words(report),
            next_run=self._next(report, self._clock()),
            created_at=report.created_at,
            created_by=report.created_by,
            updated_at=report.updated_at,
            updated_by=report.updated_by,
            deleted_at=report.deleted_at,
        )


def _require_system(actor: str) -> None:
    if actor != SYSTEM_ACTOR:
        raise PermissionDenied("run records are written by the scheduler only")


def _check_requested_period(start: date, end: date) -> None:
    """The bounds every chosen period meets (reports.periods), as the registry's refusal."""
    from report_platform.reports.period_bounds import period_dates_problem

    try:
        problem = period_dates_problem(start, end)
    except ValueError as exc:  # the limit's own setting is malformed
        raise BadRequest(str(exc)) from None
    if problem is not None:
        which, message = problem
        raise BadRequest(f"period {which}: {message}")


def _require_aware(**values: datetime | None) -> None:
    # A naive time in the audit log would be ambiguous by the report's UTC offset.
    for name, value in values.items():
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} must carry a UTC offset, got {value.isoformat()}")


def _refuse_secrets(definition: Mapping[str, Any]) -> None:
    found = find_secrets(definition)
    if found:
        raise DefinitionError(
            f"a report definition must not hold secrets ({', '.join(found)}): keep credentials "
            "in the environment and name a connection from connections.yaml instead"
        )


def _folder_name(name: str) -> str:
    clean = name.strip() if isinstance(name, str) else ""
    if not clean or len(clean) > 200 or any(ord(ch) < 32 for ch in clean):
        raise BadRequest(f"folder name must be 1-200 printable characters, got {name!r}")
    return clean


def _body(clean: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in clean.items() if k not in _COLUMN_FIELDS}


def _whole(report: Report) -> dict[str, Any]:
    """The definition as a person wrote it: stored fields plus status and folder."""
    return {
        **report.definition,
        "status": report.status,
        "folder": report.folder.name if report.folder else None,
    }


def _run_record(run: ReportRun) -> RunRecord:
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
    )
