"""The console's pages: the Scheduled Reports screens, rendered on the server.

Each page is HTML built from the registry service as the signed-in user sees it; the small
JavaScript modules under `static/` make the controls work by calling the JSON API (`/api/v1`)
with the session's CSRF token, which the page carries in `<meta name="csrf-token">`. Which
controls a page shows is the service's answer for that user (`permissions.require`), so a
read-only role never sees a button it may not use. Templates are Jinja2 with autoescape on.
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from report_platform.domain.tenancy import load_tenancy
from report_platform.registry import NotFound, PermissionDenied, ReportService, UnknownUser
from report_platform.registry.permissions import Action, Principal, require
from report_platform.reports.builders.spec import FORMAT_EXTENSIONS
from report_platform.reports.definition import (
    DEFAULT_SUBJECT_TEMPLATE,
    DESTINATION_TYPES,
    FREQUENCIES,
    PERIOD_KINDS,
    REPORT_TYPES,
    WEEKDAYS,
    default_filename_pattern,
)
from report_platform.reports.definition.model import MAX_DESTINATIONS
from report_platform.settings import Home, PlatformSettings
from report_platform.web.security import csrf_token_for, current_user_or_none

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).resolve().parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,  # every value a person typed is text, whatever it contains
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
templates = Jinja2Templates(env=_ENV)

TYPE_LABELS = {
    "voice_usage": "Voice Usage",
    "sms_usage": "SMS Usage",
    "aegis_interaction": "Aegis Interaction",
    "billing": "Billing",
}
STATUS_LABELS = {"enabled": "Enabled", "disabled": "Disabled"}
FREQUENCY_LABELS = {"hourly": "Hourly", "daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}
PERIOD_LABELS = {
    "previous_day": "Previous day",
    "previous_week": "Previous week (Mon–Sun)",
    "previous_month": "Previous month",
    "rolling_window": "Rolling window",
    "custom_range": "Custom range",
}
DESTINATION_LABELS = {"email": "Email", "sftp": "SFTP", "s3": "Amazon S3"}
# The formats the usage types can be written in (billing is always an XLSX workbook).
FORMAT_LABELS = {"csv": "CSV", "csv.gz": "CSV, gzip-compressed (.csv.gz)", "parquet": "Parquet (typed columns)"}
SSE_LABELS = {
    "": "None (the bucket's default)",
    "AES256": "AES256 (S3-managed keys)",
    "aws:kms": "aws:kms (AWS KMS key)",
}
TRIGGER_LABELS = {"schedule": "Schedule", "run_now": "Run Now", "backfill": "Backfill", "retry": "Retry"}
ACTION_LABELS = {
    "create": "Created",
    "update": "Edited",
    "pause": "Paused",
    "resume": "Resumed",
    "delete": "Deleted",
    "move": "Moved",
}
# Zones a person picks from; the rest of the tz database (aliases such as US/Eastern, Etc/GMT+5)
# is still accepted when typed.
_ZONE_AREAS = (
    "Africa/",
    "America/",
    "Antarctica/",
    "Arctic/",
    "Asia/",
    "Atlantic/",
    "Australia/",
    "Europe/",
    "Indian/",
    "Pacific/",
)


def _labels(ids: Iterable[str], labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(id, label) for every id the definition layer knows, labelled in the seed's words."""
    return [(i, labels.get(i, i.replace("_", " ").capitalize())) for i in ids]


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """The IANA zones offered in the Timezone list: UTC and every Area/Location zone."""
    names = sorted(n for n in zoneinfo.available_timezones() if n.startswith(_ZONE_AREAS))
    return ("UTC", *names)


# Who is signed in, and the service they act through


def _settings(request: Request) -> PlatformSettings:
    return request.app.state.settings


def _home(request: Request) -> Home:
    return request.app.state.home


def service_of(request: Request) -> ReportService:
    """The registry service of the console's data folder (`create_app` made it)."""
    return request.app.state.service


def signed_in_user(request: Request) -> str | None:
    """The e-mail address of the person signed in with this request's session, or None."""
    return current_user_or_none(request)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, which the page hands its scripts; empty without a session."""
    return csrf_token_for(request) or ""


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, their credentials and what the service lets them do where."""

    email: str
    principal: Principal
    csrf_token: str

    def may(self, action: Action, organization: str) -> bool:
        """The registry's own rule (`permissions.require`), asked rather than restated."""
        try:
            require(self.principal, action, organization)
        except PermissionDenied:
            return False
        return True

    def organizations_where(self, action: Action) -> list[str]:
        return [org for org in sorted(self.principal.credentials) if self.may(action, org)]


def viewer(
    request: Request,
    email: str | None = Depends(signed_in_user),
    token: str = Depends(csrf_token),
) -> Viewer | None:
    """The signed-in person, or None (nobody signed in, or no longer registered)."""
    if email is None:
        return None
    try:
        principal = service_of(request).principal(email)
    except UnknownUser:
        return None
    return Viewer(email=email, principal=principal, csrf_token=token)


def sign_in_redirect(request: Request) -> RedirectResponse:
    """To the sign-in page, which brings the person back here afterwards."""
    path = request.url.path
    target = "/login" if path in ("/", "/login") else f"/login?next={quote(path, safe='/')}"
    return RedirectResponse(target, status_code=303)


# A path on this site: one leading "/", then no "/" (another site), backslash, space or control
# character (browsers drop tabs and newlines from addresses, which would turn "/\t/x" into "//x").
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\s\\\x00-\x1f\x7f]*")


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: `value` if it is a path on this site, else `/`."""
    return value if value and _LOCAL_PATH.fullmatch(value) else "/"


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    # Pages show one person's data: never cached by a shared cache, never shown after sign-out.
    response.headers["Cache-Control"] = "no-store"
    return response


def _not_found(request: Request, who: Viewer, what: str) -> HTMLResponse:
    return _page(request, "not_found.html", {"viewer": who, "what": what, "title": "Not found"}, 404)


# Formatting


def _zone(name: str | None) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def when(value: datetime | None, timezone: str | None = None) -> str:
    """A timestamp as people read it: `2026-03-10 06:00 EDT` in `timezone`, else in its own zone or UTC."""
    if value is None:
        return ""
    own = value.tzinfo if isinstance(value.tzinfo, ZoneInfo) else None
    tz = _zone(timezone) or own or ZoneInfo("UTC")
    local = value.astimezone(tz)
    shown = local.strftime("%Y-%m-%d %H:%M")
    if local.second:
        shown += local.strftime(":%S")
    return f"{shown} {local.tzname()}"


def size(value: int | None) -> str:
    if value is None:
        return ""
    if value < 1024:
        return f"{value} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
    return ""


def shown_value(value: Any) -> str:
    """A definition value in a change entry: lists joined, nothing as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(shown_value(v) for v in value) or "(none)"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {shown_value(v)}" for k, v in value.items()) or "(none)"
    return str(value)


def key_line(key: Any) -> str:
    """How a stored public key is named on a page: its `Comment:` armor header when it has one,
    else the start of its first data line. Not parsed: a page is no place to run gpg."""
    lines = [line.strip() for line in str(key).splitlines() if line.strip()]
    body = [line for line in lines if not line.startswith("-----")]
    comment = next((line for line in body if line.lower().startswith("comment:")), None)
    if comment:
        return comment
    first = next((line for line in body if ":" not in line), "")
    return f"{first[:24]}…" if first else "(empty)"


_ENV.filters.update(when=when, size=size, shown=shown_value, key_line=key_line)
_ENV.globals.update(
    TYPE_LABELS=TYPE_LABELS,
    STATUS_LABELS=STATUS_LABELS,
    PERIOD_LABELS=PERIOD_LABELS,
    DESTINATION_LABELS=DESTINATION_LABELS,
    SSE_LABELS=SSE_LABELS,
    FORMAT_LABELS=FORMAT_LABELS,
    FREQUENCY_LABELS=FREQUENCY_LABELS,
    TRIGGER_LABELS=TRIGGER_LABELS,
    ACTION_LABELS=ACTION_LABELS,
)


# Sign-in


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    next: str | None = None,
    email: str | None = Depends(signed_in_user),
    token: str = Depends(csrf_token),
) -> Response:
    target = _safe_next(next)
    if email is not None:
        return RedirectResponse(target, status_code=303)
    return _page(request, "login.html", {"viewer": None, "csrf_token": token, "next": target, "title": "Sign in"})


# The Scheduled Tasks list


@dataclass
class FolderGroup:
    """One group of the list: a folder (or none) and the visible reports in it."""

    name: str | None
    organization: str | None
    rows: list[Any] = field(default_factory=list)
    can_rename: bool = False
    can_delete: bool = False
    droppable: bool = False  # the viewer may move reports into it


def _groups(rows: list[Any], folders: list[Any], who: Viewer) -> list[FolderGroup]:
    groups: dict[tuple[str | None, str | None], FolderGroup] = {}
    for folder in folders:
        groups[(folder.organization, folder.name)] = FolderGroup(
            folder.name,
            folder.organization,
            can_rename=who.may(Action.RENAME_FOLDER, folder.organization),
            can_delete=who.may(Action.DELETE_FOLDER, folder.organization),
            droppable=who.may(Action.MOVE, folder.organization),
        )
    loose = FolderGroup(None, None, droppable=bool(who.organizations_where(Action.MOVE)))
    for row in rows:
        group = groups.get((row.organization, row.folder)) if row.folder else loose
        if group is None:  # a folder made between the two reads
            group = groups[(row.organization, row.folder)] = FolderGroup(row.folder, row.organization)
        group.rows.append(row)
    return [*sorted(groups.values(), key=lambda g: ((g.name or "").lower(), g.organization or "")), loose]


_ROW_ACTIONS = (Action.PAUSE, Action.RESUME, Action.RUN_NOW, Action.DELETE, Action.MOVE)


@router.get("/", response_class=HTMLResponse)
def scheduled_tasks(request: Request, who: Viewer | None = Depends(viewer)) -> Response:
    if who is None:
        return sign_in_redirect(request)
    service = service_of(request)
    rows = service.list_reports(who.email)
    folders = service.list_folders(who.email)
    orgs = sorted(who.principal.credentials)
    acts = {org: {action.name: who.may(action, org) for action in _ROW_ACTIONS} for org in orgs}
    groups = _groups(rows, folders, who)
    return _page(
        request,
        "reports_list.html",
        {
            "viewer": who,
            "title": "Scheduled Tasks",
            "groups": groups,
            "folders": folders,
            "report_count": len(rows),
            "acts": acts,
            "many_orgs": len(orgs) > 1,
            # Dialogs only for those who may use them: a read-only role gets none.
            "needs_run_dialog": any(a["RUN_NOW"] for a in acts.values()),
            "needs_confirm": any(a["DELETE"] for a in acts.values()) or any(g.can_delete for g in groups),
            "can_create": bool(who.organizations_where(Action.CREATE)),
            "folder_orgs": who.organizations_where(Action.CREATE_FOLDER),
            "type_choices": _labels(REPORT_TYPES, TYPE_LABELS),
            "status_choices": _labels(("enabled", "disabled"), STATUS_LABELS),
        },
    )


# The report panel: new, edit, or view


@dataclass(frozen=True)
class WorkspaceChoice:
    id: str
    name: str
    organization: str
    workflows: tuple[str, ...]
    core_campaigns: tuple[str, ...] = ()  # the names a voice or SMS report may filter on
    engage_campaigns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectionChoice:
    name: str
    organizations: tuple[str, ...]  # of the viewer's organisations, those that may use it


@dataclass(frozen=True)
class Choices:
    """What a person may pick in the panel: only names of the organisations they may change."""

    organizations: list[tuple[str, str]]
    workspaces: list[WorkspaceChoice]
    connections: dict[str, list[ConnectionChoice]]
    folders: list[tuple[str, str]]  # (organisation, name)


def _choices(request: Request, service: ReportService, who: Viewer, organizations: list[str]) -> Choices:
    """Workspaces, workflows, campaigns and connections the service checks a definition against, for these orgs."""
    from report_platform.delivery.connections import Connections
    from report_platform.delivery.errors import ConfigurationError

    home = _home(request)
    tenancy = load_tenancy(home.root)
    allowed = set(organizations)
    orgs = [(o.id, o.name) for o in tenancy.organizations if o.id in allowed]
    campaigns = tenancy.campaign_names()
    workspaces = [
        WorkspaceChoice(
            w.id,
            w.name,
            o.id,
            tuple(sorted(f.name for f in w.workflows)),
            tuple(sorted(campaigns[w.id]["core"])),
            tuple(sorted(campaigns[w.id]["engage"])),
        )
        for o in tenancy.organizations
        if o.id in allowed
        for w in o.workspaces
    ]
    try:
        availability = Connections.load(home.connections).availability()
    except ConfigurationError as exc:  # saving says why too; the panel still opens
        log.warning("the report panel offers no connections: %s", exc)
        availability = {}
    connections = {
        kind: [
            ConnectionChoice(name, tuple(sorted(allowed if "*" in orgs_ else allowed & set(orgs_))))
            for name, orgs_ in sorted(table.items())
            if "*" in orgs_ or allowed & set(orgs_)
        ]
        for kind, table in availability.items()
    }
    folders = [(f.organization, f.name) for f in service.list_folders(who.email) if f.organization in allowed]
    return Choices(orgs, workspaces, connections, folders)


def _new_definition(organization: str | None, workspaces: list[WorkspaceChoice]) -> dict[str, Any]:
    workspace = next((w.id for w in workspaces if w.organization == organization), None)
    return {
        "name": "",
        "type": REPORT_TYPES[0],
        "status": "enabled",
        "workspace": workspace,
        "schedule": {"timezone": "America/New_York", "frequency": "daily", "time_of_day": "06:00:00"},
        "period": {"kind": "previous_day"},
        "destination": {
            "type": "email",
            "to": [],
            "cc": [],
            "bcc": [],
            "subject_template": DEFAULT_SUBJECT_TEMPLATE,
            "body_template": "Report attached.",
        },
        "filename_pattern": default_filename_pattern(REPORT_TYPES[0]),
        "send_when_empty": True,
    }


def _panel(
    request: Request,
    who: Viewer,
    *,
    report: Any | None,
    definition: dict[str, Any],
    organizations: list[str],
    editable: bool,
    title: str,
) -> HTMLResponse:
    service = service_of(request)
    choices = _choices(request, service, who, organizations) if editable else None
    # Test connection writes a probe to the server: offered where the registry lets this person.
    test_orgs = [org for org in organizations if who.may(Action.TEST_CONNECTION, org)] if editable else []
    return _page(
        request,
        "report_form.html" if editable else "report_view.html",
        {
            "viewer": who,
            "title": title,
            "report": report,
            "d": definition,
            "choices": choices,
            "timezones": timezone_names() if editable else (),
            "type_choices": _labels(REPORT_TYPES, TYPE_LABELS),
            "status_choices": _labels(("enabled", "disabled"), STATUS_LABELS),
            "frequency_choices": _labels(FREQUENCIES, FREQUENCY_LABELS),
            "weekday_choices": [(d, d.capitalize()) for d in WEEKDAYS],
            "period_choices": _labels(PERIOD_KINDS, PERIOD_LABELS),
            "destination_choices": _labels(DESTINATION_TYPES, DESTINATION_LABELS),
            "default_patterns": {t: default_filename_pattern(t) for t in REPORT_TYPES},
            "format_choices": list(FORMAT_LABELS.items()),
            "format_extensions": {f: FORMAT_EXTENSIONS[f] for f in FORMAT_LABELS},
            "max_destinations": MAX_DESTINATIONS,
            "sse_choices": list(SSE_LABELS.items()),
            "default_subject": DEFAULT_SUBJECT_TEMPLATE,
            "can_test": bool(test_orgs),
            "test_orgs": test_orgs,
        },
    )


@router.get("/reports/new", response_class=HTMLResponse)
def new_report(request: Request, who: Viewer | None = Depends(viewer)) -> Response:
    if who is None:
        return sign_in_redirect(request)
    organizations = who.organizations_where(Action.CREATE)
    if not organizations:
        return _page(request, "forbidden.html", {"viewer": who, "title": "Add Scheduled Report"}, 403)
    service = service_of(request)
    workspaces = _choices(request, service, who, organizations).workspaces
    return _panel(
        request,
        who,
        report=None,
        definition=_new_definition(organizations[0], workspaces),
        organizations=organizations,
        editable=True,
        title="Add Scheduled Report",
    )


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_page(request: Request, report_id: str, who: Viewer | None = Depends(viewer)) -> Response:
    if who is None:
        return sign_in_redirect(request)
    try:
        report = service_of(request).get_report(who.email, report_id)
    except NotFound:
        return _not_found(request, who, f"report {report_id}")
    editable = who.may(Action.UPDATE, report.organization)
    return _panel(
        request,
        who,
        report=report,
        definition=report.definition,
        organizations=[report.organization],
        editable=editable,
        title=report.name,
    )


# The audit log


@router.get("/reports/{report_id}/audit-log", response_class=HTMLResponse)
def audit_log_page(request: Request, report_id: str, who: Viewer | None = Depends(viewer)) -> Response:
    if who is None:
        return sign_in_redirect(request)
    try:
        log = service_of(request).audit_log(who.email, report_id)
    except NotFound:
        return _not_found(request, who, f"report {report_id}")
    schedule = log.report.definition.get("schedule")
    timezone = schedule.get("timezone") if isinstance(schedule, Mapping) else None
    dagster_url = _settings(request).dagster_url.rstrip("/")
    return _page(
        request,
        "audit_log.html",
        {
            "viewer": who,
            "title": f"Audit Log: {log.report.name}",
            "log": log,
            "timezone": timezone if _zone(timezone) else "UTC",
            "dagster_url": dagster_url,
        },
    )
