"""The API's answers beyond permissions: definition problems as `reports validate` words them, the
preview, bounds on what a client may send, the security headers, and the one 500 a server fault gives."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from report_platform.cli.main import cli
from report_platform.redaction import register_secret
from report_platform.reports.definition import parse_definition
from report_platform.web.preview import preview
from report_platform.web.security import CONTENT_SECURITY_POLICY
from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import OWNER, Console, make_console

BROKEN = sms_definition(
    schedule={"timezone": "Mars/Olympus_Mons", "frequency": "daily", "time_of_day": "6am"},
    destination={"type": "email", "to": ["not an address"], "subject_template": "{{Report}} {{Date}}"},
    period={"kind": "rolling_window", "lookback": "forever"},
    filename_pattern="{{ReportName}}.xlsx",
    colour="blue",
)


def _validate_cli(console: Console, definition: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What `report-platform reports validate FILE` prints for the definition, without `error: FILE: `."""
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(console.home.root))
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    result = CliRunner().invoke(cli, ["reports", "validate", str(path)])
    assert result.exit_code == 1
    return [line.removeprefix(f"error: {path}: ") for line in result.stderr.splitlines()]


def _as_lines(answer: dict) -> list[str]:
    return [f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in answer["errors"]]


def test_an_invalid_definition_gets_every_problem_by_field_as_reports_validate_words_it(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _validate_cli(console, BROKEN, tmp_path, monkeypatch)
    assert len(expected) >= 5
    owner = console.signed_in(OWNER)
    for path in ("/api/v1/reports/validate", "/api/v1/reports/preview", "/api/v1/reports"):
        answer = owner.post(path, json=BROKEN)
        assert answer.status_code == 422, path
        assert _as_lines(answer.json()) == expected, path
    fields = {e["field"] for e in owner.post("/api/v1/reports/validate", json=BROKEN).json()["errors"]}
    assert {"schedule.timezone", "schedule.time_of_day", "destination.to", "colour"} <= fields


def test_an_update_is_refused_with_the_same_messages(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report_id = console.service.create_report(OWNER, sms_definition(name="To be broken"))
    before = console.registry_rows()
    answer = console.signed_in(OWNER).put(f"/api/v1/reports/{report_id}", json=BROKEN)
    assert answer.status_code == 422
    assert _as_lines(answer.json()) == _validate_cli(console, BROKEN, tmp_path, monkeypatch)
    assert console.registry_rows() == before


def test_a_valid_definition_validates_and_previews_its_next_five_runs(console: Console) -> None:
    definition = sms_definition(
        destination={**sms_definition()["destination"], "subject_template": "{{ReportName}}: {{PeriodStart}}"}
    )
    owner = console.signed_in(OWNER)
    assert owner.post("/api/v1/reports/validate", json=definition).json() == {
        "valid": True,
        "type": "sms_usage",
        "name": "Daily SMS usage",
    }
    answer = owner.post("/api/v1/reports/preview", json=definition).json()
    assert (answer["timezone"], answer["schedule"]) == ("America/New_York", "Daily at 06:00 America/New_York")
    runs = answer["runs"]
    assert len(runs) == 5
    for run in runs:
        local_day = run["scheduled_at"][:10]
        assert run["scheduled_at"][10:19] == "T06:00:00"
        assert run["scheduled_at"].endswith(("-05:00", "-04:00")) and run["scheduled_at_utc"].endswith("Z")
        # previous_day: the local day before, as the file name and subject render it
        assert run["period_end"].startswith(local_day + "T00:00:00")
        day_before = run["period_start"][:10]
        assert run["file_name"] == f"Daily SMS usage_{day_before}_{day_before}.csv"
        assert run["subject"] == f"Daily SMS usage: {day_before}"
    assert [r["scheduled_at"] for r in runs] == sorted(r["scheduled_at"] for r in runs)


def test_a_preview_of_a_file_delivery_has_no_subject_and_follows_the_clocks() -> None:
    definition = parse_definition(
        sms_definition(
            destination={"type": "sftp", "connection": "partner-sftp", "remote_dir": "/in"},
            schedule={"timezone": "Europe/London", "frequency": "daily", "time_of_day": "01:30:00"},
        )
    )
    # 29 March 2026 has no 01:30 in London: Dagster fires at the end of the gap (02:00 BST, 01:00 UTC).
    answer = preview(definition, datetime(2026, 3, 28, 0, 0, tzinfo=UTC), count=3)
    assert [r.scheduled_at_utc.isoformat() for r in answer.runs] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]
    assert {r.subject for r in answer.runs} == {None}
    assert answer.runs[1].period_end_utc - answer.runs[1].period_start_utc == timedelta(hours=24)
    assert answer.runs[2].period_end_utc - answer.runs[2].period_start_utc == timedelta(hours=23)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"name": "\\ud800"}', "application/json", 422),  # a lone surrogate is not text
        (b'{"name": ', "application/json", 422),
        (b"[1, 2, 3]", "application/json", 422),
        (b'{"name": "x"}', "text/plain", 422),  # not parsed as JSON: no cross-site form can post one
        (b"\xff\xfe", "application/json", 400),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
    ],
)
def test_a_body_that_is_not_a_json_definition_is_refused_not_a_server_error(
    console: Console, body: bytes, content_type: str, status: int
) -> None:
    answer = console.signed_in(OWNER).post(
        "/api/v1/reports/validate", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text


def test_a_body_over_256_kib_is_refused_with_413(console: Console) -> None:
    owner = console.signed_in(OWNER)
    big = {**sms_definition(), "description": "x" * (256 * 1024)}
    assert owner.post("/api/v1/reports/validate", json=big).status_code == 413

    def chunks():  # noqa: ANN202  (no Content-Length: counted as it arrives)
        for _ in range(300):
            yield b" " * 1024

    answer = owner.post("/api/v1/reports/validate", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_a_nul_in_a_path_or_query_is_refused(console: Console) -> None:
    owner = console.signed_in(OWNER)
    assert owner.get("/api/v1/reports/rpt_%00").status_code == 400
    assert owner.get("/api/v1/reports?folder=a%00b").status_code == 400
    assert owner.post("/api/v1/folders", json={"name": "tab\there"}).status_code == 422


def test_every_answer_carries_the_security_headers_and_api_answers_are_not_cached(console: Console) -> None:
    owner, anonymous = console.signed_in(OWNER), console.anonymous()
    answers = [
        owner.get("/api/v1/reports"),
        anonymous.get("/api/v1/reports"),
        owner.get("/api/v1/reports/rpt_aaaaaaaaaa"),
        owner.post("/api/v1/reports/validate", json={}),
        anonymous.get("/api/v1/openapi.json"),
        anonymous.get("/no/such/page"),
    ]
    for answer in answers:
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, answer.url
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
    assert all(a.headers["Cache-Control"] == "no-store" for a in answers[:5])
    assert [a.status_code for a in answers] == [200, 401, 404, 422, 200, 404]


def test_the_openapi_document_is_served_and_no_docs_page_loads_scripts_from_elsewhere(console: Console) -> None:
    document = console.anonymous().get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/v1/session",
        "/api/v1/reports",
        "/api/v1/reports/validate",
        "/api/v1/reports/preview",
        "/api/v1/reports/{report_id}",
        "/api/v1/reports/{report_id}/pause",
        "/api/v1/reports/{report_id}/resume",
        "/api/v1/reports/{report_id}/run-now",
        "/api/v1/reports/{report_id}/move",
        "/api/v1/reports/{report_id}/audit-log",
        "/api/v1/folders",
        "/api/v1/folders/{name}",
        "/api/v1/connections/{name}/test",
    }
    create = document["paths"]["/api/v1/reports"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReportDefinition"
    }
    assert "Schedule" in document["components"]["schemas"]
    for path in ("/docs", "/redoc", "/api/v1/docs"):
        assert console.anonymous().get(path).status_code == 404


def test_a_server_fault_answers_500_and_is_logged_once_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    console = make_console(tmp_path / "console")
    secret = "hunter2-but-much-longer-0451"
    register_secret("CONSOLE_TEST_SECRET", secret)

    def broken() -> None:
        raise RuntimeError(f"the database said no to {secret}")

    console.app.add_api_route("/api/v1/fault-for-the-test", broken)
    with caplog.at_level(logging.ERROR, logger="report_platform.web.security"):
        answer = console.anonymous().get("/api/v1/fault-for-the-test")
    assert answer.status_code == 500 and answer.json() == {"detail": "internal error"}
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    [record] = [r for r in caplog.records if r.name == "report_platform.web.security"]
    assert "RuntimeError" in record.getMessage() and "[redacted:CONSOLE_TEST_SECRET]" in record.getMessage()
    assert secret not in caplog.text and secret not in answer.text


def test_a_folder_name_with_surrounding_spaces_is_saved_trimmed_and_answered_as_saved(fresh_console: Console) -> None:
    owner = fresh_console.signed_in(OWNER)
    created = owner.post("/api/v1/folders", json={"name": "  Finance  "})
    assert created.status_code == 201, created.text
    assert created.json() == {"organization": "acme", "name": "Finance"}
    renamed = owner.patch("/api/v1/folders/Finance", json={"name": " Billing "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {"organization": "acme", "name": "Billing"}
    assert [f["name"] for f in owner.get("/api/v1/folders").json()] == ["Billing"]


def test_large_answers_are_compressed_for_clients_that_accept_gzip_and_keep_their_headers(
    fresh_console: Console,
) -> None:
    for n in range(40):
        fresh_console.service.create_report(OWNER, sms_definition(name=f"Daily SMS {n:02}"))
    owner = fresh_console.signed_in(OWNER)
    listed = owner.get("/api/v1/reports", headers={"Accept-Encoding": "gzip"})
    assert listed.status_code == 200
    assert listed.headers["Content-Encoding"] == "gzip"
    assert int(listed.headers["Content-Length"]) * 4 < len(listed.content)  # the decoded body
    assert len(listed.json()) == 40
    assert listed.headers["Cache-Control"] == "no-store"
    assert listed.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    page = owner.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip" and "Daily SMS 39" in page.text
    # Without Accept-Encoding, and for small answers, the body goes as it is.
    assert "Content-Encoding" not in owner.get("/api/v1/reports", headers={"Accept-Encoding": "identity"}).headers
    assert "Content-Encoding" not in fresh_console.anonymous().get("/api/v1/reports").headers


def test_an_unknown_campaign_is_refused_with_the_known_names_as_reports_validate_words_it(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = sms_definition(
        name="East promotions", filters={"core_campaigns": [], "engage_campaigns": ["Acme East Promotion"]}
    )
    expected = [
        "filters.engage_campaigns: unknown Engage campaign 'Acme East Promotion' in workspace 'acme-east'; "
        "did you mean 'Acme East Promotions'? (known: Acme East Promotions)"
    ]
    assert _validate_cli(console, definition, tmp_path, monkeypatch) == expected
    owner = console.signed_in(OWNER)
    report_id = console.service.create_report(OWNER, sms_definition(name="East promotions"))
    before = console.registry_rows()
    for method, path in (
        ("post", "/api/v1/reports/validate"),
        ("post", "/api/v1/reports"),
        ("put", f"/api/v1/reports/{report_id}"),
    ):
        answer = getattr(owner, method)(path, json=definition)
        assert answer.status_code == 422, path
        assert _as_lines(answer.json()) == expected, path
        assert {e["field"] for e in answer.json()["errors"]} == {"filters.engage_campaigns"}
    assert console.registry_rows() == before
    fixed = {**definition, "filters": {"core_campaigns": [], "engage_campaigns": ["Acme East Promotions"]}}
    assert owner.put(f"/api/v1/reports/{report_id}", json=fixed).status_code == 200
    assert owner.get(f"/api/v1/reports/{report_id}").json()["filters"] == "Engage campaigns: Acme East Promotions"
    row = next(r for r in owner.get("/api/v1/reports").json() if r["id"] == report_id)
    assert row["filters"] == "Engage campaigns: Acme East Promotions"
