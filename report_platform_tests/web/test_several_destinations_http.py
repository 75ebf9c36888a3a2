"""Several destinations over HTTP and the CLI: the API takes `destinations`, and the list view and the
audit log (CLI, API, console page) show each destination's outcome of a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from report_platform.cli.main import cli
from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import OWNER, Console

OPS = {"type": "email", "to": ["ops@example.com"], "bcc": ["hidden@example.com"]}
FINANCE = {"type": "email", "to": ["finance@example.com"], "subject_template": "{{ReportName}} for finance"}
OUTCOMES = [
    {"destination": "email default:ops@example.com", "type": "email", "status": "delivered", "target": "mailto:x"},
    {"destination": "email default:finance@example.com", "type": "email", "status": "failed", "error": "550 no such"},
]


def _definition(**changes) -> dict:
    definition = sms_definition(name="Two mailboxes", destinations=[OPS, FINANCE], **changes)
    del definition["destination"]
    return definition


@pytest.fixture
def report_id(console: Console) -> str:
    answer = console.signed_in(OWNER).post(
        "/api/v1/reports", json=_definition(notify_on_failure=["oncall@acme.example"])
    )
    assert answer.status_code == 201, answer.text
    report_id = answer.json()["id"]
    system = console.service.system
    run_id = system.record_run_start(report_id, trigger="schedule", dagster_run_id="d-1")
    system.record_run_finish(
        run_id, status="FAILED", error="email default:finance@example.com: 550 no such", destinations=OUTCOMES
    )
    return report_id


def test_the_api_stores_destinations_as_written_and_shows_each_outcome(console: Console, report_id: str) -> None:
    owner = console.signed_in(OWNER)
    stored = owner.get(f"/api/v1/reports/{report_id}").json()["definition"]
    assert [d["to"] for d in stored["destinations"]] == [["ops@example.com"], ["finance@example.com"]]
    assert "destination" not in stored and stored["notify_on_failure"] == ["oncall@acme.example"]
    (row,) = [r for r in owner.get("/api/v1/reports").json() if r["id"] == report_id]
    assert row["last_status"] == "FAILED" and row["last_destinations"] == OUTCOMES
    (run,) = owner.get(f"/api/v1/reports/{report_id}/audit-log").json()["runs"]
    assert run["destinations"] == OUTCOMES
    page = owner.get(f"/reports/{report_id}/audit-log").text
    assert 'email default:ops@example.com: <span class="dest-delivered">delivered</span>' in page
    assert 'email default:finance@example.com: <span class="dest-failed">failed</span>' in page


def test_the_api_refuses_destination_and_destinations_together(console: Console) -> None:
    both = {**_definition(), "destination": OPS}
    answer = console.signed_in(OWNER).post("/api/v1/reports/validate", json=both)
    assert answer.status_code == 422
    assert {"field": "destinations", "message": "give either destination (one) or destinations (a list), not both"} in [
        {k: e[k] for k in ("field", "message")} for e in answer.json()["errors"]
    ]


def test_the_cli_lists_each_destination_of_the_last_run(
    console: Console, report_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(console.home.root))
    listed = CliRunner().invoke(cli, ["reports", "list", "--user", OWNER])
    assert listed.exit_code == 0, listed.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in listed.output.splitlines() if "│" in line]
    assert [report_id, "email default:ops@example.com", "delivered", "mailto:x"] in cells
    assert [report_id, "email default:finance@example.com", "failed", "550 no such"] in cells
    audit = CliRunner().invoke(cli, ["reports", "audit-log", report_id, "--user", OWNER])
    assert audit.exit_code == 0, audit.output
    run_id = console.service.audit_log(OWNER, report_id).runs[0].id
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in audit.output.splitlines() if "│" in line]
    assert [run_id, "email default:finance@example.com", "failed", "550 no such"] in cells


def test_reports_validate_names_every_new_field_problem(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(console.home.root))
    cases = {
        "destinations": ([], "destinations: must list at least one destination"),
        "notify_on_failure": (["nope"], "notify_on_failure: invalid e-mail address 'nope'"),
        "pause_after_failures": (0, "pause_after_failures: must be from 1 to 100, got 0"),
    }
    for field, (value, message) in cases.items():
        path = tmp_path / f"{field}.yaml"
        path.write_text(yaml.safe_dump({**_definition(), field: value}))
        result = CliRunner().invoke(cli, ["reports", "validate", str(path)])
        assert result.exit_code == 1 and result.stderr.strip() == f"error: {path}: {message}", result.stderr
