"""The Scheduled Reports pages in headless Chromium, against the real console and a real SMTP server.

One console and one browser per module (per xdist worker). The scenarios follow a report's life,
in order: the Owner creates it through the panel and edits it, files it into a new folder, runs
it now and finds the mail and a SUCCESS in its audit log, pauses it; the Admin finds the same pages
with no control that changes anything; the Owner deletes it. Each scenario also stands alone: the
report it works on is the one the panel created, or, when the scenarios are spread over workers,
the same definition saved through the service. After every scenario the browser must have
reported no script error, no CSP refusal and no dialog. Screenshots and page measurements go to
pytest's tmp folder.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from report_platform_tests.samples import sms_definition
from report_platform_tests.web_ui.conftest import ADMIN, OWNER, PASSWORDS, S3_CONNECTION, SFTP_CONNECTION, Console

pytestmark = [pytest.mark.timeout(300)]

VIEWER_ZONE = "Europe/Berlin"  # the browser's zone: times it shows are converted from the report's
REPORT_NAME = "Daily SMS usage"
REPORT_DESCRIPTION = "Yesterday's messages, for the ops team."
FILENAME_PATTERN = "{{ReportName}}_{{PeriodStart}}.csv"
FOLDER = "SMS Reports"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
# The fields PRODUCT.md §9 names, labelled in the seed's words (campaign filters are not in the model yet).
PANEL_LABELS = (
    "Name",
    "Description",
    "Type",
    "Status",
    "Workspace",
    "Timezone",
    "Frequency",
    "Time of Day",
    "Reporting Period",
    "Destination",
    "Filename pattern",
    "Subject template",
    "Body template",
    "To",
    "CC",
    "BCC",
)
CHANGING_BUTTONS = (
    "Add Scheduled Report",
    "New folder",
    "Pause",
    "Resume",
    "Run Now",
    "Delete",
    "Move",
    "Rename",
    "Delete folder",
    "Save",
    "Confirm",
)
# Refusals the scenarios ask for and check themselves (a wrong field, the Admin's POST).
EXPECTED_REFUSALS = re.compile(r"^Failed to load resource: the server responded with a status of (403|422) ")
MEASURE_JS = """async () => {
  const paint = await new Promise((resolve) => {
    const seen = performance.getEntriesByName("first-contentful-paint")[0];
    if (seen) return resolve(seen.startTime);
    new PerformanceObserver((list) => {
      const entry = list.getEntriesByName("first-contentful-paint")[0];
      if (entry) resolve(entry.startTime);
    }).observe({ type: "paint", buffered: true });
    setTimeout(() => resolve(-1), 5000);
  });
  const nav = performance.getEntriesByType("navigation")[0];
  const files = performance.getEntriesByType("resource").filter((r) => r.initiatorType !== "fetch");
  return {
    html_bytes: nav.encodedBodySize,
    page_bytes: nav.encodedBodySize + files.reduce((sum, r) => sum + r.encodedBodySize, 0),
    files: files.length + 1,
    first_paint_ms: Math.round(paint),
    dom_ready_ms: Math.round(nav.domContentLoadedEventEnd),
  };
}"""


@dataclass
class Tab:
    """A browser tab, with what the browser complained about and any dialog a page opened."""

    page: Any
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.page.context.close()


def _tab(browser: Any, **context: Any) -> Tab:
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id=VIEWER_ZONE, locale="en-GB", **context
    )
    context.set_default_timeout(15_000)
    tab = Tab(context.new_page())
    # A CSP refusal, a failed file, a script error: the console says so.
    tab.page.on("console", lambda m: tab.problems.append(m.text) if m.type == "error" else None)
    tab.page.on("pageerror", lambda e: tab.problems.append(str(e)))

    def dialog(d: Any) -> None:
        tab.dialogs.append(d.message)
        d.dismiss()

    tab.page.on("dialog", dialog)
    return tab


def _sign_in(tab: Tab, console: Console, email: str, password: str, path: str = "/login") -> None:
    page = tab.page
    page.goto(console.at(path))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _signed_in(browser: Any, console: Console, email: str) -> Tab:
    tab = _tab(browser)
    _sign_in(tab, console, email, PASSWORDS[email])
    expect(tab.page).to_have_url(console.at("/"))
    return tab


@pytest.fixture(scope="module")
def owner(browser: Any, console: Console) -> Iterator[Tab]:
    tab = _signed_in(browser, console, OWNER)
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def admin(browser: Any, console: Console) -> Iterator[Tab]:
    tab = _signed_in(browser, console, ADMIN)
    yield tab
    tab.close()


@pytest.fixture(autouse=True)
def browser_stayed_quiet(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each scenario: no script error, CSP refusal or failed file, and no dialog, in its tabs."""
    yield
    for tab in (v for v in request.node.funcargs.values() if isinstance(v, Tab)):
        problems = [p for p in tab.problems if not EXPECTED_REFUSALS.match(p)]
        dialogs = list(tab.dialogs)
        tab.problems.clear()
        tab.dialogs.clear()
        assert (problems, dialogs) == ([], []), "the browser complained or a page opened a dialog"


def _open(tab: Tab, console: Console, path: str) -> Any:
    page = tab.page
    page.goto(console.at(path))
    return page


def _shot(page: Any, console: Console, name: str) -> None:
    page.screenshot(path=console.shots / f"{name}.png", full_page=True)


def _row(page: Any, name: str) -> Any:
    return page.locator("tr.report").filter(has=page.get_by_role("link", name=name, exact=True))


def _find(console: Console, name: str) -> Any | None:
    rows = [r for r in console.service.list_reports(OWNER) if r.name == name]
    assert len(rows) <= 1, f"several reports named {name!r}"
    return rows[0] if rows else None


def _report(console: Console, name: str = REPORT_NAME) -> Any:
    """The report of the scenarios: the one the panel created, else the same definition saved now."""
    found = _find(console, name)
    if found is None:
        definition = sms_definition(name=name, description=REPORT_DESCRIPTION, filename_pattern=FILENAME_PATTERN)
        console.service.create_report(OWNER, definition)
        found = _find(console, name)
    return found


def test_a_signed_out_visitor_is_sent_to_sign_in(console: Console) -> None:
    for path, target in (
        ("/", "/login"),
        ("/reports/new", "/login?next=/reports/new"),
        ("/reports/rpt_x/audit-log", "/login?next=/reports/rpt_x/audit-log"),
    ):
        answer = _get(console, path)
        assert (answer.status, answer.getheader("location")) == (303, target)
    login = _get(console, "/login")
    assert login.status == 200
    assert "script-src 'self'" in login.getheader("content-security-policy")
    assert login.getheader("cache-control") == "no-store"


def _get(console: Console, path: str) -> http.client.HTTPResponse:
    """GET without following redirects."""
    connection = http.client.HTTPConnection(console.url.removeprefix("http://"), timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_sign_in_says_why_it_refused_and_returns_where_it_was_asked(browser: Any, console: Console) -> None:
    tab = _tab(browser)
    page = tab.page
    try:
        _sign_in(tab, console, OWNER, "not-the-password")
        expect(page.get_by_role("alert")).to_have_text("Wrong e-mail address or password.")
        _shot(page, console, "sign-in-refused")
        # A throwaway address, so the Owner's own count stays clean.
        for _ in range(8):
            _sign_in(tab, console, "nobody@acme.example", "still-not-the-password")
            alert = page.get_by_role("alert")
            expect(alert).to_be_visible()
            if alert.text_content().startswith("Too many"):
                break
        expect(alert).to_have_text(re.compile(r"^Too many attempts, try again in \d+ seconds?\.$"))
        assert page.url.startswith(console.at("/login"))
        # Sent to sign in from a page, the Owner comes back to it.
        page.goto(console.at("/reports/new"))
        expect(page).to_have_url(console.at("/login?next=/reports/new"))
        _shot(page, console, "login")
        page.get_by_label("Email").fill(OWNER)
        page.get_by_label("Password").fill(PASSWORDS[OWNER])
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(console.at("/reports/new"))
        expect(page.get_by_role("heading", name="Add Scheduled Report")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(console.at("/login"))
        page.goto(console.at("/"))
        expect(page).to_have_url(console.at("/login"))
        assert [p for p in tab.problems if not re.search(r"status of (401|429) ", p)] == []
    finally:
        tab.close()


def test_a_validation_error_is_shown_beside_its_field(owner: Tab, console: Console) -> None:
    page = _open(owner, console, "/")
    before = len(console.service.list_reports(OWNER))
    page.get_by_role("button", name="Add Scheduled Report").click()
    expect(page).to_have_url(re.compile(re.escape(console.at("/reports/new")) + r"\??$"))  # a GET form's "?"
    page.get_by_label("Name", exact=True).fill("Half-made report")
    page.get_by_label("Time of Day").fill("6am")
    page.get_by_label("Time of Day").blur()
    error = page.locator("#f-time-error")
    expect(error).to_have_text("must be HH:MM:SS (e.g. '06:00:00'), got '6am'")
    # Beside its own field: the message is in the field's box, after the input, which is marked invalid.
    field_box = page.locator(".field").filter(has=page.get_by_label("Time of Day"))
    expect(field_box.locator(".error")).to_be_visible()
    expect(page.get_by_label("Time of Day")).to_have_attribute("aria-invalid", "true")
    # Fields not yet touched say nothing until Save is pressed.
    expect(page.locator("#d0-to-error")).to_be_hidden()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#d0-to-error")).to_have_text("must list at least one e-mail address")
    expect(error).to_be_visible()
    # An address typed but not yet made a chip counts: the message goes as soon as it is there.
    page.get_by_role("textbox", name="To", exact=True).fill("ops@example.com")
    expect(page.locator("#d0-to-error")).to_be_hidden()
    expect(error).to_be_visible()
    _shot(page, console, "panel-with-errors")
    assert len(console.service.list_reports(OWNER)) == before
    assert page.url.startswith(console.at("/reports/new"))


def test_owner_creates_a_report_through_the_panel(owner: Tab, console: Console) -> None:
    assert _find(console, REPORT_NAME) is None
    page = _open(owner, console, "/reports/new")
    for label in PANEL_LABELS:
        expect(page.locator("label:visible", has_text=re.compile(f"^{re.escape(label)}$")).first).to_be_visible()
    page.get_by_label("Type", exact=True).select_option(label="Aegis Interaction")
    expect(page.get_by_label("Workflows")).to_be_visible()
    expect(page.get_by_label("Include log event details")).to_be_visible()
    # Only this organisation's workspaces are offered (globex is another tenant of the same platform).
    workspaces = page.get_by_role("combobox", name="Workspace").locator("option")
    assert "globex" not in " ".join(workspaces.all_inner_texts())
    # Billing may be scoped to the organisation, and writes a workbook.
    page.get_by_label("Type", exact=True).select_option(label="Billing")
    expect(page.get_by_label("Workflows")).to_be_hidden()
    expect(page.get_by_label("Filename pattern")).to_have_value("{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.xlsx")
    page.get_by_role("radio", name="Organization", exact=True).check()
    expect(page.get_by_role("combobox", name="Workspace")).to_be_hidden()
    expect(page.get_by_role("combobox", name="Organization")).to_have_value("acme")
    page.get_by_role("radio", name="Workspace", exact=True).check()
    page.get_by_label("Type", exact=True).select_option(label="Voice Usage")
    expect(page.get_by_label("Campaigns", exact=True)).to_be_visible()
    page.get_by_label("Type", exact=True).select_option(label="SMS Usage")
    expect(page.get_by_role("radio", name="Organization", exact=True)).to_be_hidden()
    # SMS filters on its Core and Engage campaigns, offered from the chosen workspace.
    expect(page.get_by_label("Core campaigns", exact=True)).to_be_visible()
    expect(page.get_by_label("Engage campaigns", exact=True)).to_be_visible()
    expect(page.get_by_label("Campaigns", exact=True)).to_be_hidden()
    expect(page.get_by_label("Workflows")).to_be_hidden()
    expect(page.get_by_label("Filename pattern")).to_have_value("{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv")
    # Sections follow the choices: a rolling window asks for its lookback, SFTP for its directory.
    page.get_by_label("Reporting Period").select_option(label="Rolling window")
    expect(page.get_by_label("Lookback")).to_be_visible()
    page.get_by_label("Destination", exact=True).select_option(label="SFTP")
    expect(page.get_by_label("Remote directory")).to_be_visible()
    expect(page.get_by_role("textbox", name="To", exact=True)).to_be_hidden()

    page.get_by_label("Name", exact=True).fill(REPORT_NAME)
    page.get_by_label("Description").fill(REPORT_DESCRIPTION)
    page.get_by_role("combobox", name="Workspace").select_option("acme-east")
    expect(page.get_by_label("Engage campaigns", exact=True).locator("option:enabled")).to_have_text(
        ["Acme East Promotions"]
    )
    page.get_by_label("Timezone").fill("America/New_York")
    page.get_by_label("Frequency").select_option(label="Daily")
    page.get_by_label("Time of Day").fill("06:00:00")
    page.get_by_label("Reporting Period").select_option(label="Previous day")
    page.get_by_label("Destination", exact=True).select_option(label="Email")
    to = page.get_by_role("textbox", name="To", exact=True)
    to.fill("ops@example.com")
    to.press("Enter")
    bcc = page.get_by_role("textbox", name="BCC", exact=True)
    bcc.fill("audit@example.com")
    bcc.press("Enter")
    expect(page.locator("[data-chips='destinations[0].to'] .chip")).to_have_text(["ops@example.com×"])
    page.get_by_label("Filename pattern").fill(FILENAME_PATTERN)

    # The live preview: five runs, in the report's zone and the viewer's, with file name and subject.
    preview = page.locator("#preview-table tbody tr")
    expect(preview).to_have_count(5)
    first = preview.first.locator("td")
    expect(first.nth(0)).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2} 06:00 E[SD]T$"))
    expect(first.nth(1)).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2} 1[12]:00 GMT\+[12]$"))
    expect(first.nth(3)).to_have_text(re.compile(r"^Daily SMS usage_\d{4}-\d{2}-\d{2}\.csv$"))
    expect(first.nth(4)).to_have_text(re.compile(r"^Daily SMS usage - \d{4}-\d{2}-\d{2}$"))
    _shot(page, console, "report-panel")

    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(console.at("/"))
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” created.")
    saved = _find(console, REPORT_NAME)
    assert saved is not None and saved.next_run is not None
    cells = _row(page, REPORT_NAME).locator("td")
    expect(cells.nth(1)).to_have_text("SMS Usage")
    expect(cells.nth(3)).to_have_text("Enabled")
    expect(cells.nth(4)).to_have_text("Daily at 06:00 America/New_York")
    shown_next = saved.next_run.astimezone(ZoneInfo(VIEWER_ZONE)).strftime("%Y-%m-%d %H:%M")
    expect(cells.nth(5)).to_have_text(re.compile(f"^{shown_next} "))
    definition = console.service.get_report(OWNER, saved.id).definition
    assert definition["destination"]["to"] == ["ops@example.com"]
    assert definition["destination"]["bcc"] == ["audit@example.com"]
    assert definition["description"] == REPORT_DESCRIPTION


def test_owner_edits_the_report_in_the_same_panel(owner: Tab, console: Console) -> None:
    report = _report(console)
    page = _open(owner, console, "/")
    page.get_by_role("link", name=REPORT_NAME, exact=True).click()
    expect(page).to_have_url(console.at(f"/reports/{report.id}"))
    expect(page.get_by_label("Name", exact=True)).to_have_value(REPORT_NAME)
    expect(page.locator("[data-chips='destinations[0].bcc'] .chip")).to_have_text(["audit@example.com×"])
    page.get_by_label("Frequency").select_option(label="Weekly")
    expect(page.get_by_label("Day of week")).to_have_value("monday")
    page.get_by_label("Day of week").select_option(label="Tuesday")
    page.get_by_label("Time of Day").fill("07:30:00")
    expect(page.locator("#preview-table tbody tr").first.locator("td").first).to_have_text(
        re.compile(r"^\d{4}-\d{2}-\d{2} 07:30 E[SD]T$")
    )
    page.get_by_role("button", name="Save").click()
    _says_saved(page, console, f"“{REPORT_NAME}” saved.")
    expect(_row(page, REPORT_NAME).locator("td").nth(4)).to_have_text("Weekly on Tuesday at 07:30 America/New_York")
    saved = console.service.get_report(OWNER, report.id)
    assert saved.definition["schedule"] == {
        "timezone": "America/New_York",
        "frequency": "weekly",
        "time_of_day": "07:30:00",
        "day_of_week": "tuesday",
    }
    assert saved.definition["destination"]["bcc"] == ["audit@example.com"]
    assert saved.definition["description"] == REPORT_DESCRIPTION
    assert saved.next_run is not None and saved.next_run.weekday() == 1


def test_a_new_folder_from_plus_and_a_report_dragged_into_it(owner: Tab, console: Console) -> None:
    _report(console)
    page = _open(owner, console, "/")
    page.get_by_role("button", name="New folder").click()
    dialog = page.get_by_role("dialog", name="New folder")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Folder name").fill(FOLDER)
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_have_text(f"Folder “{FOLDER}” created.")
    group = page.locator("tbody.group").filter(has=page.locator(".folder-name", has_text=FOLDER))
    expect(group).to_have_count(1)
    _row(page, REPORT_NAME).drag_to(group.locator("tr.group-head"))
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” moved to “{FOLDER}”.")
    expect(group.locator("tr.report")).to_have_count(1)
    assert _report(console).folder == FOLDER

    # The same move without a mouse: the row's "Move to folder" select, then Tab to its button.
    move = _row(page, REPORT_NAME).get_by_label("Move to folder")
    move.focus()
    move.select_option("")
    page.keyboard.press("Tab")
    expect(_row(page, REPORT_NAME).get_by_role("button", name="Move")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” taken out of its folder.")
    assert _report(console).folder is None
    _row(page, REPORT_NAME).get_by_label("Move to folder").select_option(FOLDER)
    _row(page, REPORT_NAME).get_by_role("button", name="Move").click()
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” moved to “{FOLDER}”.")
    assert _report(console).folder == FOLDER

    # The filter bar narrows the list in the page.
    total = len(console.service.list_reports(OWNER))
    page.get_by_label("Name", exact=True).fill("no such report")
    expect(_row(page, REPORT_NAME)).to_be_hidden()
    expect(page.locator("#filter-count")).to_have_text(f"0 of {total} report{'' if total == 1 else 's'} match")
    page.get_by_label("Name", exact=True).fill("daily sms")
    expect(_row(page, REPORT_NAME)).to_be_visible()
    page.get_by_label("Status", exact=True).select_option("disabled")
    expect(_row(page, REPORT_NAME)).to_be_hidden()
    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_label("Folder", exact=True).select_option("-")
    expect(_row(page, REPORT_NAME)).to_be_hidden()
    page.get_by_label("Folder", exact=True).select_option(FOLDER)
    expect(_row(page, REPORT_NAME)).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?name=daily\+sms&folder=SMS\+Reports$"))  # a reload keeps them
    page.get_by_label("Name", exact=True).fill("")
    page.get_by_label("Folder", exact=True).select_option("")
    _shot(page, console, "scheduled-tasks")


def test_run_now_delivers_the_mail_and_the_audit_log_shows_success(owner: Tab, console: Console) -> None:
    report = _report(console)
    runs_before = len(console.service.audit_log(OWNER, report.id).runs)
    mails_before = len(console.smtp.received)
    page = _open(owner, console, "/")
    _row(page, REPORT_NAME).get_by_role("button", name="Run Now").click()
    dialog = page.get_by_role("dialog", name=f"Run Now: {REPORT_NAME}")
    expect(dialog.get_by_label("Period start")).to_be_visible()
    expect(dialog.get_by_label("Period end")).to_be_visible()
    dialog.get_by_role("button", name="Run Now").click()
    expect(page.get_by_role("status")).to_contain_text(f"“{REPORT_NAME}” is running now")

    deadline = time.monotonic() + 120
    while True:
        runs = console.service.audit_log(OWNER, report.id).runs
        if len(runs) > runs_before and runs[0].status in ("SUCCESS", "FAILED"):
            break
        assert time.monotonic() < deadline, "the run did not finish within two minutes"
        time.sleep(0.5)
    run = runs[0]
    assert run.status == "SUCCESS", run.error
    mails = console.smtp.received[mails_before:]
    assert len(mails) == 1
    assert sorted(mails[0].rcpt_tos) == ["audit@example.com", "ops@example.com"]
    message = mails[0].message
    assert "audit@example.com" not in str(message["To"]) + str(message.get("Cc", ""))
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == f"{REPORT_NAME}_{run.period_start.date().isoformat()}.csv"

    page = _open(owner, console, f"/reports/{report.id}/audit-log")
    cells = page.locator("#runs tbody tr").first.locator("td")
    expect(cells.nth(0)).to_contain_text("Run Now")
    expect(cells.nth(0)).to_contain_text(OWNER)
    expect(cells.nth(5)).to_have_text("SUCCESS")
    expect(cells.nth(6)).to_have_text(str(run.rows))
    expect(cells.nth(7)).to_have_text(str(run.bytes))
    expect(cells.nth(8)).to_have_text(hashlib.sha256(attachment.get_payload(decode=True)).hexdigest())
    expect(cells.nth(9)).to_contain_text("mailto:")
    link = cells.nth(11).get_by_role("link")
    expect(link).to_have_attribute("href", f"http://127.0.0.1:9/runs/{run.dagster_run_id}")
    changes = page.locator("#changes tbody tr")
    expect(changes.last).to_contain_text("Created")
    expect(changes.last).to_contain_text(OWNER)
    _shot(page, console, "audit-log")

    page = _open(owner, console, "/")
    expect(_row(page, REPORT_NAME).locator("td").nth(7)).to_have_text("SUCCESS")


def test_pause_stops_the_schedule_and_resume_starts_it(owner: Tab, console: Console) -> None:
    report = _report(console)
    if report.status != "enabled":
        console.service.resume(OWNER, report.id)
    page = _open(owner, console, "/")
    _row(page, REPORT_NAME).get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” paused.")
    cells = _row(page, REPORT_NAME).locator("td")
    expect(cells.nth(3)).to_have_text("Disabled")
    expect(cells.nth(5)).to_have_text("—")
    report = _report(console)
    assert (report.status, report.next_run) == ("disabled", None)
    _row(page, REPORT_NAME).get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” resumed.")
    expect(_row(page, REPORT_NAME).locator("td").nth(3)).to_have_text("Enabled")
    assert _report(console).next_run is not None
    _row(page, REPORT_NAME).get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” paused.")
    assert _report(console).status == "disabled"


def test_a_name_with_markup_is_shown_as_text(owner: Tab, console: Console) -> None:
    report = _find(console, HOSTILE_NAME)
    report_id = report.id if report else console.service.create_report(OWNER, sms_definition(name=HOSTILE_NAME))
    for path in ("/", f"/reports/{report_id}", f"/reports/{report_id}/audit-log"):
        page = _open(owner, console, path)
        expect(page.get_by_text(HOSTILE_NAME).first).to_be_visible()
        assert page.locator("img").count() == 0
    page = _open(owner, console, "/")
    _row(page, HOSTILE_NAME).get_by_role("button", name="Delete").click()
    expect(page.get_by_role("dialog")).to_contain_text(f"Delete “{HOSTILE_NAME}”?")
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    _row(page, HOSTILE_NAME).get_by_role("button", name="Run Now").click()
    expect(page.get_by_role("dialog")).to_contain_text(f"Run Now: {HOSTILE_NAME}")
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    # The autouse check after this test fails if the markup ran: alert() opens a dialog.


def test_admin_sees_the_reports_but_no_control_that_changes_anything(admin: Tab, console: Console) -> None:
    report = _report(console)
    page = _open(admin, console, "/")
    expect(_row(page, REPORT_NAME)).to_be_visible()
    for name in CHANGING_BUTTONS:
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.locator("[draggable=true]")).to_have_count(0)
    expect(page.locator("dialog")).to_have_count(0)
    outside_filters = "els => els.filter((e) => !e.closest('#filters')).map((e) => e.outerHTML)"
    assert page.locator("main input, main select, main textarea").evaluate_all(outside_filters) == []
    visible = len(console.service.list_reports(ADMIN))
    expect(page.get_by_role("link", name="Audit Log")).to_have_count(visible)
    _shot(page, console, "scheduled-tasks-admin")

    page = _open(admin, console, f"/reports/{report.id}")
    expect(page.get_by_role("heading", name=REPORT_NAME)).to_be_visible()
    expect(page.locator("main input, main select, main textarea, main button")).to_have_count(0)
    expect(page.get_by_text("ops@example.com")).to_be_visible()
    _shot(page, console, "report-read-only")
    page = _open(admin, console, "/reports/new")
    expect(page.locator("main form")).to_have_count(0)
    expect(page.get_by_text("Only an Owner may create or change scheduled reports")).to_be_visible()
    page = _open(admin, console, f"/reports/{report.id}/audit-log")
    expect(page.locator("#runs tbody tr")).to_have_count(len(console.service.audit_log(ADMIN, report.id).runs))

    # The API refuses the Admin too, with the session's own CSRF token: 403, and nothing changes.
    before = _report(console).status
    action = "resume" if before == "disabled" else "pause"
    answer = page.evaluate(
        """async ([id, action]) => {
          const token = document.querySelector('meta[name="csrf-token"]').content;
          const r = await fetch(`/api/v1/reports/${id}/${action}`, {method: "POST", headers: {"X-CSRF-Token": token}});
          return {status: r.status, body: await r.json(), token};
        }""",
        [report.id, action],
    )
    assert answer["token"], "the page carries the session's CSRF token"
    assert answer["status"] == 403, answer
    assert f"only an Owner may {action} reports" in answer["body"]["detail"]
    assert _report(console).status == before


def test_delete_asks_for_confirmation_naming_the_report(owner: Tab, console: Console) -> None:
    report = _report(console)
    page = _open(owner, console, "/")
    _row(page, REPORT_NAME).get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete “{REPORT_NAME}”?")
    expect(dialog).to_contain_text(f"“{REPORT_NAME}” and its schedule are removed")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    _shot(page, console, "delete-confirmation")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(_row(page, REPORT_NAME)).to_be_visible()
    assert _find(console, REPORT_NAME) is not None
    _row(page, REPORT_NAME).get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"“{REPORT_NAME}” deleted.")
    expect(_row(page, REPORT_NAME)).to_have_count(0)
    assert _find(console, REPORT_NAME) is None
    # Its history stays readable.
    page = _open(owner, console, f"/reports/{report.id}/audit-log")
    expect(page.get_by_role("heading", name=f"Audit Log: {REPORT_NAME}")).to_be_visible()
    expect(page.locator("#changes tbody tr").first).to_contain_text("Deleted")


def test_pages_are_light_and_paint_fast(browser: Any, owner: Tab, console: Console) -> None:
    """Each main page loaded cold (a new browser profile, nothing cached): its bytes and first paint."""
    report = _report(console, "Measured report")
    signed_in = owner.page.context.storage_state()
    measured: dict[str, dict[str, float]] = {}
    for name, path, state in (
        ("login", "/login", None),
        ("scheduled-tasks", "/", signed_in),
        ("report-panel", "/reports/new", signed_in),
        ("report-edit", f"/reports/{report.id}", signed_in),
        ("audit-log", f"/reports/{report.id}/audit-log", signed_in),
    ):
        tab = _tab(browser, storage_state=state)
        try:
            tab.page.goto(console.at(path))
            measured[name] = tab.page.evaluate(MEASURE_JS)
            assert tab.problems == [], (name, tab.problems)
        finally:
            tab.close()
    (console.shots / "measured.json").write_text(json.dumps(measured, indent=2))
    for name, figures in measured.items():
        assert figures["page_bytes"] < 100_000, (name, figures)
        assert 0 < figures["first_paint_ms"] < 2_000, (name, figures)


def test_the_panel_offers_format_for_usage_types_and_manifest_for_file_destinations(
    owner: Tab, console: Console
) -> None:
    page = _open(owner, console, "/reports/new")
    page.get_by_label("Type", exact=True).select_option(label="SMS Usage")
    pattern = page.get_by_label("Filename pattern")
    expect(page.get_by_label("Format", exact=True)).to_be_visible()
    page.get_by_label("Format", exact=True).select_option("parquet")
    expect(pattern).to_have_value("{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.parquet")
    page.get_by_label("Format", exact=True).select_option("csv.gz")
    expect(pattern).to_have_value("{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv.gz")
    page.get_by_label("Type", exact=True).select_option(label="Billing")
    expect(page.get_by_label("Format", exact=True)).to_be_hidden()
    expect(pattern).to_have_value("{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.xlsx")
    page.get_by_label("Type", exact=True).select_option(label="Voice Usage")
    expect(pattern).to_have_value("{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv.gz")
    for destination in ("SFTP", "Amazon S3"):
        page.get_by_label("Destination", exact=True).select_option(label=destination)
        expect(page.locator("label:visible", has_text=re.compile("^Manifest$"))).to_have_count(1)
    page.get_by_label("Destination", exact=True).select_option(label="Email")
    expect(page.locator("label:visible", has_text=re.compile("^Manifest$"))).to_have_count(0)


def _saved(console: Console, name: str, definition: dict[str, Any]) -> str:
    """The id of the report named `name`, saved through the service with `definition` if it is new."""
    found = _find(console, name)
    return found.id if found else console.service.create_report(OWNER, {**definition, "name": name})


def _says_saved(page: Any, console: Console, message: str) -> None:
    """Saved: back on the list (the panel's own status regions are gone), which says so."""
    expect(page).to_have_url(console.at("/"))
    expect(page.get_by_role("status")).to_have_text(message)


def _destination(page: Any, number: int) -> Any:
    return page.get_by_role("group", name=f"Destination {number}", exact=True)


def _two_destinations(name: str) -> dict[str, Any]:
    definition = sms_definition(name=name, filename_pattern=FILENAME_PATTERN)
    definition["destinations"] = [definition.pop("destination"), dict(SFTP_DESTINATION)]
    return definition


SFTP_DESTINATION = {"type": "sftp", "connection": SFTP_CONNECTION, "remote_dir": "/inbound/reports", "manifest": True}


def test_a_second_destination_is_added_to_an_email_report(owner: Tab, console: Console) -> None:
    report_id = _saved(console, "Mail and partner", sms_definition(filename_pattern=FILENAME_PATTERN))
    page = _open(owner, console, f"/reports/{report_id}")
    first = _destination(page, 1)
    # One destination: nothing to remove.
    expect(first.get_by_role("button", name=re.compile("^Remove destination"))).to_be_hidden()
    page.get_by_role("button", name="Add destination").click()
    second = _destination(page, 2)
    expect(second.get_by_label("Destination", exact=True)).to_be_focused()
    second.get_by_label("Destination", exact=True).select_option(label="SFTP")
    expect(second.get_by_role("textbox", name="To", exact=True)).to_be_hidden()
    expect(second.get_by_role("combobox", name="Connection", exact=True)).to_have_value(SFTP_CONNECTION)
    second.get_by_label("Remote directory").fill("/inbound/reports")
    second.get_by_label("Manifest").check()
    expect(second.get_by_label("Create directories")).to_be_visible()
    expect(second.get_by_label("Encrypt to")).to_be_visible()
    expect(first.get_by_role("button", name="Remove destination 1")).to_be_visible()
    _shot(page, console, "panel-two-destinations")
    page.get_by_role("button", name="Save").click()
    _says_saved(page, console, "“Mail and partner” saved.")
    saved = console.service.get_report(OWNER, report_id).definition
    assert "destination" not in saved
    assert saved["destinations"][0]["to"] == ["ops@example.com"]
    assert saved["destinations"][0]["bcc"] == ["audit@example.com"]
    assert saved["destinations"][1] == {**SFTP_DESTINATION, "create_dirs": False, "encrypt_to": []}


def test_removing_a_destination_leaves_one_written_as_destination(owner: Tab, console: Console) -> None:
    report_id = _saved(console, "Partner only soon", _two_destinations("Partner only soon"))
    page = _open(owner, console, f"/reports/{report_id}")
    expect(_destination(page, 2).get_by_label("Remote directory")).to_have_value("/inbound/reports")
    _destination(page, 1).get_by_role("button", name="Remove destination 1").click()
    expect(page.locator("fieldset.destination")).to_have_count(1)
    # The SFTP destination is now the first, and the only one: it cannot be removed.
    only = _destination(page, 1)
    expect(only.get_by_label("Remote directory")).to_have_value("/inbound/reports")
    expect(only.get_by_role("button", name=re.compile("^Remove destination"))).to_be_hidden()
    page.get_by_role("button", name="Save").click()
    _says_saved(page, console, "“Partner only soon” saved.")
    saved = console.service.get_report(OWNER, report_id).definition
    assert "destinations" not in saved
    assert saved["destination"]["type"] == "sftp"
    assert saved["destination"]["remote_dir"] == "/inbound/reports"
    assert saved["destination"]["manifest"] is True


def test_a_refused_field_of_the_second_destination_is_shown_beside_it(owner: Tab, console: Console) -> None:
    report_id = _saved(console, "Bad folder", _two_destinations("Bad folder"))
    page = _open(owner, console, f"/reports/{report_id}")
    second = _destination(page, 2)
    second.get_by_label("Remote directory").fill("/inbound/../etc")
    page.get_by_role("button", name="Save").click()
    error = second.locator(".field").filter(has=page.get_by_label("Remote directory")).locator(".error")
    expect(error).to_have_text("must be a '/'-separated path without '..' parts, got '/inbound/../etc'")
    expect(second.get_by_label("Remote directory")).to_have_attribute("aria-invalid", "true")
    expect(second.get_by_label("Remote directory")).to_be_focused()
    expect(_destination(page, 1).locator(".error:visible")).to_have_count(0)
    expect(page.locator("#form-errors")).to_be_hidden()
    saved = console.service.get_report(OWNER, report_id).definition
    assert saved["destinations"][1]["remote_dir"] == "/inbound/reports"


def test_a_key_problem_is_shown_beside_encrypt_to_and_good_keys_are_kept_apart(
    owner: Tab, console: Console, tmp_path: Any
) -> None:
    from report_platform_tests.delivery.pgp_keys import make_key, remove

    alice = make_key("Alice <alice@partner.example>")
    bob = make_key("Bob <bob@partner.example>")
    expired = make_key("Old <old@partner.example>", expire="1d", faked_time="20200101T000000")
    try:
        report_id = _saved(console, "Encrypted drop", _two_destinations("Encrypted drop"))
        page = _open(owner, console, f"/reports/{report_id}")
        keys = _destination(page, 2).get_by_label("Encrypt to")
        keys.fill(alice.public + "\n" + expired.public)
        page.get_by_role("button", name="Save").click()
        error = _destination(page, 2).locator(".field").filter(has=page.get_by_label("Encrypt to")).locator(".error")
        expect(error).to_contain_text(f"key 2 of 2: key {expired.fingerprint} (Old <old@partner.example>) expired on")
        keys.fill(alice.public + bob.public)  # two blocks, one after the other
        page.get_by_role("button", name="Save").click()
        _says_saved(page, console, "“Encrypted drop” saved.")
        saved = console.service.get_report(OWNER, report_id).definition["destinations"][1]
        assert saved["encrypt_to"] == [alice.public.strip() + "\n", bob.public.strip() + "\n"]
    finally:
        for key in (alice, bob, expired):
            remove(key)


def test_connection_test_lists_the_checks_of_the_mail_server(owner: Tab, console: Console) -> None:
    page = _open(owner, console, "/reports/new")
    first = _destination(page, 1)
    # The organisation has one SMTP connection: it is named, not chosen.
    expect(first.get_by_text("default (your organization's SMTP connection)")).to_be_visible()
    first.get_by_role("button", name="Test connection").click()
    result = first.get_by_role("status")
    expect(result).to_contain_text("default: every check passed.")
    steps = result.locator("li")
    expect(steps.first).to_have_text(re.compile(r"^✓ \S"))
    texts = steps.all_inner_texts()
    assert texts and all(t.startswith("✓ ") for t in texts), texts
    assert any("127.0.0.1" in t or str(console.smtp.port) in t for t in texts), texts
    # An SFTP server that does not answer: the failing step says so.
    first.get_by_label("Destination", exact=True).select_option(label="SFTP")
    first.get_by_label("Remote directory").fill("/inbound")
    sftp = first.locator(".field.connection[data-kind='sftp']")
    sftp.get_by_role("button", name="Test connection").click()
    expect(sftp.get_by_role("status")).to_contain_text(f"{SFTP_CONNECTION}: a check failed.")
    expect(sftp.get_by_role("status").locator("li").last).to_have_text(re.compile(r"^✗ "))
    _shot(page, console, "panel-test-connection")


def test_failure_notices_are_saved(owner: Tab, console: Console) -> None:
    report_id = _saved(console, "Watched report", sms_definition(filename_pattern=FILENAME_PATTERN))
    page = _open(owner, console, f"/reports/{report_id}")
    pause = page.get_by_label("Pause after failures")
    expect(pause).to_have_value("5")
    notify = page.get_by_role("textbox", name="Notify on failure")
    notify.fill("oncall@acme.example")
    notify.press("Enter")
    notify.fill("lead@acme.example")
    notify.press("Enter")
    expect(page.locator("[data-chips='notify_on_failure'] .chip")).to_have_text(
        ["oncall@acme.example×", "lead@acme.example×"]
    )
    pause.fill("0")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-pause-after-error")).to_have_text("must be from 1 to 100, got 0")
    pause.fill("3")
    page.get_by_role("button", name="Save").click()
    _says_saved(page, console, "“Watched report” saved.")
    saved = console.service.get_report(OWNER, report_id).definition
    assert saved["notify_on_failure"] == ["oncall@acme.example", "lead@acme.example"]
    assert saved["pause_after_failures"] == 3


def test_large_file_links_and_s3_encryption_are_saved(owner: Tab, console: Console) -> None:
    report_id = _saved(console, "Big mail and bucket", sms_definition(filename_pattern=FILENAME_PATTERN))
    page = _open(owner, console, f"/reports/{report_id}")
    mail = _destination(page, 1)
    expect(mail.get_by_label("Link expires after")).to_be_hidden()
    mail.get_by_label("Link files too large to attach").check()
    expect(mail.get_by_role("combobox", name="Large files: S3 connection")).to_have_value(S3_CONNECTION)
    mail.get_by_label("Large files: Bucket").fill("acme-links")
    mail.get_by_label("Large files: Prefix").fill("links/")
    mail.get_by_label("Link expires after").fill("8d")
    page.get_by_role("button", name="Add destination").click()
    bucket = _destination(page, 2)
    bucket.get_by_label("Destination", exact=True).select_option(label="Amazon S3")
    bucket.get_by_role("textbox", name="Bucket", exact=True).fill("acme-reports")
    bucket.get_by_role("textbox", name="Prefix", exact=True).fill("sms/")
    expect(bucket.get_by_label("KMS key id")).to_be_hidden()
    bucket.get_by_label("Server-side encryption").select_option("aws:kms")
    bucket.get_by_label("KMS key id").fill("alias/reports")
    page.get_by_role("button", name="Save").click()
    expect(mail.locator(".field").filter(has=page.get_by_label("Link expires after")).locator(".error")).to_have_text(
        "a download link may live at most 7d, got '8d'"
    )
    mail.get_by_label("Link expires after").fill("12h")
    page.get_by_role("button", name="Save").click()
    _says_saved(page, console, "“Big mail and bucket” saved.")
    saved = console.service.get_report(OWNER, report_id).definition["destinations"]
    assert saved[0]["large_files"] == {
        "connection": S3_CONNECTION,
        "bucket": "acme-links",
        "prefix": "links/",
        "expires": "12h",
    }
    assert (saved[1]["bucket"], saved[1]["prefix"]) == ("acme-reports", "sms/")
    assert (saved[1]["server_side_encryption"], saved[1]["kms_key_id"]) == ("aws:kms", "alias/reports")


def test_the_read_only_view_lists_every_destination(admin: Tab, console: Console) -> None:
    definition = _two_destinations("Two places")
    definition["notify_on_failure"] = ["oncall@acme.example"]
    definition["pause_after_failures"] = 7
    definition["destinations"].append(
        {
            "type": "s3",
            "connection": S3_CONNECTION,
            "bucket": "acme-reports",
            "prefix": "sms/",
            "server_side_encryption": "AES256",
        }
    )
    report_id = _saved(console, "Two places", definition)
    page = _open(admin, console, f"/reports/{report_id}")
    expect(page.get_by_role("heading", name="3 destinations")).to_be_visible()
    mail = page.locator("section.destination-view").filter(has=page.get_by_role("heading", name="Destination 1: Email"))
    expect(mail).to_contain_text("ops@example.com")
    partner = page.locator("section.destination-view").filter(
        has=page.get_by_role("heading", name="Destination 2: SFTP")
    )
    expect(partner).to_contain_text(SFTP_CONNECTION)
    expect(partner).to_contain_text("/inbound/reports")
    expect(partner.locator("dt", has_text="Manifest").locator("+ dd")).to_have_text("Yes")
    bucket = page.locator("section.destination-view").filter(
        has=page.get_by_role("heading", name="Destination 3: Amazon S3")
    )
    expect(bucket).to_contain_text("acme-reports")
    expect(bucket).to_contain_text("AES256 (S3-managed keys)")
    expect(page.locator("dt", has_text="Notify on failure").locator("+ dd")).to_have_text("oncall@acme.example")
    expect(page.locator("dt", has_text="Pause after failures").locator("+ dd")).to_have_text("7 failed runs in a row")
    expect(page.locator("dt", has_text="Format").locator("+ dd")).to_have_text("CSV")
    expect(page.get_by_role("button", name="Test connection")).to_have_count(0)
    expect(page.locator("main input, main select, main textarea, main button")).to_have_count(0)
    _shot(page, console, "report-read-only-destinations")
