"""End-to-end flows against the production deployment (conftest.py starts it once for the module).

Every outcome is checked where a person would see it: at the stand-in delivery servers, in the
report's audit log (through the console's API), and in Dagster's runs. The reports are all created
through the console at the start, so that one code-location reload serves them all; two of them
fire at the same minute boundary, at least `LEAD_SECONDS` ahead, while the other flows run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from report_platform.database import make_engine
from report_platform.deployment import Stopped, console_healthy, group_members
from report_platform.migrations import head
from report_platform.settings import PROJECT_ROOT
from report_platform_devservers.standins.net import free_port
from report_platform_tests.production.harness import (
    ARCHIVE_BUCKET,
    IN_PROGRESS,
    OWNER,
    RUN_TIMEOUT,
    STORE_BUCKET,
    Production,
    definition,
    mail_to,
    processes_of,
    quiet_time_of_day,
    sftp_files,
    wait_until,
)

# The tick reports fire at the first minute boundary at least this far ahead of their creation:
# time for the code location to reload and the daemon to restart, so the daemon knows their
# schedules before the tick (the scheduler looks at its schedules once a minute).
LEAD_SECONDS = 45
SFTP_FOLDER = "/inbound/production"


@dataclass
class Reports:
    ids: dict[str, str]  # handle -> report id
    names: dict[str, str]  # handle -> report name
    tick_at: datetime  # when the two tick reports fire (UTC)
    first_daemon_restart: Stopped
    backfill: subprocess.Popen[str]  # `reports backfill` of two past dates, started meanwhile
    backfill_dates: list[date]


@pytest.fixture(scope="module")
def reports(production: Production) -> Reports:
    """Five reports created through the console in one burst; the daemon restarted once they are
    all in the code server (its first pass over the schedules then knows the tick reports)."""
    tick_at = (datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS + 59)).replace(second=0, microsecond=0)
    tick_time = tick_at.strftime("%H:%M:%S")
    definitions = {
        "tick_a": definition("Prod tick A", tick_time, mail_to("tick-a@acme.example")),
        "tick_b": definition("Prod tick B", tick_time, mail_to("tick-b@acme.example")),
        "run_now": definition(
            "Prod run now",
            quiet_time_of_day(),
            {"type": "sftp", "connection": "demo-sftp", "remote_dir": SFTP_FOLDER, "create_dirs": True},
        ),
        "backfill": definition("Prod backfill", quiet_time_of_day(), mail_to("backfill@acme.example")),
        # A time of its own, so its timing's schedule is its alone (the two above share one).
        "toggled": definition("Prod toggled", quiet_time_of_day(minute=30), mail_to("toggled@acme.example")),
    }
    ids, stopped = production.create_reports(definitions)
    assert datetime.now(UTC) < tick_at - timedelta(seconds=2), (
        f"the daemon was back only at {datetime.now(UTC):%H:%M:%S}, too close to the tick at {tick_at:%H:%M:%S}: "
        "raise LEAD_SECONDS"
    )
    # Started now, checked later: Dagster's backfill daemon looks for new backfills every 30 s.
    last = production.data_days[1]
    dates = [last - timedelta(days=1), last]
    backfill = production.cli_background(
        "reports", "backfill", ids["backfill"], "--user", OWNER,
        "--start", dates[0].isoformat(), "--end", dates[1].isoformat(), "--json",
    )  # fmt: skip
    return Reports(ids, {h: d["name"] for h, d in definitions.items()}, tick_at, stopped, backfill, dates)


def test_both_schemas_are_migrated_before_the_services_start(production: Production) -> None:
    migrated = production.migrated  # read after the migration steps, before any service started
    assert migrated["registry_revisions"] == {head()}
    assert {"reports", "report_runs", "delivery_ledger"} <= migrated["registry_tables"]
    assert {"runs", "event_logs", "jobs", "daemon_heartbeats"} <= migrated["dagster_tables"]
    assert migrated["dagster_revisions"], "Dagster's storage carries no Alembic revision"
    assert "Updating run storage" in production.deployment.log_path("dagster-migrate").read_text()
    assert production.deployment.log_path("registry-migrate").is_file()


def test_every_service_answers_its_health_check(production: Production) -> None:
    deployment, layout = production.deployment, production.layout
    assert {s.name: deployment.health(s.name) for s in deployment.services} == dict.fromkeys(
        ["code-server", "webserver", "daemon", "console"]
    )
    # The commands an operator (or a container's probes) would use.
    env = layout.child_environment()
    grpc = subprocess.run(  # noqa: S603
        [
            str(layout.bin / "dagster"),
            "api",
            "grpc-health-check",
            "-h",
            "127.0.0.1",
            "-p",
            str(layout.code_server_port),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert grpc.returncode == 0 and "successful" in grpc.stdout, grpc.stdout + grpc.stderr
    liveness = subprocess.run(  # noqa: S603
        [str(layout.bin / "dagster-daemon"), "liveness-check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert liveness.returncode == 0 and "Daemon live" in liveness.stdout, liveness.stdout + liveness.stderr
    assert console_healthy(layout.console_url) is None


def test_reports_created_through_the_console_get_their_schedules(production: Production, reports: Reports) -> None:
    loaded = production.schedules()
    for handle, report_id in reports.ids.items():
        assert production.schedule_of(report_id) in loaded, f"{handle} has no schedule"
    # Reports due at the same time share their timing's schedule; a report alone at its time has
    # a schedule of its own.
    ids = reports.ids
    assert production.schedule_of(ids["tick_a"]) == production.schedule_of(ids["tick_b"])
    others = {production.schedule_of(i) for h, i in ids.items() if h != "toggled"}
    assert production.schedule_of(ids["toggled"]) not in others
    restart = reports.first_daemon_restart
    assert restart.clean and restart.status == 0, (
        f"the daemon did not stop cleanly: {restart}\n{production.tails('daemon')}"
    )


def test_run_now_through_the_console_is_delivered_and_recorded_with_its_checksum(
    production: Production, reports: Reports
) -> None:
    report_id = reports.ids["run_now"]
    queued = production.console.call("POST", f"/api/v1/reports/{report_id}/run-now", {}, expect=202)

    def outcome() -> dict | None:
        row = next(r for r in production.audit_runs(report_id) if r["id"] == queued["audit_run_id"])
        return row if row["status"] in ("SUCCESS", "FAILED") else None

    row = wait_until(outcome, RUN_TIMEOUT, "the run-now's outcome in the audit log", production.tails)
    assert row["status"] == "SUCCESS", f"{row}\n{production.failure_of(row['dagster_run_id'] or '')}"
    assert row["trigger"] == "run_now" and row["dagster_run_id"]
    (arrived,) = sftp_files(production.servers, SFTP_FOLDER)
    assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
    assert hashlib.sha256(arrived.read_bytes()).hexdigest() == row["sha256"]
    assert row["bytes"] == arrived.stat().st_size
    (run,) = wait_until(
        lambda: [
            r for r in production.runs(report_id=report_id) if r["status"] not in ("QUEUED", "STARTING", "STARTED")
        ],
        RUN_TIMEOUT,
        "the run-now's Dagster run finished",
        production.tails,
    )
    assert run["id"] == row["dagster_run_id"] and run["status"] == "SUCCESS"
    assert "forked from the preloaded fork server" in production.failure_of(run["id"])
    # Built from the usage store in S3 and archived there: the data folder holds neither.
    s3 = production.servers.s3.client()
    archived = [
        o["Key"] for o in s3.list_objects_v2(Bucket=ARCHIVE_BUCKET).get("Contents", []) if report_id in o["Key"]
    ]
    data_files = [k for k in archived if not k.endswith((".sha256", ".json"))]
    assert data_files, archived
    assert any(
        hashlib.sha256(s3.get_object(Bucket=ARCHIVE_BUCKET, Key=k)["Body"].read()).hexdigest() == row["sha256"]
        for k in data_files
    ), archived
    assert s3.list_objects_v2(Bucket=STORE_BUCKET, Prefix="usage/").get("KeyCount", 0) > 0
    assert not list(production.home.store.rglob("*.parquet")), "usage partitions in the local data folder"


def test_backfill_of_two_past_periods_through_the_cli(production: Production, reports: Reports) -> None:
    report_id, dates = reports.ids["backfill"], reports.backfill_dates
    done = production.cli_result(reports.backfill)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["dates"] == [d.isoformat() for d in dates] and answer["periods"] == 2

    rows = wait_until(
        lambda: production.finished(report_id, 2, "backfill"),
        RUN_TIMEOUT * 2,
        "both backfilled periods in the audit log",
        production.tails,
    )
    assert [r["status"] for r in rows] == ["SUCCESS", "SUCCESS"], rows
    periods = sorted(r["period_start"][:10] for r in rows)
    assert periods == [(d - timedelta(days=1)).isoformat() for d in dates]
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["sha256"]) for r in rows)
    subjects = sorted(m["Subject"] for m in production.mails(reports.names["backfill"]))
    assert subjects == [f"{reports.names['backfill']} - {p}" for p in periods]
    runs = production.settled_runs(2, backfill=answer["backfill_id"])
    assert sorted(r["status"] for r in runs) == ["SUCCESS", "SUCCESS"], runs


def test_pause_and_resume_through_the_console_change_the_code_servers_decision(
    production: Production, reports: Reports
) -> None:
    report_id = reports.ids["toggled"]
    schedule = production.schedule_of(report_id)  # its timing's, which it has to itself
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    production.console.call("POST", f"/api/v1/reports/{report_id}/pause", expect=200)
    paused = production.dry_run(schedule, tomorrow)
    assert "is paused" in (paused["skipReason"] or ""), paused
    assert not paused["runRequests"]

    production.console.call("POST", f"/api/v1/reports/{report_id}/resume", expect=200)
    resumed = production.dry_run(schedule, tomorrow)
    assert resumed["skipReason"] is None and len(resumed["runRequests"]) == 1, resumed

    production.console.call("DELETE", f"/api/v1/reports/{report_id}", expect=204)
    wait_until(
        lambda: schedule not in production.schedules(),
        120,
        "the deleted report's schedule gone from the code server after its reload",
        lambda: production.tails("code-server", "webserver"),
    )


@dataclass
class Tick:
    handles: tuple[str, ...]  # the reports due at the tick, in one batch run
    restart: Stopped
    tick_statuses_at_stop: list[str]


@pytest.fixture(scope="module")
def tick(production: Production, reports: Reports) -> Tick:
    """Waits for the tick; as soon as the daemon has made the run of the first report's tick (the
    batch run of both, as they share the time), restarts the daemon, then waits for both reports."""
    handles = ("tick_a", "tick_b")
    time.sleep(max(0.0, (reports.tick_at - datetime.now(UTC)).total_seconds()))
    wait_until(
        lambda: production.tick_runs(reports.ids["tick_a"], reports.tick_at),
        120,
        f"a run of the tick at {reports.tick_at:%H:%M} made by the daemon",
        lambda: production.tails("daemon", "code-server"),
    )
    statuses = [r["status"] for r in production.tick_runs(reports.ids["tick_b"], reports.tick_at)]
    restart = production.deployment.stop_service("daemon")
    production.deployment.start_service("daemon")
    for handle in handles:
        wait_until(
            lambda handle=handle: production.finished(reports.ids[handle], 1, "schedule"),
            RUN_TIMEOUT,
            f"the tick of {handle} in the audit log",
            production.tails,
        )
    return Tick(handles, restart, statuses)


def test_the_daemon_runs_a_schedule_tick_and_it_is_delivered_once(
    production: Production, reports: Reports, tick: Tick
) -> None:
    report_id, name = reports.ids["tick_a"], reports.names["tick_a"]
    (row,) = [r for r in production.audit_runs(report_id) if r["trigger"] == "schedule"]
    assert row["status"] == "SUCCESS", f"{row}\n{production.failure_of(row['dagster_run_id'] or '')}"
    assert datetime.fromisoformat(row["scheduled_at"]) == reports.tick_at
    assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
    (mail,) = production.mails(name)
    period = (reports.tick_at.date() - timedelta(days=1)).isoformat()
    assert mail["Subject"] == f"{name} - {period}"
    (attachment,) = list(mail.iter_attachments())
    assert hashlib.sha256(attachment.get_payload(decode=True)).hexdigest() == row["sha256"]


def test_a_daemon_restart_at_the_tick_neither_loses_nor_doubles_a_run(
    production: Production, reports: Reports, tick: Tick
) -> None:
    assert tick.restart.clean and tick.restart.status == 0, (
        f"the daemon did not stop cleanly: {tick.restart}\n{production.tails('daemon')}"
    )
    batch_runs = set()
    for handle in tick.handles:
        runs = production.settled_tick_runs(reports.ids[handle], reports.tick_at)
        assert [r["status"] for r in runs] == ["SUCCESS"], f"{handle} at the tick: {runs}"
        batch_runs.add(runs[0]["id"])
        assert runs[0]["tags"].get("report_platform/batch"), f"{handle} was not in a batch run: {runs}"
        assert len(production.mails(reports.names[handle])) == 1, f"{handle} was not delivered exactly once"
        schedule_rows = [r for r in production.audit_runs(reports.ids[handle]) if r["trigger"] == "schedule"]
        assert [r["status"] for r in schedule_rows] == ["SUCCESS"], schedule_rows
        assert schedule_rows[0]["dagster_run_id"] == runs[0]["id"]
    assert len(batch_runs) == 1, f"the reports due at the same time were not in one batch run: {batch_runs}"


def test_sigterm_stops_every_service_cleanly_and_leaves_no_process(production: Production, tick: Tick) -> None:
    wait_until(
        lambda: not [r for r in production.runs() if r["status"] in IN_PROGRESS],
        RUN_TIMEOUT,
        "every run finished before the services stop",
        production.tails,
    )
    deployment = production.deployment
    groups = {s.name: deployment.pid(s.name) for s in deployment.services}
    stopped = deployment.stop()
    report = "; ".join(f"{s.name}: status {s.status} after {s.seconds:.1f} s" for s in stopped)
    print(f"SIGTERM: {report}")  # noqa: T201 - the exit statuses, for the record
    assert [s.name for s in stopped] == ["console", "daemon", "webserver", "code-server"]
    for s in stopped:
        # Clean: ended before its grace period ran out (no SIGKILL). Exit status 0: it handles
        # SIGTERM and stops gracefully, rather than being ended by the signal.
        assert s.clean and s.status == 0, f"{s.name} did not stop cleanly ({report})\n{production.tails(s.name)}"
    assert {name: group_members(pgid) for name, pgid in groups.items()} == dict.fromkeys(groups, [])
    assert processes_of(production.home) == [], "a process of the deployment (a run worker?) outlived it"


def test_no_secret_reaches_a_log_the_audit_log_or_dagsters_event_log(production: Production, tick: Tick) -> None:
    texts = {str(p): p.read_text(errors="replace") for p in production.layout.logs.glob("*.log")}
    texts |= {
        str(p): p.read_text(errors="replace")
        for p in production.layout.dagster_home.rglob("*")
        if p.is_file() and p.suffix in (".out", ".err", ".log", ".txt", ".yaml")
    }
    texts |= {f"CLI output {i}": out for i, out in enumerate(production.cli_outputs)}
    for name, password in production.secrets.items():
        leaks = [where for where, content in texts.items() if password in content]
        assert not leaks, f"the {name} database password appears in {leaks}"
    env = production.environment
    dagster_url = (
        f"postgresql+psycopg://{env['DAGSTER_PG_USER']}@{env['DAGSTER_PG_HOST']}:{env['DAGSTER_PG_PORT']}"
        f"/{env['DAGSTER_PG_DB']}"
    )
    for url, query in (
        (dagster_url, "SELECT count(*) FROM event_logs WHERE event LIKE :p"),
        (env["REPORT_PLATFORM_REGISTRY_URL"], "SELECT count(*) FROM report_runs WHERE error LIKE :p OR note LIKE :p"),
    ):
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                for password in production.secrets.values():
                    assert connection.execute(text(query), {"p": f"%{password}%"}).scalar() == 0
        finally:
            engine.dispose()


def test_the_supervisor_script_stops_what_it_started_on_sigterm(production: Production) -> None:
    """`scripts/production.sh` as an operator runs it (same databases, other ports), sent SIGTERM
    once it has migrated and started the code server: it stops what it started and exits 0.
    (Starting and stopping all four is what the tests above did with the same functions.)"""
    layout = production.layout
    env = {
        **production.environment,
        "DAGSTER_HOME": str(layout.dagster_home),
        "REPORT_PLATFORM_DAGSTER_URL": f"http://127.0.0.1:{free_port()}",
        "REPORT_PLATFORM_CODE_SERVER_PORT": str(free_port()),
        "REPORT_PLATFORM_CONSOLE_PORT": str(free_port()),
    }
    log = layout.logs / "supervisor.out"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(  # noqa: S603 - the project's own script
            [str(PROJECT_ROOT / "scripts" / "production.sh")], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: "code-server: started" in log.read_text(errors="replace") or supervisor.poll() is not None,
            180,
            "scripts/production.sh migrated and started the code server",
            lambda: log.read_text(errors="replace")[-3000:],
        )
        assert supervisor.poll() is None, f"the supervisor exited ({supervisor.returncode})\n{log.read_text()[-3000:]}"
        os.kill(supervisor.pid, signal.SIGTERM)
        status = supervisor.wait(timeout=120)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    output = log.read_text(errors="replace")
    assert status == 0, output[-3000:]
    # 0, or -15 when the SIGTERM came before the code server had loaded enough to handle it.
    assert re.search(r"code-server: stopped with status (0|-15) after", output), output[-3000:]
    pids = [int(p) for p in re.findall(r": started \(pid (\d+)\)", output)]
    assert len(pids) == 1, output[-3000:]
    assert {pid: group_members(pid) for pid in pids} == dict.fromkeys(pids, [])
    for password in production.secrets.values():
        assert password not in output
