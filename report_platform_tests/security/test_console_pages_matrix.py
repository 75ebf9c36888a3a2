"""The console's pages obey the same permission matrix as the API, for every role and target.

Roles and targets are the HTTP API matrix's (report_platform_tests/web/test_permission_matrix_http.py:
an Owner, an Admin and a workspace-limited User of acme, nobody signed in; a report in the User's
workspace, in another workspace of acme, and in globex), plus the Owner of globex: someone of
another organisation, who sees acme's reports as acme's Owner sees globex's. Each page's answer
follows from the API's answer for the same look: 401 becomes the sign-in page, a report the
caller may not see is "Not found" exactly as a report that does not exist, and only those the
API lets change a report get the form with Save.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from report_platform_tests.web.conftest import GLOBEX_OWNER, Console, console  # noqa: F401
from report_platform_tests.web.test_permission_matrix_http import ROLES, TARGETS, Case, expected

ROLES_HERE = {**ROLES, "other_organization": GLOBEX_OWNER}
# Globex's Owner stands to acme's reports as acme's Owner stands to globex's, and the reverse.
SEEN_BY_GLOBEX = {"own_workspace": "other_organization", "other_workspace": "other_organization"}
SEEN_BY_GLOBEX["other_organization"] = "own_workspace"
# Each page, the API call that asks the same, and the path of the page.
PAGES = {
    "list": ("list", "/"),
    "new_report": ("create", "/reports/new"),
    "report": ("show", "/reports/{id}"),
    "audit_log": ("audit_log", "/reports/{id}/audit-log"),
}
PAGE_FOR_API = {401: 303, 201: 200}  # signed out: sent to sign in; "may create": the empty form
SAVE_BUTTON = '<button type="submit" class="primary">Save</button>'


def api_answer(role: str, action: str, target: str) -> int:
    """The API matrix's answer, with globex's Owner mapped onto acme's."""
    if role == "other_organization":
        return expected("owner", action, SEEN_BY_GLOBEX[target])
    return expected(role, action, target)


def page_answer(role: str, page: str, target: str) -> int:
    action, _ = PAGES[page]
    if page == "new_report":  # the empty form concerns no report: may they create in their own organisation?
        target = "other_organization" if role == "other_organization" else "own_workspace"
    api = api_answer(role, action, target)
    return PAGE_FOR_API.get(api, api)


def _without_ids(html: str) -> str:
    return re.sub(r"rpt_[a-z0-9]+", "rpt_", html)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("role", list(ROLES_HERE))
def test_console_pages_follow_the_permission_matrix(console: Console, role: str, page: str, target: str) -> None:  # noqa: F811
    case = Case(console, target)
    case.prepare("show")
    email = ROLES_HERE[role]
    client = console.signed_in(email) if email else console.anonymous()
    path = PAGES[page][1].format(id=case.report_id)
    before = console.registry_rows()

    answer = client.get(path, follow_redirects=False)

    assert answer.status_code == page_answer(role, page, target), answer.text[:500]
    assert console.registry_rows() == before, "looking at a page changed the registry"
    link = f'href="/reports/{case.report_id}"'
    visible = api_answer(role, "show", target) == 200
    if answer.status_code == 303:
        assert answer.headers["location"] == ("/login" if path == "/" else f"/login?next={quote(path, safe='/')}")
    elif answer.status_code == 404:
        # Exactly what a report that never existed gets: nothing says whose it is, or that it is.
        unknown = client.get(PAGES[page][1].format(id="rpt_nosuchreport"))
        assert _without_ids(answer.text) == _without_ids(unknown.text)
    elif answer.status_code == 403:
        assert SAVE_BUTTON not in answer.text
    elif page == "list":
        assert (link in answer.text) is visible
    elif page == "new_report":
        assert SAVE_BUTTON in answer.text
    elif page == "report":
        editable = api_answer(role, "update", target) == 200
        assert (SAVE_BUTTON in answer.text) is editable
    else:
        assert "Audit Log: Target " in answer.text


def test_the_pages_matrix_covers_every_answer() -> None:
    """Guard against a mapping that allows (or refuses) everything."""
    answers = {page_answer(r, p, t) for r in ROLES_HERE for p in PAGES for t in TARGETS}
    assert answers == {200, 303, 403, 404}
    assert page_answer("other_organization", "report", "own_workspace") == 404
    assert page_answer("other_organization", "report", "other_organization") == 200
    assert page_answer("admin", "new_report", "own_workspace") == 403
    assert page_answer("user", "audit_log", "other_workspace") == 404
