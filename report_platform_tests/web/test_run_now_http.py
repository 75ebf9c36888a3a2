""" "Run now" over HTTP answers at once (202 and the audit run id); the run follows in the audit log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from report_platform_tests.samples import sms_definition
from report_platform_tests.web.conftest import OWNER, make_console


def test_run_now_answers_at_once_and_the_in_process_run_follows_in_the_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    console = make_console(tmp_path / "console")
    monkeypatch.setenv("REPORT_PLATFORM_HOME", str(console.home.root))
    # No usage in the store: the run builds an empty file and, as the report says, sends nothing.
    report_id = console.service.create_report(OWNER, sms_definition(send_when_empty=False))
    owner = console.browser(OWNER)

    started = time.monotonic()
    answer = owner.post(
        f"/api/v1/reports/{report_id}/run-now", json={"period_start": "2026-03-01", "period_end": "2026-03-01"}
    )
    answered_in = time.monotonic() - started
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert queued["status"] == "QUEUED" and queued["report_id"] == report_id
    assert answered_in < 5  # the in-process run takes longer: it is not waited for

    console.wait_for_runs()
    log = owner.get(f"/api/v1/reports/{report_id}/audit-log").json()
    [run] = log["runs"]
    assert run["id"] == queued["audit_run_id"] and run["trigger"] == "run_now"
    assert run["requested_period_start"] == run["requested_period_end"] == "2026-03-01"
    assert run["dagster_run_id"] and run["period_start"] == "2026-03-01T05:00:00Z"  # New York's 1 March
    assert (run["status"], run["note"], run["delivered_to"]) == ("SUCCESS", "skipped: no rows", []), run
