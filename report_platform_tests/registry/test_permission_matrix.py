"""Every role x every action x every target, on SQLite and PostgreSQL.

Each case gets its own target report or folder, made by that organisation's Owner, then the
actor tries the action. Allowed actions must take effect; refused ones must raise the right error
and leave every registry table exactly as it was.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from report_platform.registry.db import init_registry
from report_platform.registry.errors import NotFound, PermissionDenied, UnknownUser
from report_platform.registry.service import ReportService
from report_platform_tests.registry.conftest import (
    ADMIN,
    EAST_USER,
    GLOBEX_OWNER,
    OWNER,
    UNKNOWN,
    USER,
    definition,
    seed,
    snapshot,
    wipe,
)

ROLES = {"owner": OWNER, "admin": ADMIN, "user": USER, "user_east_only": EAST_USER}
ROLES["unknown"] = UNKNOWN
# Every acting user belongs to acme; the restricted User is credentialed for acme-east only.
TARGETS = {
    "own_workspace": ("acme", "acme-east"),
    "other_workspace": ("acme", "acme-west"),
    "other_organization": ("globex", "globex-main"),
}
ORG_OWNER = {"acme": OWNER, "globex": GLOBEX_OWNER}
REPORT_ACTIONS = ("update", "pause", "resume", "run_now", "delete", "move")
FOLDER_ACTIONS = ("create_folder", "rename_folder", "delete_folder")
VIEW_ACTIONS = ("list", "show", "audit_log")
ACTIONS = ("create", *REPORT_ACTIONS, *FOLDER_ACTIONS, *VIEW_ACTIONS)

_names = itertools.count()


def expected(role: str, action: str, target: str) -> str:
    """ "ok", "denied" (PermissionDenied), "not_found" or "unknown" (UnknownUser)."""
    if role == "unknown":
        return "unknown"
    org, workspace = TARGETS[target]
    visible = org == "acme" and (role != "user_east_only" or workspace == "acme-east")
    if action == "list":
        return "ok"
    if action in ("show", "audit_log"):
        return "ok" if visible else "not_found"
    if action in REPORT_ACTIONS and not visible:
        return "not_found"  # never "forbidden": that would reveal the report exists
    return "ok" if role == "owner" and org == "acme" else "denied"


@dataclass
class Case:
    service: ReportService
    org: str
    workspace: str
    report_id: str = ""
    folder: str = ""


def _prepare(case: Case, action: str) -> None:
    owner = ORG_OWNER[case.org]
    unique = next(_names)
    if action in REPORT_ACTIONS or action in VIEW_ACTIONS:
        case.report_id = case.service.create_report(
            owner, definition(workspace=case.workspace, name=f"Target {unique}")
        )
        if action == "resume":
            case.service.pause(owner, case.report_id)
    if action in ("move", "rename_folder", "delete_folder"):
        case.folder = f"Folder {unique}"
        case.service.create_folder(owner, case.folder, organization=case.org)


def _act(case: Case, action: str, actor: str) -> Any:
    svc, rid = case.service, case.report_id
    calls: dict[str, Callable[[], Any]] = {
        "create": lambda: svc.create_report(actor, definition(workspace=case.workspace, name=f"New {next(_names)}")),
        "update": lambda: svc.update_report(actor, rid, definition(workspace=case.workspace, name="Renamed")),
        "pause": lambda: svc.pause(actor, rid),
        "resume": lambda: svc.resume(actor, rid),
        "run_now": lambda: svc.request_run_now(actor, rid),
        "delete": lambda: svc.delete(actor, rid),
        "move": lambda: svc.move_report(actor, rid, case.folder),
        "create_folder": lambda: svc.create_folder(actor, f"New folder {next(_names)}", organization=case.org),
        "rename_folder": lambda: svc.rename_folder(actor, case.folder, case.folder + " renamed", organization=case.org),
        "delete_folder": lambda: svc.delete_folder(actor, case.folder, organization=case.org),
        "list": lambda: svc.list_reports(actor),
        "show": lambda: svc.get_report(actor, rid),
        "audit_log": lambda: svc.audit_log(actor, rid),
    }
    return calls[action]()


def _check_effect(case: Case, action: str, result: Any) -> None:
    """The allowed action really happened (seen through the Owner's eyes)."""
    svc, owner, rid = case.service, ORG_OWNER[case.org], case.report_id
    if action == "create":
        assert svc.get_report(owner, result).workspace == case.workspace
    elif action in REPORT_ACTIONS:
        log = svc.audit_log(owner, rid)
        if action == "run_now":
            assert [r.status for r in log.runs] == ["QUEUED"]
        else:
            assert log.changes[0].action == action
    elif action == "create_folder" or action == "rename_folder":
        names = {f.name for f in svc.list_folders(owner, organization=case.org)}
        assert (case.folder + " renamed" in names) if action == "rename_folder" else names
    elif action == "delete_folder":
        names = {f.name for f in svc.list_folders(owner, organization=case.org)}
        assert case.folder not in names
    elif action == "list":
        assert isinstance(result, list)
    elif action in ("show", "audit_log"):
        view = result if action == "show" else result.report
        assert view.id == rid


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def matrix_service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportService]:
    """One seeded registry per backend, shared by the cases (each makes its own targets)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'registry.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.url_for("matrix")
        server.drop_database("matrix")
        server.create_database("matrix")
        wipe(url)
    svc = ReportService(init_registry(url))
    seed(svc)
    yield svc
    svc.engine.dispose()


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(matrix_service: ReportService, role: str, action: str, target: str):
    org, workspace = TARGETS[target]
    case = Case(matrix_service, org, workspace)
    _prepare(case, action)
    actor = ROLES[role]
    outcome = expected(role, action, target)
    before = snapshot(matrix_service.engine)

    if outcome == "ok":
        result = _act(case, action, actor)
        if action == "list":
            listed = {row.id for row in result}
            visible = expected(role, "show", target) == "ok"
            assert (case.report_id in listed) is visible
        elif action not in VIEW_ACTIONS:
            assert snapshot(matrix_service.engine) != before
        _check_effect(case, action, result)
        if action in VIEW_ACTIONS:
            assert snapshot(matrix_service.engine) == before  # viewing writes nothing
        return

    error = {"unknown": UnknownUser, "denied": PermissionDenied, "not_found": NotFound}[outcome]
    with pytest.raises(error) as caught:
        _act(case, action, actor)
    assert snapshot(matrix_service.engine) == before, "a refused action changed the registry"

    message = str(caught.value)
    if outcome == "not_found":
        assert message == f"no report {case.report_id}"  # nothing about whose it is
        assert not isinstance(caught.value, PermissionDenied)
    elif outcome == "unknown":
        assert UNKNOWN in message
    else:
        # The reason names the user and either their role or the organisation they lack.
        title = {"owner": "an Owner", "admin": "an Admin"}.get(role, "a User")
        reasons = (
            f"{actor} is {title} in acme: only an Owner may",
            f"{actor} has no credentials in organisation 'globex'",
            f"{actor} is not credentialed for workspace 'globex-main'",
        )
        assert any(reason in message for reason in reasons), message


def test_the_matrix_covers_every_outcome() -> None:
    """Guard against an `expected` that allows (or refuses) everything."""
    outcomes = {expected(r, a, t) for r, a, t in itertools.product(ROLES, ACTIONS, TARGETS)}
    assert outcomes == {"ok", "denied", "not_found", "unknown"}
    assert expected("owner", "delete", "own_workspace") == "ok"
    assert expected("admin", "delete", "own_workspace") == "denied"
    assert expected("user_east_only", "show", "other_workspace") == "not_found"
    assert expected("owner", "show", "other_organization") == "not_found"
