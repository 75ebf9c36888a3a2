"""Reports as people see and change them: definitions, status, folder, run-now requests, history."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from report_platform.registry.audit import diff_fields, find_secrets
from report_platform.registry.core import (
    Describe,
    NextRun,
    RegistryCore,
    new_id,
    new_run_id,
    run_record,
    visible_report,
    whole_definition,
)
from report_platform.registry.errors import BadRequest, DefinitionError, NotFound, PermissionDenied, RegistryError
from report_platform.registry.folders import existing_folder, folder_for_definition
from report_platform.registry.models import REPORT_STATUSES, Folder, Report, ReportChange, ReportRun, Workspace
from report_platform.registry.permissions import Action, Principal, Role, can_view, require
from report_platform.registry.users import principal_of
from report_platform.registry.views import AuditLog, ChangeRecord, ReportRow, ReportView, RunRequest

Validate = Callable[[dict[str, Any]], dict[str, Any]]

# Fields whose truth is a column, not the stored definition JSON (see models.Report).
_COLUMN_FIELDS = ("status", "folder")


def default_validate(definition: dict[str, Any]) -> dict[str, Any]:
    """`reports.definition.parse_definition`, as the plain dict the registry stores."""
    from report_platform.reports.definition import parse_definition

    return parse_definition(definition).to_dict()


class Reports(RegistryCore):
    """Creating, changing, running and reading reports, with permissions enforced.

    `validate` turns a raw definition dict into the normalised one or raises an exception whose
    text is the human message; by default `reports.definition.parse_definition`.
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
        super().__init__(session_factory, describe=describe, next_run=next_run, clock=clock)
        self._validate_fn = validate or default_validate

    # Changes (Owner only)

    def create_report(self, actor: str, definition: dict[str, Any]) -> str:
        """Validate and store a new report; returns its id (`rpt_…`)."""
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            # Refuse non-Owners before validating, so they get the reason that matters.
            if not any(c.role is Role.OWNER for c in p.credentials.values()):
                require(p, Action.CREATE, next(iter(sorted(p.credentials))))
            clean = self._validate(definition)
            org, ws = _scope(s, p, clean)
            require(p, Action.CREATE, org)
            status = _status_of(clean) or "enabled"
            folder = folder_for_definition(s, org, clean.get("folder"), by=p.email, at=self._clock())
            now = self._clock()
            report_id = new_id("rpt")
            while s.get(Report, report_id) is not None:
                report_id = new_id("rpt")
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
                ticks_expected_from=now,
            )
            s.add(report)
            s.flush()
            self._log(s, report, p.email, "create", diff_fields({}, whole_definition(report)))
            return report_id

    def update_report(self, actor: str, report_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        """Replace the definition; returns the field-level diff (empty if nothing changed).

        `status` and `folder` change only if the new definition names them, so re-applying a
        file does not silently resume a paused report or pull it out of its folder.
        """
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id, for_update=True)
            require(p, Action.UPDATE, report.organization_id)
            clean = self._validate(definition)
            org, ws = _scope(s, p, clean)
            if org != report.organization_id:
                raise DefinitionError(
                    f"{report_id} belongs to {report.organization_id}; a report cannot move "
                    f"to another organisation (create a new one in {org})"
                )
            before = whole_definition(report)
            old_schedule = report.definition.get("schedule")
            report.workspace_id = ws
            report.name = clean["name"]
            report.type = clean["type"]
            report.definition = _body(clean)
            if "status" in definition:
                report.status = _status_of(clean) or report.status
            if "folder" in definition:
                folder = folder_for_definition(s, org, clean.get("folder"), by=p.email, at=self._clock())
                report.folder_id, report.folder = (folder.id if folder else None), folder
            diff = diff_fields(before, whole_definition(report))
            if report.definition.get("schedule") != old_schedule:
                # Times of the old schedule are no longer owed; the new one's are from now on.
                report.ticks_expected_from, report.last_tick_at = self._clock(), None
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
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id, for_update=True)
            require(p, Action.DELETE, report.organization_id)
            now = self._clock()
            report.deleted_at = now
            self._touch(report, p.email)
            diff = {"deleted_at": {"old": None, "new": now.isoformat()}}
            self._log(s, report, p.email, "delete", diff)

    def move_report(self, actor: str, report_id: str, folder_name: str | None) -> bool:
        """Put the report into an existing folder, or into none; False if it was already there."""
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id, for_update=True)
            require(p, Action.MOVE, report.organization_id)
            folder = None
            if folder_name is not None:
                folder = existing_folder(s, report.organization_id, folder_name)
            old = report.folder.name if report.folder else None
            new = folder.name if folder else None
            if old == new:
                return False
            report.folder_id, report.folder = (folder.id if folder else None), folder
            self._touch(report, p.email)
            self._log(s, report, p.email, "move", {"folder": {"old": old, "new": new}})
            return True

    # Running by hand (Owner only)

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
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id)
            require(p, Action.RUN_NOW, report.organization_id)
            if period_start is not None and period_end is not None:
                _check_requested_period(period_start, period_end)
            now = self._clock()
            run = ReportRun(
                id=new_run_id(s),
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
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id)
            require(p, Action.RUN_NOW, report.organization_id)
            return self._view(report)

    # Viewing (every credentialed role)

    def list_reports(
        self, actor: str, folder: str | None = None, *, organization: str | None = None
    ) -> list[ReportRow]:
        """The reports `actor` may see, by folder then name; `folder` filters by folder name."""
        with self._sessions() as s:
            p = principal_of(s, actor)
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
            last = _last_runs(s, [r.id for r in reports])
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
                        filters=self._filter_words(r),
                        next_run=self._next(r, now),
                        last_run=(run.started_at or run.scheduled_at or run.created_at) if run else None,
                        last_status=run.status if run else None,
                        organization=r.organization_id,
                        workspace=r.workspace_id,
                        last_destinations=list(run.destinations or []) if run else [],
                        consecutive_failures=r.consecutive_failures or 0,
                    )
                )
            rows.sort(key=lambda row: (row.folder is None, row.folder or "", row.name.lower(), row.id))
            return rows

    def get_report(self, actor: str, report_id: str) -> ReportView:
        """One live report in full; a deleted one is not found (its audit log still is)."""
        with self._sessions() as s:
            p = principal_of(s, actor)
            return self._view(visible_report(s, p, report_id))

    def audit_log(self, actor: str, report_id: str) -> AuditLog:
        """Every run and every change of the report, newest first, also after deletion."""
        with self._sessions() as s:
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id, include_deleted=True)
            runs = s.scalars(
                select(ReportRun).where(ReportRun.report_id == report.id).order_by(ReportRun.seq.desc())
            ).all()
            changes = s.scalars(
                select(ReportChange).where(ReportChange.report_id == report.id).order_by(ReportChange.id.desc())
            ).all()
            return AuditLog(
                report=self._view(report),
                runs=[run_record(r) for r in runs],
                changes=[ChangeRecord(at=c.at, by=c.by, action=c.action, diff=dict(c.diff)) for c in changes],
            )

    def _set_status(self, actor: str, report_id: str, status: str, action: Action, verb: str) -> bool:
        with self._sessions.begin() as s:
            p = principal_of(s, actor)
            report = visible_report(s, p, report_id, for_update=True)
            require(p, action, report.organization_id)
            if report.status == status:
                return False
            old, report.status = report.status, status
            diff: dict[str, Any] = {"status": {"old": old, "new": status}}
            if status == "enabled" and report.consecutive_failures:
                # Resuming starts the count of failed runs afresh (PRODUCT.md §4, Failures).
                diff["consecutive_failures"] = {"old": report.consecutive_failures, "new": 0}
                report.consecutive_failures = 0
            self._touch(report, p.email)
            self._log(s, report, p.email, verb, diff)
            return True

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


def _scope(s: Session, p: Principal, clean: Mapping[str, Any]) -> tuple[str, str | None]:
    """(organisation, workspace or None) of a definition, which must be the actor's."""
    ws, org = clean.get("workspace"), clean.get("organization")
    if ws:
        found = s.get(Workspace, ws)
        # Same message whether the workspace is foreign or does not exist at all.
        if found is None or found.organization_id not in p.credentials:
            known = sorted(s.scalars(select(Workspace.id).where(Workspace.organization_id.in_(p.credentials))))
            raise PermissionDenied(
                f"{p.email} is not credentialed for workspace '{ws}' (known workspaces: {', '.join(known) or 'none'})"
            )
        if org and org != found.organization_id:
            raise DefinitionError(f"workspace '{ws}' is not in organization '{org}'")
        return found.organization_id, ws
    if org:
        if org not in p.credentials:
            raise PermissionDenied(f"{p.email} has no credentials in organisation '{org}'")
        return org, None
    raise DefinitionError("the definition must name a workspace (or, for billing, an organization)")


def _status_of(clean: Mapping[str, Any]) -> str | None:
    status = clean.get("status")
    if status is None:
        return None
    if status not in REPORT_STATUSES:
        raise DefinitionError(f"status must be enabled or disabled, got '{status}'")
    return str(status)


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


def _refuse_secrets(definition: Mapping[str, Any]) -> None:
    found = find_secrets(definition)
    if found:
        raise DefinitionError(
            f"a report definition must not hold secrets ({', '.join(found)}): keep credentials "
            "in the environment and name a connection from connections.yaml instead"
        )


def _body(clean: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in clean.items() if k not in _COLUMN_FIELDS}
