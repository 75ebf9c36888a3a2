"""An analyst holds the store open for the whole time (DuckDB on `store.duckdb`, read-only, in a
process of its own, querying all along) while an ingestion run writes a new day and report runs
build from the store, all launched by the run queue with ForkRunLauncher. The ingestion is frozen
half-way through writing the new day's partition while a report builds and `report-platform sql`
reads. Nobody waits for a lock or fails with one, and the analyst sees the new day without
reopening the file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import dagster as dg
import pytest

from report_platform.store.duck import reader
from report_platform.store.partitions import partition_path
from report_platform.store.schema import SMS_MESSAGES
from report_platform_devservers.standins import SmtpStandin
from report_platform_tests.faults.harness import (
    NEW_YORK,
    ROOT,
    SMALL_AT,
    Platform,
    Servers,
    Store,
    open_platform,
    poll,
)
from report_platform_tests.faults.scenarios import TO

NEW_DAY = date(2026, 3, 5)
NEW_DAY_AT = datetime(2026, 3, 6, 6, 0, tzinfo=NEW_YORK)  # previous_day: the new day
HOLD_SECONDS = 240  # an upper bound: the analyst stops as soon as the test says so
INGESTED_ROWS = "400000"  # a partition that takes long enough to write to catch it half-way

ANALYST = """
import json, sys, time, duckdb
from pathlib import Path
con = duckdb.connect(sys.argv[1], read_only=True)
stop, end = Path(sys.argv[2]), time.monotonic() + float(sys.argv[3])
day = "select count(*) from sms_messages where occurred_at >= '2026-03-05' and occurred_at < '2026-03-06'"
first = con.execute(day).fetchone()[0]
print("open", flush=True)
queries = 0
while not stop.exists() and time.monotonic() < end:
    con.execute("select workspace_id, count(*) from sms_messages group by 1").fetchall()
    queries += 1
    time.sleep(0.05)
print(json.dumps({"queries": queries, "first": first, "last": con.execute(day).fetchone()[0]}), flush=True)
"""


@pytest.fixture(scope="module")
def analyst_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, SmtpStandin]]:
    work = tmp_path_factory.mktemp("analyst")
    with SmtpStandin(security="none") as relay:
        servers = Servers(relay.port, "127.0.0.1", 9, "nobody", "ssh-ed25519 AAAA", "", "http://127.0.0.1:9", "", "")
        settings = {"REPORT_PLATFORM_ROWS_PER_DAY": INGESTED_ROWS}
        with open_platform(work, servers, Store(big_days=()), settings=settings) as platform:
            yield platform, relay


def _count(p: Platform) -> int:
    with contextlib.closing(reader(p.home.store)) as con:
        return con.execute("select count(*) from sms_messages").fetchone()[0]


def _sql(query: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "report_platform.cli.main", "sql", query, "--json"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


FREEZE_ATTEMPTS = 5


def _freeze_while_writing(p: Platform) -> tuple[str, int]:
    """Launch the new day's SMS ingestion and SIGSTOP its process group while the partition exists
    only under its temporary name; returns the run and the stopped group.

    Freezing at the right moment is a race with the writer: the check after SIGSTOP proves the
    state the test is about (temporary file there, final file not yet), and when the writer won,
    its partition is removed again and the ingestion retried, a bounded number of times."""
    target = partition_path(p.home.store, SMS_MESSAGES, NEW_DAY)
    folder = target.parent
    for _ in range(FREEZE_ATTEMPTS):
        ingest = p.launch_job("usage_ingest_job", {"dagster/partition": NEW_DAY.isoformat()}, assets=["sms_messages"])
        poll(lambda: list(folder.glob(".tmp-*")), 120, "the new partition's write")
        group = p.worker(ingest).pid
        with contextlib.suppress(ProcessLookupError):  # a worker that already ended lost nothing
            os.killpg(group, signal.SIGSTOP)
            if list(folder.glob(".tmp-*")) and not target.exists():
                return ingest, group
            os.killpg(group, signal.SIGCONT)
        assert p.finish(ingest).status.value == "SUCCESS"
        target.unlink()
    pytest.fail(f"the ingestion finished its write before it could be stopped, {FREEZE_ATTEMPTS} times")


def test_an_analyst_holding_the_store_open_blocks_neither_ingestion_nor_reports(analyst_platform, tmp_path):
    p, relay = analyst_platform
    stop = tmp_path / "stop"
    analyst = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ANALYST), str(p.home.catalog), str(stop), str(HOLD_SECONDS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert analyst.stdout is not None and analyst.stdout.readline().strip() == "open"
        mail = {"type": "email", "to": [TO[0]]}
        earlier, new_day = p.create_report("Earlier day", mail), p.create_report("New day", mail)
        before = _count(p)

        # Ingestion of the new day's SMS is frozen, with its whole process group (the run worker
        # and anything it started), while the new partition is being written under its temporary
        # name.
        ingest, group = _freeze_while_writing(p)
        try:
            assert [run.status.value for run in p.settle(p.launch(earlier, SMALL_AT))] == ["SUCCESS"]
            sql = _sql("select count(*) as n from sms_messages")
            assert sql.returncode == 0, sql.stderr
            assert json.loads(sql.stdout)[0]["n"] == before  # the half-written day is not visible
        finally:
            os.killpg(group, signal.SIGCONT)
        assert p.finish(ingest).status.value == "SUCCESS"
        assert [run.status.value for run in p.settle(p.launch(new_day, NEW_DAY_AT))] == ["SUCCESS"]
        assert _count(p) > before
        assert analyst.poll() is None, "the analyst's session ended early"
    finally:
        stop.touch()
        out, err = analyst.communicate(timeout=60)
    assert analyst.returncode == 0, err
    assert "lock" not in err.lower()
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["queries"] > 0
    assert seen["first"] == 0 and seen["last"] > 0  # the new day, seen through the same open file

    (row,) = p.audit(new_day)
    assert row.status == "SUCCESS" and row.rows and row.rows > 0
    assert sorted(m.message["Subject"].split(" - ")[0] for m in relay.received) == ["Earlier day", "New day"]


def test_a_usage_partition_runs_its_steps_in_the_run_worker_process(analyst_platform):
    """Every step of an ingestion run (five steps, six assets) in the one process the run
    launcher started, as in an asset backfill: no interpreter started per step."""
    p, _ = analyst_platform
    day = NEW_DAY - timedelta(days=1)
    run_id = p.launch_job("usage_ingest_job", {"dagster/partition": day.isoformat()})
    assert p.finish(run_id).status.value == "SUCCESS"
    events = [r.dagster_event for r in p.instance.all_logs(run_id) if r.is_dagster_event]
    started = {e.step_key: e.pid for e in events if e.is_step_start}
    # voice_calls, sms_messages, aegis (transactions and events), aegis_interactions, billing_line_items
    assert len(started) == 5, started
    workers = {e.pid for e in events if e.event_type == dg.DagsterEventType.RUN_START}
    assert len(workers) == 1 and set(started.values()) == workers, (started, workers)
