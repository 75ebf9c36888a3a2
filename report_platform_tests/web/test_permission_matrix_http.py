"""Every endpoint x every role x every target, over HTTP, with PRODUCT.md §9's status codes.

Roles: an Owner and an Admin of acme, a User of acme credentialed for acme-east only, and nobody
signed in. Targets: a report or folder in acme-east (the User's own workspace), in acme-west
(another workspace of the organisation) and in globex (another organisation). Each case gets its
own target, made by that organisation's Owner through the service; then the role calls the
endpoint. Allowed calls must take effect; refused ones must answer the code and leave every
registry table as it was.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import ADMIN, GLOBEX_OWNER, OWNER, USER, Console

ROLES = {"owner": OWNER, "admin": ADMIN, "user": USER, "anonymous": None}
TARGETS = {
    "own_workspace": ("acme", "acme-east"),
    "other_workspace": ("acme", "acme-west"),
    "other_organization": ("globex", "globex-main"),
}
ORG_OWNER = {"acme": OWNER, "globex": GLOBEX_OWNER}
REPORT_CHANGES = ("update", "delete", "pause", "resume", "run_now", "move")
REPORT_VIEWS = ("show", "audit_log")
FOLDER_CHANGES = ("create_folder", "rename_folder", "delete_folder")
ACTIONS = (
    "list",
    "create",
    "validate",
    "preview",
    *REPORT_VIEWS,
    *REPORT_CHANGES,
    "list_folders",
    *FOLDER_CHANGES,
)
SUCCESS = {"create": 201, "create_folder": 201, "run_now": 202, "delete": 204, "delete_folder": 204}

_names = itertools.count()


def expected(role: str, action: str, target: str) -> int:
    if role == "anonymous":
        return 401
    org, workspace = TARGETS[target]
    visible = org == "acme" and (role != "user" or workspace == "acme-east")
    if action in ("list", "list_folders"):
        return 200
    if action in ("validate", "preview"):
        # Checked against the caller's own organisations: another's workspace is unknown to them.
        return 200 if org == "acme" else 422
    if action in REPORT_VIEWS:
        return 200 if visible else 404
    if action in REPORT_CHANGES and not visible:
        return 404  # never 403: that would say the report exists
    allowed = role == "owner" and org == "acme"
    return SUCCESS.get(action, 200) if allowed else 403


def _definition(workspace: str, name: str) -> dict[str, Any]:
    return sms_definition(workspace=workspace, name=name)


class Case:
    def __init__(self, console: Console, target: str) -> None:
        self.console = console
        self.org, self.workspace = TARGETS[target]
        self.report_id = ""
        self.folder = ""

    def prepare(self, action: str) -> None:
        service, owner, unique = self.console.service, ORG_OWNER[self.org], next(_names)
        if action in REPORT_CHANGES or action in REPORT_VIEWS or action == "list":
            self.report_id = service.create_report(owner, _definition(self.workspace, f"Target {unique}"))
            if action == "resume":
                service.pause(owner, self.report_id)
        if action in ("move", "rename_folder", "delete_folder"):
            self.folder = f"Folder {unique}"
            service.create_folder(owner, self.folder, organization=self.org)

    def call(self, client: TestClient, action: str) -> Response:
        report = f"/api/v1/reports/{self.report_id}"
        folder = f"/api/v1/folders/{self.folder}?organization={self.org}"
        new = _definition(self.workspace, f"New {next(_names)}")
        calls = {
            "list": lambda: client.get("/api/v1/reports"),
            "create": lambda: client.post("/api/v1/reports", json=new),
            "validate": lambda: client.post("/api/v1/reports/validate", json=new),
            "preview": lambda: client.post("/api/v1/reports/preview", json=new),
            "show": lambda: client.get(report),
            "audit_log": lambda: client.get(f"{report}/audit-log"),
            "update": lambda: client.put(report, json=_definition(self.workspace, "Renamed")),
            "delete": lambda: client.delete(report),
            "pause": lambda: client.post(f"{report}/pause"),
            "resume": lambda: client.post(f"{report}/resume"),
            "run_now": lambda: client.post(f"{report}/run-now", json={}),
            "move": lambda: client.post(f"{report}/move", json={"folder": self.folder}),
            "list_folders": lambda: client.get(f"/api/v1/folders?organization={self.org}"),
            "create_folder": lambda: client.post(
                "/api/v1/folders", json={"name": f"New folder {next(_names)}", "organization": self.org}
            ),
            "rename_folder": lambda: client.patch(folder, json={"name": self.folder + " renamed"}),
            "delete_folder": lambda: client.delete(folder),
        }
        return calls[action]()

    def check_effect(self, action: str, answer: Response, role: str) -> None:
        """What an allowed call did, seen through the Owner's eyes."""
        service, owner, rid = self.console.service, ORG_OWNER[self.org], self.report_id
        body = answer.json() if answer.content else None
        if action == "list":
            assert (rid in {row["id"] for row in body}) is self.visible_to(role)
        elif action == "create":
            assert service.get_report(owner, body["id"]).workspace == self.workspace
        elif action == "validate":
            assert body == {"valid": True, "type": "sms_usage", "name": body["name"]}
        elif action == "preview":
            assert len(body["runs"]) == 5 and body["timezone"] == "America/New_York"
        elif action in REPORT_VIEWS:
            assert (body["id"] if action == "show" else body["report"]["id"]) == rid
        elif action == "run_now":
            self.console.wait_for_runs()
            [run] = service.audit_log(owner, rid).runs
            assert run.id == body["audit_run_id"] and run.requested_by == OWNER
            # No Dagster instance is configured here ($DAGSTER_HOME unset): the launch fails, recorded.
            assert run.status == "FAILED" and run.error.startswith("the run could not be launched: ")
        elif action == "delete":
            assert service.audit_log(owner, rid).report.deleted_at is not None
        elif action == "move":
            assert service.get_report(owner, rid).folder == self.folder
        elif action in REPORT_CHANGES:
            assert service.audit_log(owner, rid).changes[0].action == action
        elif action in FOLDER_CHANGES or action == "list_folders":
            names = {f.name for f in service.list_folders(owner, organization=self.org)}
            if action == "create_folder":
                assert body["name"] in names
            elif action == "rename_folder":
                assert body == {"organization": self.org, "name": self.folder + " renamed"} and self.folder not in names
            elif action == "delete_folder":
                assert self.folder not in names

    def visible_to(self, role: str) -> bool:
        return self.org == "acme" and (role != "user" or self.workspace == "acme-east")


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix_over_http(console: Console, role: str, action: str, target: str) -> None:
    case = Case(console, target)
    case.prepare(action)
    email = ROLES[role]
    client = console.signed_in(email) if email else console.anonymous()
    before = console.registry_rows()
    status = expected(role, action, target)

    answer = case.call(client, action)

    assert answer.status_code == status, answer.text
    if status < 300:
        case.check_effect(action, answer, role)
        changes = action not in ("list", "validate", "preview", "list_folders", *REPORT_VIEWS)
        assert (console.registry_rows() != before) is changes
        return
    assert console.registry_rows() == before, "a refused call changed the registry"
    detail = answer.json()
    if status == 404:
        assert detail == {"detail": f"no report {case.report_id}"}  # nothing about whose it is
    elif status == 422:
        message = "unknown workspace 'globex-main' (known: acme-east, acme-labs, acme-west)"
        assert detail["errors"] == [{"field": "workspace", "message": message}]
    elif status == 403:
        title = {"owner": "an Owner", "admin": "an Admin", "user": "a User"}[role]
        reasons = (
            f"{email} is {title} in acme: only an Owner may",
            f"{email} has no credentials in organisation 'globex'",
            f"{email} is not credentialed for workspace 'globex-main'",
        )
        assert any(reason in detail["detail"] for reason in reasons), detail
    elif status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_the_matrix_covers_every_answer() -> None:
    """Guard against an `expected` that allows (or refuses) everything."""
    answers = {expected(r, a, t) for r, a, t in itertools.product(ROLES, ACTIONS, TARGETS)}
    assert answers == {200, 201, 202, 204, 401, 403, 404, 422}
    assert expected("owner", "delete", "own_workspace") == 204
    assert expected("admin", "delete", "other_workspace") == 403
    assert expected("user", "show", "other_workspace") == 404
    assert expected("owner", "show", "other_organization") == 404
