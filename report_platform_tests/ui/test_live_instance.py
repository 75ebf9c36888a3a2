"""What needs a running webserver and daemon: schedules appearing on their own, backfills, runs
launched on the webserver, schedule ticks of a paused report. Checked over GraphQL and the CLI."""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import io
import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from report_platform_tests.ui.conftest import Launched
from report_platform_tests.ui.live import LOCATION, OWNER, REPOSITORY, LivePlatform, wait_until

# The first test also pays for starting Dagster (once per test process).
pytestmark = [pytest.mark.timeout(900)]  # the first test of a worker also starts the live instance

SCHEDULE_DRY_RUN = """
mutation($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { skipReason runRequests { runKey tags { key value } } error { message } }
    }
    ... on PythonError { message }
    ... on ScheduleNotFoundError { message }
  }
}"""

NEXT_TICK = """
query($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename ... on Schedule { futureTicks(limit: 1) { results { timestamp } } }
  }
}"""

BACKFILL = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions partitionNames
      assetSelection { path }
      runs(limit: 20) { runId status tags { key value } }
    }
  }
}"""

BACKFILLS = """
{ partitionBackfillsOrError(limit: 20) { __typename ... on PartitionBackfills { results { id } } } }"""

RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    __typename ... on Run { status jobName tags { key value } }
  }
}"""

FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def schedule_selector(live: LivePlatform, report_id: str) -> dict[str, str]:
    return {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "scheduleName": live.schedule_of(report_id),
    }


def dry_run(live: LivePlatform, report_id: str, timestamp: float) -> dict[str, Any]:
    """What the schedule's evaluation says for a tick at `timestamp` (the UI's "Test schedule")."""
    answer = live.graphql(SCHEDULE_DRY_RUN, {"selector": schedule_selector(live, report_id), "timestamp": timestamp})
    tick = answer["scheduleDryRun"]
    assert tick["__typename"] == "DryRunInstigationTick", tick
    return tick["evaluationResult"]


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def audit_runs(live: LivePlatform, report_id: str) -> list[dict[str, Any]]:
    done = live.cli("reports", "audit-log", report_id, "--user", OWNER, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["runs"]


def local_date(timestamp: str, timezone: str) -> date:
    return datetime.fromisoformat(timestamp).astimezone(ZoneInfo(timezone)).date()


def attachments(mail_dir: Path) -> dict[str, bytes]:
    """File name -> bytes of every attachment the stand-in SMTP server received."""
    found = {}
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in message.iter_attachments():
            found[part.get_filename()] = part.get_payload(decode=True)
    return found


def test_report_created_while_dagster_runs_gets_its_schedule_without_a_restart(
    live_platform: LivePlatform, launched: Launched
) -> None:
    created = launched.late_report.result()
    assert created.returncode == 0, created.stderr
    report_id = created.stdout.strip()
    name = live_platform.schedule_of(report_id)  # a timing no other report has
    assert name not in live_platform.initial_schedules

    def listed() -> dict[str, str] | None:
        states = live_platform.schedules()
        return states if name in states else None

    elapsed = time.monotonic() - (launched.late_report.finished or time.monotonic())
    states = wait_until(
        listed, max(60 - elapsed, 5), f"{name} is listed by the running webserver within 60 s of `reports create`"
    )
    assert states[name] == "RUNNING"  # it will tick, not merely be listed
    for handle in ("sms_email", "voice_sftp", "billing_paused"):
        assert live_platform.schedule_of(live_platform.report_ids[handle]) in states  # the reload kept the others


def test_paused_report_tick_is_skipped_with_the_reason(live_platform: LivePlatform) -> None:
    paused = live_platform.report_ids["billing_paused"]
    result = dry_run(live_platform, paused, time.time())
    assert result["error"] is None
    assert result["runRequests"] == []
    assert "paused" in (result["skipReason"] or ""), result
    assert paused in result["skipReason"]

    # The same evaluation for an enabled report at its next tick asks for exactly one run.
    enabled = live_platform.report_ids["sms_email"]
    ticks = live_platform.graphql(NEXT_TICK, {"selector": schedule_selector(live_platform, enabled)})["scheduleOrError"]
    next_tick = ticks["futureTicks"]["results"][0]["timestamp"]
    result = dry_run(live_platform, enabled, next_tick)
    assert result["skipReason"] is None and result["error"] is None, result
    (request,) = result["runRequests"]  # a batch of the reports due at that time: this one alone
    assert request["runKey"].split("@")[0] == live_platform.schedule_of(enabled)
    assert tags_of(request)[f"report_platform/report.{enabled}"] == "in batch"
    assert tags_of(request)["report_platform/trigger"] == "schedule"


def test_run_now_launches_on_the_webserver_and_delivers_over_sftp(
    live_platform: LivePlatform, launched: Launched
) -> None:
    done = launched.run_now.result(timeout=400)
    assert done.stdout.strip(), f"run-now printed nothing: {done.stderr.strip()}"
    answer = json.loads(done.stdout)
    report_id = live_platform.report_ids["voice_sftp"]
    assert answer["report_id"] == report_id
    assert answer["launched"] == "webserver"
    assert answer["success"] is True, live_platform.failure_of(answer["dagster_run_id"])
    assert done.returncode == 0, done.stderr

    run = live_platform.graphql(RUN, {"id": answer["dagster_run_id"]})["runOrError"]
    assert run["__typename"] == "Run", run
    assert run["status"] == "SUCCESS"
    assert run["jobName"] == "voice_usage_report_job"
    assert tags_of(run)["report_platform/trigger"] == "run_now"

    day = launched.run_now_period.isoformat()
    delivered = live_platform.sftp_dir / "inbound" / "voice" / f"voice_{day}_{day}.csv"
    assert delivered.is_file(), sorted(str(p) for p in live_platform.sftp_dir.rglob("*"))
    rows = list(csv.DictReader(io.StringIO(delivered.read_text(encoding="utf-8-sig"))))
    assert rows, "the delivered voice export is empty"

    (entry,) = [r for r in audit_runs(live_platform, report_id) if r["dagster_run_id"] == answer["dagster_run_id"]]
    assert entry["id"] == answer["audit_run_id"]
    assert (entry["trigger"], entry["status"]) == ("run_now", "SUCCESS")
    assert entry["rows"] == len(rows)
    assert entry["sha256"] == hashlib.sha256(delivered.read_bytes()).hexdigest()
    assert local_date(entry["period_start"], "America/Los_Angeles") == launched.run_now_period
    assert [d["destination"] for d in entry["delivered_to"]] == ["sftp"]


def test_backfill_runs_once_per_date_and_delivers_every_period(live_platform: LivePlatform, launched: Launched) -> None:
    answer = launched.backfill.json()
    report_id = live_platform.report_ids["sms_email"]
    backfill_id = answer["backfill_id"]
    assert answer["dates"] == [d.isoformat() for d in launched.backfill_dates]
    assert answer["periods"] == len(launched.backfill_dates)

    listed = live_platform.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
    assert backfill_id in [b["id"] for b in listed]

    def finished() -> dict[str, Any] | None:
        backfill = live_platform.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return backfill if backfill["status"] in FINISHED_BACKFILL else None

    backfill = wait_until(finished, 300, f"backfill {backfill_id} finishes", every=3)
    failures = [live_platform.failure_of(r["runId"]) for r in backfill["runs"] if r["status"] != "SUCCESS"]
    assert backfill["status"] == "COMPLETED_SUCCESS", failures or backfill
    assert backfill["assetSelection"] == [{"path": ["sms_usage_export"]}]
    runs = backfill["runs"]
    assert sorted(tags_of(r)["dagster/partition/date"] for r in runs) == answer["dates"]
    assert {tags_of(r)["dagster/partition/report"] for r in runs} == {report_id}
    assert [r["status"] for r in runs] == ["SUCCESS"] * len(answer["dates"])

    # One audit-log run per period, triggered by the backfill, each with its Dagster run.
    entries = [r for r in audit_runs(live_platform, report_id) if r["trigger"] == "backfill"]
    assert sorted(r["dagster_run_id"] for r in entries) == sorted(r["runId"] for r in runs)
    assert [r["status"] for r in entries] == ["SUCCESS"] * len(runs)
    periods = sorted(local_date(r["period_start"], "America/New_York") for r in entries)
    assert periods == [d - timedelta(days=1) for d in launched.backfill_dates]  # previous_day of each date

    # Each period's file arrived at the stand-in mail server, byte for byte what the log recorded.
    received = attachments(live_platform.mail_dir)
    for entry in entries:
        day = local_date(entry["period_start"], "America/New_York").isoformat()
        name = f"Daily SMS usage (East)_{day}_{day}.csv"
        assert name in received, sorted(received)
        assert hashlib.sha256(received[name]).hexdigest() == entry["sha256"]
        assert entry["delivered_to"][0]["target"] == "mailto:ops@acme.example"


def test_backfill_asked_for_by_a_user_is_refused_and_launches_nothing(
    live_platform: LivePlatform, launched: Launched
) -> None:
    refused = launched.backfill_by_user.result()
    assert refused.returncode != 0
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
    assert "only an Owner may run reports now" in lines[0]

    owners = launched.backfill.json()["backfill_id"]
    listed = live_platform.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
    assert [b["id"] for b in listed] == [owners]
