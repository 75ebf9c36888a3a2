"""The JSON API under /api/v1 (PRODUCT.md §9), over the registry service.

Every route acts as the signed-in user (their e-mail address is the service's actor), so the
service's permission checks are the only ones: a refused action changes nothing, and its
`RegistryError` becomes the status code (`app.py`). Definitions are checked with the messages of
`report-platform reports validate`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from report_platform.app import known_names
from report_platform.delivery.connections import Connections
from report_platform.delivery.destinations import S3Destination, SftpDestination
from report_platform.domain.tenancy import load_tenancy
from report_platform.registry import AuditLog, FolderView, NotFound, ReportRow, ReportService, ReportView
from report_platform.registry.permissions import Action
from report_platform.registry.signin import Authenticated
from report_platform.reports.definition import ReportDefinition, parse_definition
from report_platform.settings import Home, PlatformSettings
from report_platform.web.background import Background
from report_platform.web.preview import preview
from report_platform.web.schemas import (
    ConnectionTestAnswer,
    ConnectionTestBody,
    CreatedAnswer,
    FolderAnswer,
    FolderBody,
    FolderRenameBody,
    InvalidAnswer,
    MoveBody,
    MovedAnswer,
    PreviewAnswer,
    ProblemAnswer,
    RunNowBody,
    RunQueuedAnswer,
    SignedInAnswer,
    SignInBody,
    StatusAnswer,
    UpdatedAnswer,
    ValidAnswer,
)
from report_platform.web.security import (
    SESSION_COOKIE,
    bearer_scheme,
    clear_session_cookie,
    client_address,
    cookie_scheme,
    current_user,
    set_session_cookie,
    sign_in_store_of,
)

DEFINITION_BODY = "x-report-definition-body"  # marks the operations whose body is a definition (see app.py)


_LONE_SURROGATE = "a string holds a lone surrogate (\\ud800-\\udfff), which is not text"


class StrictJSONRequest(Request):
    """JSON whose strings are all text: a lone surrogate ("\\ud800") is refused like malformed JSON,
    as no database column or log line could hold it."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            text = (await self.body()).decode("utf-8")
            value = json.loads(text)
            if _holds_lone_surrogate(value):
                raise json.JSONDecodeError(_LONE_SURROGATE, text, 0)
            self._json = value
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self):  # noqa: ANN201
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


def _holds_lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "The request is malformed (e.g. a bad date range, or a NUL character in the path or query).",
        401: "No valid session or API token (signing in: wrong e-mail address or password).",
        403: "The caller's role refuses the action, or the CSRF token is missing or wrong.",
        404: "No such report or folder, or none the caller may see.",
        409: "The action clashes with the current state (e.g. a folder name already taken).",
        413: "The body is larger than 256 KiB.",
        422: "The body is invalid: every problem, by field.",
        429: "Too many failed sign-ins; Retry-After says when to try again.",
    }
    answers: dict[int | str, dict[str, Any]] = {}
    for code in sorted({400, *codes}):  # any request may be malformed
        answers[code] = {"description": described[code]}
        if code != 413:  # Starlette answers 413 in plain text when Content-Length gives it away
            answers[code]["model"] = InvalidAnswer if code == 422 else ProblemAnswer
        if code == 429:
            answers[code]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answers


def signed_in(
    request: Request,
    _token: Annotated[Any, Security(bearer_scheme)] = None,
    _cookie: Annotated[Any, Security(cookie_scheme)] = None,
) -> Authenticated:
    """The caller (the schemes are named for the OpenAPI document; `current_user` checks)."""
    return current_user(request)


Caller = Annotated[Authenticated, Depends(signed_in)]
ReportId = Annotated[str, Path(min_length=1, max_length=64)]
FolderName = Annotated[str, Path(min_length=1, max_length=200)]
ConnectionName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
Organization = Annotated[
    str | None, Query(min_length=1, max_length=64, description="Needed only by those credentialed in several.")
]
Definition = Annotated[dict[str, Any], Body(description="A report definition: the YAML's structure as JSON.")]

router = APIRouter(prefix="/api/v1", route_class=StrictJSONRoute)
_definition_route = {"openapi_extra": {DEFINITION_BODY: True}}


def _service(request: Request) -> ReportService:
    return request.app.state.service


def _background(request: Request) -> Background:
    return request.app.state.background


def _settings(request: Request) -> PlatformSettings:
    return request.app.state.settings


def _checked(request: Request, caller: Authenticated, definition: dict[str, Any]) -> ReportDefinition:
    """The definition checked as `reports validate` checks a file (DefinitionError lists the problems),
    against the names of the caller's own organisations: no answer names another tenant's workspaces."""
    home: Home = request.app.state.home
    credentials = _service(request).principal(caller.email).credentials
    # Read each time, as the registry does when it saves: an edited file counts without a restart.
    known = known_names(load_tenancy(home.root), Connections.load(home.connections))
    theirs = {org: workspaces for org, workspaces in known.organizations.items() if org in credentials}
    visible = set().union(*theirs.values())
    known = replace(
        known,
        organizations=theirs,
        workflows={ws: names for ws, names in known.workflows.items() if ws in visible},
        campaigns={ws: names for ws, names in known.campaigns.items() if ws in visible},
    )
    return parse_definition(definition, known)


# Signing in and out


@router.post("/session", responses=_problems(401, 413, 422, 429))
def sign_in(body: SignInBody, request: Request, response: Response) -> SignedInAnswer:
    """Sign in with e-mail address and password: sets the session cookie and answers its CSRF token."""
    store = sign_in_store_of(request)
    signed = store.sign_in(body.email, body.password, client_address(request))
    set_session_cookie(response, signed, store.max_age, secure=_settings(request).console_secure_cookies)
    return SignedInAnswer(email=signed.email, csrf_token=signed.csrf_token, expires_at=signed.expires_at)


@router.delete("/session", status_code=204, responses=_problems(401, 403))
def sign_out(request: Request, caller: Caller) -> Response:
    """End this session (the cookie's); with an API token, nothing to end."""
    if caller.via == "session":
        sign_in_store_of(request).sign_out(request.cookies.get(SESSION_COOKIE, ""))
    response = Response(status_code=204)
    clear_session_cookie(response, secure=_settings(request).console_secure_cookies)
    return response


# Reports


@router.get("/reports", responses=_problems(401, 404, 422))
def list_reports(
    request: Request, caller: Caller, folder: Annotated[str | None, Query(min_length=1, max_length=200)] = None
) -> list[ReportRow]:
    """The reports the caller may see, as `reports list --json` lists them; `folder` filters by folder name."""
    return _service(request).list_reports(caller.email, folder)


@router.post("/reports", status_code=201, responses=_problems(400, 401, 403, 404, 409, 413, 422), **_definition_route)
def create_report(request: Request, caller: Caller, definition: Definition) -> CreatedAnswer:
    """Register a report from a definition; answers its id."""
    report_id = _service(request).create_report(caller.email, definition)
    _background(request).reload_schedules()
    return CreatedAnswer(id=report_id)


@router.post("/reports/validate", responses=_problems(401, 403, 413, 422), **_definition_route)
def validate_report(request: Request, caller: Caller, definition: Definition) -> ValidAnswer:
    """Check a definition as `reports validate` does; saves nothing."""
    checked = _checked(request, caller, definition)
    return ValidAnswer(type=checked.type, name=checked.name)


@router.post("/reports/preview", responses=_problems(401, 403, 413, 422), **_definition_route)
def preview_report(request: Request, caller: Caller, definition: Definition) -> PreviewAnswer:
    """The next five runs of a definition (report's timezone and UTC), the period each covers, the
    file name and, for e-mail, the subject; saves nothing."""
    return preview(_checked(request, caller, definition), datetime.now(UTC))


@router.get("/reports/{report_id}", responses=_problems(401, 404, 422))
def get_report(request: Request, caller: Caller, report_id: ReportId) -> ReportView:
    """One report in full, as `reports show --json` shows it."""
    return _service(request).get_report(caller.email, report_id)


@router.put("/reports/{report_id}", responses=_problems(400, 401, 403, 404, 409, 413, 422), **_definition_route)
def update_report(request: Request, caller: Caller, report_id: ReportId, definition: Definition) -> UpdatedAnswer:
    """Replace a report's definition; `status` and `folder` change only if the definition names them."""
    changed = _service(request).update_report(caller.email, report_id, definition)
    _background(request).reload_schedules()
    return UpdatedAnswer(id=report_id, changed=sorted(changed))


@router.delete("/reports/{report_id}", status_code=204, responses=_problems(401, 403, 404, 422))
def delete_report(request: Request, caller: Caller, report_id: ReportId) -> Response:
    """Delete a report and its schedule; its audit log stays readable."""
    _service(request).delete(caller.email, report_id)
    _background(request).reload_schedules()
    return Response(status_code=204)


@router.post("/reports/{report_id}/pause", responses=_problems(401, 403, 404, 422))
def pause_report(request: Request, caller: Caller, report_id: ReportId) -> StatusAnswer:
    """Stop the report's schedule; nothing is deleted."""
    changed = _service(request).pause(caller.email, report_id)
    _background(request).reload_schedules()
    return StatusAnswer(id=report_id, status="disabled", changed=changed)


@router.post("/reports/{report_id}/resume", responses=_problems(401, 403, 404, 422))
def resume_report(request: Request, caller: Caller, report_id: ReportId) -> StatusAnswer:
    """Start a paused report's schedule again."""
    changed = _service(request).resume(caller.email, report_id)
    _background(request).reload_schedules()
    return StatusAnswer(id=report_id, status="enabled", changed=changed)


@router.post("/reports/{report_id}/run-now", status_code=202, responses=_problems(400, 401, 403, 404, 413, 422))
def run_now(request: Request, caller: Caller, report_id: ReportId, body: RunNowBody | None = None) -> RunQueuedAnswer:
    """Run the report now, or re-deliver a past period; answers at once, the run follows in the audit log."""
    body = body or RunNowBody()
    queued = _service(request).request_run_now(caller.email, report_id, body.period_start, body.period_end)
    _background(request).launch(queued)
    return RunQueuedAnswer(report_id=report_id, audit_run_id=queued.run_id)


@router.post("/reports/{report_id}/move", responses=_problems(401, 403, 404, 413, 422))
def move_report(request: Request, caller: Caller, report_id: ReportId, body: MoveBody) -> MovedAnswer:
    """Put the report into an existing folder, or (null) into none."""
    changed = _service(request).move_report(caller.email, report_id, body.folder)
    return MovedAnswer(id=report_id, folder=body.folder, changed=changed)


@router.get("/reports/{report_id}/audit-log", responses=_problems(401, 404, 422))
def audit_log(request: Request, caller: Caller, report_id: ReportId) -> AuditLog:
    """Every run and every change of the report, newest first, also after it was deleted."""
    return _service(request).audit_log(caller.email, report_id)


# Folders


@router.get("/folders", responses=_problems(401, 422))
def list_folders(request: Request, caller: Caller, organization: Organization = None) -> list[FolderView]:
    """The folders of the caller's organisations, with the number of reports in each they may see."""
    return _service(request).list_folders(caller.email, organization=organization)


@router.post("/folders", status_code=201, responses=_problems(400, 401, 403, 409, 413, 422))
def create_folder(request: Request, caller: Caller, body: FolderBody) -> FolderAnswer:
    """Create an empty folder; names are unique within an organisation."""
    folder = _service(request).create_folder(caller.email, body.name, organization=body.organization)
    return FolderAnswer(organization=folder.organization, name=folder.name)


@router.patch("/folders/{name}", responses=_problems(400, 401, 403, 404, 409, 413, 422))
def rename_folder(
    request: Request, caller: Caller, name: FolderName, body: FolderRenameBody, organization: Organization = None
) -> FolderAnswer:
    """Rename a folder; its reports stay in it."""
    folder = _service(request).rename_folder(caller.email, name, body.name, organization=organization)
    return FolderAnswer(organization=folder.organization, name=folder.name)


@router.delete("/folders/{name}", status_code=204, responses=_problems(400, 401, 403, 404, 409, 422))
def delete_folder(request: Request, caller: Caller, name: FolderName, organization: Organization = None) -> Response:
    """Delete an empty folder; one that still holds reports is refused (409)."""
    _service(request).delete_folder(caller.email, name, organization=organization)
    return Response(status_code=204)


# Connections


@router.post("/connections/{name}/test", responses=_problems(401, 403, 404, 413, 422))
def test_connection(
    request: Request, caller: Caller, name: ConnectionName, body: ConnectionTestBody
) -> ConnectionTestAnswer:
    """Check a connection as `report-platform connections test` does: secrets, reaching the server,
    its host key or certificate, signing in, and write access (a probe file or object written and
    removed in the folder or bucket given). A failed check is an answer (200, `ok: false`, the step
    and its reason), not an error. An Owner's action, on connections their organisation may use:
    any other name is 404, so no other tenant's connection names are confirmed."""
    from pydantic import ValidationError

    from report_platform.delivery.probe import check_connection

    organization = _service(request).authorize(caller.email, Action.TEST_CONNECTION, body.organization)
    home: Home = request.app.state.home
    connections = Connections.load(home.connections)
    if name not in connections.names_for(body.kind, organization):
        raise NotFound(f"no {body.kind} connection '{name}' that {organization} may use")
    try:  # the folder, bucket and prefix follow a destination's rules
        if body.kind == "sftp" and body.remote_dir is not None:
            SftpDestination(type="sftp", connection=name, remote_dir=body.remote_dir)
        elif body.kind == "s3":
            S3Destination(type="s3", connection=name, bucket=body.bucket, prefix=body.prefix)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None
    result = check_connection(
        connections, name, kind=body.kind, remote_dir=body.remote_dir, bucket=body.bucket, prefix=body.prefix
    )
    return ConnectionTestAnswer.model_validate(result.to_dict())
