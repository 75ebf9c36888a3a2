"""The 06:00 burst as the product goal states it: 1,000 reports of every type, due at the same minute.

    .venv/bin/python benchmarks/bench_burst.py [--reports 1000] [--rows 100000]
        [--storage sqlite|postgres] [--max-concurrent-runs 2xCORES] [--scheduler-threads 0] [--alone-repeats 3]
        [--lead SECONDS] [--timeout SECONDS] [--keep DIR] [--pg-statements N]

Everything runs as deployed, on this machine, with the destinations on 127.0.0.1:

- The store holds one UTC day (yesterday) of SMS, voice and Aegis usage and its billing line
  items. The largest workspace gets `--rows` rows of each usage type; the demo tenancy's weights
  give the others 20-45 % of that (20,000 to 100,000 rows per report with the default).
- `--reports` reports: the four types in turn, each over one of four scopes (workspaces of both
  organisations; billing also whole organisations), delivered by e-mail (aiosmtpd relay), SFTP
  (OpenSSH sshd) or S3 (moto server), the stand-ins of `report_platform_devservers`. All are
  daily at the same UTC minute, over the previous day. The minute is the first whole minute
  after the reports are registered and the daemon is up (`--lead` seconds ahead; by default
  estimated from how fast the first reports register).
- Dagster as deployed: `dagster-daemon run -w workspace.yaml` with the repository's instance
  file (QueuedRunCoordinator, ForkRunLauncher, run monitoring, run retries), except
  `max_concurrent_runs` = `--max-concurrent-runs` (default: twice the machine's cores, so a run
  waiting on its destination or on the queue's next dequeue leaves no core idle; 200 reports on
  2 cores took 3.30x the physical limit with 2, 2.74x with 4 and 2.77x with 8, docs/throughput.md). `--storage
  sqlite` (default) uses dagster.yaml, as `make run` does: SQLite under $DAGSTER_HOME and the
  registry in the data folder. `--storage postgres` uses deploy/dagster.production.yaml on a
  throw-away PostgreSQL server on 127.0.0.1 (`report_platform_tests/servers/postgres.py`, which
  runs it with fsync off), the registry in a second database of the same server, and serves the
  code location as `report-platform production` does: `dagster code-server start`, which the
  daemon reaches through deploy/workspace.production.yaml (with workspace.yaml the daemon
  starts a code server of its own and replaces it every minute, each new one loading every
  report's schedule again). The daemon's
  own scheduler evaluates the schedule the burst's reports share (they share a timing) at that
  minute, as it does every minute; its tick asks for one run of `report_batch_job` per batch of
  due reports, each with its run key (schedule, minute, batch); its run queue launches them
  through ForkRunLauncher. One more report is due a minute earlier: its run starts the fork server, so
  the burst meets a warm one, as in a daemon that has been running. A variant,
  `--scheduler-threads N`, has the scheduler evaluate schedules on N threads (the instance's
  `schedules: use_threads`); dagster.yaml does not set it.
- The daemon runs under a small process that is a child subreaper. The fork server double-forks
  the run workers, so they end as that process's children, and `wait4` gives each worker's
  exact CPU time (user + system, with its reaped children).

Measured: the delay from the scheduled minute to each report's confirmed delivery (the audit
row's finish, written once the destination confirmed the file), the makespan (the minute to the
last confirmed delivery), runs per minute, run-worker CPU (with the fork server's share), and the
daemon's, code server's and (with `--storage postgres`) PostgreSQL's CPU during the burst;
`--pg-statements N` loads pg_stat_statements and lists the N statements that took longest.
Physical limit: for each distinct (type, scope, destination) of the burst, `--alone-repeats`
reports of that combination built and delivered one at a time in this warm process without
Dagster (`bench_run_overhead.own_work`), after the burst (a warm-up of each type and destination
first); the median wall time of the combination, summed over all reports, divided by the cores.

Verified: one run per report (its batch run), with the tick's run key, SUCCESS, one
materialisation of the report's partition; one audit
row per report, SUCCESS, trigger "schedule", the same rows as every report of its combination;
exactly one copy at its server (one message for its recipient at the relay, one file under its
name at the SFTP server, one object under its key in the bucket) with the audited size and
SHA-256.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import bench_run_overhead as overhead  # noqa: E402
import bench_scale as scale  # noqa: E402
from bench_run_now import pct  # noqa: E402

from report_platform_devservers.standins.net import free_port  # noqa: E402

BIN = Path(sys.executable).parent
BUCKET = "acme-reports"
PREFIX = "burst/"
SCOPES = (
    ("workspace", "acme-labs"),
    ("workspace", "acme-west"),
    ("workspace", "acme-east"),
    ("workspace", "globex-main"),
)
BILLING_SCOPES = (
    ("organization", "acme"),
    ("organization", "globex"),
    ("workspace", "acme-west"),
    ("workspace", "acme-labs"),
)
DESTINATIONS = ("email", "sftp", "s3")
POLL_SECONDS = 2.0

# Runs `dagster-daemon run` and reaps every process that ends under it. As a child subreaper it
# inherits the run workers the fork server double-forks, so wait4 gives each one's CPU time. It
# ignores SIGTERM (meant for the daemon's process group) and exits once it has no child left.
REAPER = r"""
import ctypes, json, os, signal, sys, time
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
signal.signal(signal.SIGTERM, signal.SIG_IGN)
out = open(sys.argv[1], "a", buffering=1)
daemon = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, setsigdef=(signal.SIGTERM,))
while True:
    try:
        pid = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT).si_pid
    except ChildProcessError:
        break
    try:  # still readable: the process is a zombie until wait4 below
        stat = open(f"/proc/{pid}/stat").read()
        start = int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        start = None
    _, status, usage = os.wait4(pid, 0)
    record = {"pid": pid, "start": start, "cpu": usage.ru_utime + usage.ru_stime, "ended": time.time()}
    out.write(json.dumps(record | {"daemon": pid == daemon}) + "\n")
"""


@dataclass(frozen=True)
class Combo:
    """What decides a report's own work: its type, whose data (and so how many rows), where it goes."""

    kind: str
    scope: tuple[str, str]  # ("workspace", id) or ("organization", id)
    destination: str

    @property
    def label(self) -> str:
        return f"{self.kind}, {self.scope[1]}, {self.destination}"


def combo_of(i: int) -> Combo:
    kind = scale.TYPES[i % len(scale.TYPES)]
    scopes = BILLING_SCOPES if kind == "billing" else SCOPES
    return Combo(kind, scopes[(i // 4) % len(scopes)], DESTINATIONS[(i // 16) % len(DESTINATIONS)])


def address(name: str) -> str:
    return f"{name}@acme.example"


def definition(name: str, combo: Combo, time_of_day: str) -> dict[str, Any]:
    """A report due daily at `time_of_day` UTC over the previous day, with one destination."""
    destination = {
        "email": {"type": "email", "to": [address(name)], "subject_template": "{{ReportName}} - {{Date}}"},
        "sftp": {"type": "sftp", "connection": "demo-sftp", "remote_dir": "/inbound", "create_dirs": True},
        "s3": {"type": "s3", "connection": "demo-s3", "bucket": BUCKET, "prefix": PREFIX},
    }[combo.destination]
    out: dict[str, Any] = {
        "name": name,
        "type": combo.kind,
        combo.scope[0]: combo.scope[1],
        "schedule": {"timezone": "UTC", "frequency": "daily", "time_of_day": time_of_day},
        "period": {"kind": "previous_day"},
        "destination": destination,
        "filename_pattern": "{{ReportName}}_{{PeriodStart}}." + ("xlsx" if combo.kind == "billing" else "csv"),
    }
    if combo.kind == "aegis_interaction":
        out["filters"] = {"workflows": [], "include_event_details": False}
    return out


def start_servers(root: Path) -> Any:
    """The demo's stand-in relay, sshd and S3 on free ports of 127.0.0.1 (no mail kept on disk)."""
    from report_platform_devservers.serve import DevServers
    from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin

    (root / "sftp").mkdir(parents=True)
    started: list[Any] = []
    try:
        smtp = SmtpStandin(security="none").start()
        started.append(smtp)
        sftp = SshdStandin(root_dir=root / "sftp", workdir=root / "sshd").start()
        started.append(sftp)
        s3 = MotoStandin().start()
        started.append(s3)
        s3.create_bucket(BUCKET)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return DevServers(root=root, smtp=smtp, sftp=sftp, s3=s3)


def instance_storage(
    kind: str, stack: contextlib.ExitStack, statements: bool = False
) -> tuple[str | None, Path, dict[str, str], Any]:
    """The registry URL (None: SQLite in the data folder), the instance file, the variables it
    reads and the PostgreSQL server (None with SQLite): the repository's dagster.yaml (SQLite under
    $DAGSTER_HOME), or the production file deploy/dagster.production.yaml on a PostgreSQL server on
    127.0.0.1 that holds the registry too. `statements`: the server keeps pg_stat_statements."""
    if kind == "sqlite":
        return None, ROOT / "dagster.yaml", {}, None
    from report_platform_tests.servers.postgres import running_postgres

    settings = {"shared_preload_libraries": "pg_stat_statements"} if statements else None
    server = stack.enter_context(running_postgres("dagster", settings))
    registry = server.create_database("registry")
    variables = {
        "DAGSTER_PG_HOST": server.host,
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_USER": server.user,
        "DAGSTER_PG_PASSWORD": "unused",  # the throw-away server trusts loopback connections
        "DAGSTER_PG_DB": server.database,
    }
    return registry, ROOT / "deploy" / "dagster.production.yaml", variables, server


def _statements(server: Any, reset: bool, top: int = 0) -> list[tuple[str, int, float, int]]:
    """pg_stat_statements over every database: reset it, or its `top` statements by total time
    (query, calls, total ms, rows)."""
    import psycopg

    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, dbname=server.database, autocommit=True
    ) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            conn.execute("SELECT pg_stat_statements_reset()")
            return []
        return conn.execute(
            "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s",
            (top,),
        ).fetchall()


def print_statements(found: list[tuple[str, int, float, int]]) -> None:
    total = sum(ms for _, _, ms, _ in found)
    print(f"\n#### PostgreSQL statements by execution time (top {len(found)}, {total / 1000:.1f} s in all)\n")
    print("| statement | calls | total | mean | rows |\n|---|---:|---:|---:|---:|")
    for query, calls, ms, rows in found:
        text = " ".join(query.split())[:140].replace("|", "\\|")
        print(f"| `{text}` | {calls:,} | {ms / 1000:.1f} s | {ms / max(calls, 1):.2f} ms | {rows:,} |")


def write_connections(home: Any, servers: Any) -> None:
    """The demo connections, open to both organisations."""
    connections = servers.connections()
    for kind in ("sftp", "s3"):
        for connection in connections[kind].values():
            connection["organizations"] = ["*"]
    home.connections.write_text(yaml.safe_dump(connections, sort_keys=False))


def prepare_store(home: Any, day: date, largest: int) -> dict[str, dict[str, int]]:
    """One UTC day of every usage source and its billing; rows per source and workspace."""
    import polars as pl

    from report_platform.domain.rate_card import load_rate_card
    from report_platform.domain.tenancy import load_tenancy
    from report_platform.ingest.generator import SOURCE_SHARE
    from report_platform.ingest.load import SOURCE_TABLES, SourceSettings, ingest_day
    from report_platform.store.duck import ensure_catalog

    tenancy = load_tenancy(home.root)
    top = max(tenancy.workspaces(), key=lambda w: w.weight).id
    ensure_catalog(home.store, home.catalog)
    sources = list(SOURCE_TABLES)
    rows: dict[str, dict[str, int]] = {}
    for source in sources:
        per_day = math.ceil(largest / scale.workspace_share(top) / SOURCE_SHARE[source])
        # Billing is derived once, from all sources of the day.
        rate_card = load_rate_card(home.rate_card) if source == sources[-1] else None
        result = ingest_day(
            home.store, None, source, day, tenancy, SourceSettings(rows_per_day=per_day), None, rate_card
        )
        frame = pl.read_parquet(result.paths[source], columns=["workspace_id"])
        rows[source] = dict(frame.group_by("workspace_id").len().iter_rows())
    return rows


def session_cpu(session: int) -> dict[str, float]:
    """CPU seconds of the processes of `session` (the daemon's; run workers start sessions of
    their own), and of their children that ended, by role."""
    from report_platform.processes import SESSION, cpu_seconds, pids, stat_fields

    out: Counter[str] = Counter()
    for pid in pids():
        fields = stat_fields(pid)
        if pid == session or fields is None or int(fields[SESSION]) != session:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"fork_server" in cmdline:
            role = "fork server"
        elif b"grpc" in cmdline or b"code-server" in cmdline or b"code_server" in cmdline:
            role = "code server"
        elif b"dagster-daemon" in cmdline:
            role = "daemon"
        else:
            role = cmdline.replace(b"\0", b" ").decode(errors="replace")[:60]
        own = cpu_seconds(fields, with_children=False)
        out[role] += own
        # Processes that ended and were reaped inside the session: code servers the daemon
        # replaced (it restarts its code server every minute), the fork server's first children.
        out[f"{role}'s ended children"] += cpu_seconds(fields) - own
    return {role: cpu for role, cpu in out.items() if cpu}


class Daemon:
    """`dagster-daemon run` as deployed, under the reaper above, in a session of its own."""

    def __init__(self, env: dict[str, str], work: Path, code_server_port: int | None = None) -> None:
        """With `code_server_port`, as `report-platform production` deploys it: the code location
        served by `dagster code-server start` on that port and the daemon loading it through
        deploy/workspace.production.yaml. Without, as `make run`: the daemon starts its own code
        server from workspace.yaml (and replaces it every minute)."""
        self.reaped_file = work / "reaped.jsonl"
        self.log = work / "daemon.log"
        command = [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")]
        if code_server_port is not None:
            from report_platform.deployment import LOCATION

            env = {**env, "REPORT_PLATFORM_CODE_SERVER_PORT": str(code_server_port)}
            server = [
                str(BIN / "dagster"), "code-server", "start", "-m", "report_platform.definitions",
                "--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(code_server_port), "-d", str(ROOT),
            ]  # fmt: skip
            daemon = [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "deploy" / "workspace.production.yaml")]
            # Both under the reaper, in one session: the code server's CPU is counted as the daemon's own is.
            command = ["/bin/sh", "-c", f"{shlex.join(server)} & exec {shlex.join(daemon)}"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", REAPER, str(self.reaped_file), *command],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cpu(self) -> dict[str, float]:
        return session_cpu(self.process.pid)

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM to the daemon's process group, SIGKILL after 60 s; every process reaped, with its CPU."""
        for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process.wait(timeout=30)
        if not self.reaped_file.exists():
            return []
        return [json.loads(line) for line in self.reaped_file.read_text().splitlines() if line.strip()]

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def wait_for_schedules(instance: Any, names: set[str], until: float) -> bool:
    """Until the daemon's scheduler has seen every one of `names` (it ticks them from then on)."""
    from dagster._core.definitions.run_request import InstigatorType

    while time.time() < until:
        seen = {s.instigator_name for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)}
        if names <= seen:
            return True
        time.sleep(1)
    return False


def wait_for_tick(instance: Any, scheduled: str, until: float) -> str:
    """The status of the one run due at `scheduled` once it has finished, or TIMEOUT."""
    import dagster as dg

    from report_platform.scheduling.exports import TAG_SCHEDULED

    while time.time() < until:
        runs = instance.get_runs(dg.RunsFilter(tags={TAG_SCHEDULED: scheduled}))
        if len(runs) == 1 and runs[0].is_finished:
            return runs[0].status.value
        time.sleep(0.5)
    return "TIMEOUT"


def wait_for_burst(instance: Any, scheduled: str, reports: int, until: float) -> tuple[int, int]:
    """Until the finished runs of the tick hold every report (or `until`): (reports in finished
    runs, runs still active). A batch run holds `report_platform/batch_size` reports."""
    import dagster as dg
    from dagster._core.storage.dagster_run import FINISHED_STATUSES, NOT_FINISHED_STATUSES

    from report_platform.scheduling.batches import TAG_BATCH_SIZE
    from report_platform.scheduling.exports import TAG_SCHEDULED

    tags = {TAG_SCHEDULED: scheduled}
    started, shown = time.time(), time.time()
    finished = active = 0
    while time.time() < until:
        done = instance.get_runs(dg.RunsFilter(tags=tags, statuses=list(FINISHED_STATUSES)))
        finished = sum(int(run.tags.get(TAG_BATCH_SIZE, "1")) for run in done)
        active = instance.get_runs_count(dg.RunsFilter(tags=tags, statuses=list(NOT_FINISHED_STATUSES)))
        if finished >= reports and not active:
            break
        if time.time() - shown > 30:
            shown = time.time()
            print(
                f"  {finished}/{reports} reports in finished runs, {active} runs queued or running, "
                f"{shown - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(POLL_SECONDS)
    return finished, active


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def attachment_bytes(mail: Any) -> bytes:
    """The mailed file: the attachment, or the file inside it when it was zipped for the limit."""
    (part,) = list(mail.message.iter_attachments())
    data = part.get_payload(decode=True)
    if part.get_filename().endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            (member,) = archive.namelist()
            data = archive.read(member)
    return data


@dataclass
class Outcome:
    report_id: str
    name: str
    combo: Combo
    delay_s: float | None = None
    rows: int | None = None
    bytes: int | None = None
    worker_cpu_s: float | None = None
    created_s: float | None = None  # after the minute
    queued_s: float | None = None  # created -> worker started
    run_s: float | None = None  # worker started -> run ended


def verify(
    home: Any, servers: Any, minute: datetime, burst: dict[str, tuple[str, Combo]], reaped: list[dict[str, Any]]
) -> tuple[list[Outcome], list[str]]:
    """Each report's outcome and every problem found (see the module docstring)."""
    import dagster as dg

    from report_platform.app import registry_service
    from report_platform.scheduling.batches import members_of
    from report_platform.scheduling.exports import TAG_REPORT, TAG_SCHEDULED
    from report_platform.scheduling.fork_launcher import WorkerHandle
    from report_platform.scheduling.schedules import batch_run_key
    from report_platform.scheduling.timings import run_key, schedule_names

    instance = dg.DagsterInstance.get()
    service = registry_service(home)
    covering = schedule_names(service.system.schedule_specs())
    records = instance.get_run_records(dg.RunsFilter(tags={TAG_SCHEDULED: minute.isoformat()}))
    # A report's run: its own (tagged with it) or the batch run whose reports include it.
    by_report: dict[str, list[Any]] = defaultdict(list)
    members: dict[str, list[str]] = {}
    for record in records:
        run = record.dagster_run
        members[run.run_id] = [run.tags[TAG_REPORT]] if TAG_REPORT in run.tags else members_of(run)
        for report_id in members[run.run_id]:
            by_report[report_id].append(record)
    worker_cpu = {(r["pid"], r["start"]): r["cpu"] for r in reaped}
    mails: dict[str, list[Any]] = defaultdict(list)
    for mail in servers.smtp.received:
        for recipient in mail.rcpt_tos:
            mails[recipient.lower()].append(mail)
    s3 = servers.s3.client()
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
        for obj in page.get("Contents", [])
    ]
    outcomes: list[Outcome] = []
    problems: list[str] = []
    for report_id, (name, combo) in burst.items():
        outcome = Outcome(report_id, name, combo)
        outcomes.append(outcome)
        runs = by_report.get(report_id, [])
        if len(runs) != 1:
            problems.append(f"{name}: {len(runs)} runs for the tick")
            if not runs:
                continue
        record = runs[0]
        run = record.dagster_run
        outcome.created_s = aware(record.create_timestamp).timestamp() - minute.timestamp()
        if record.start_time and record.end_time:
            outcome.queued_s = record.start_time - aware(record.create_timestamp).timestamp()
            outcome.run_s = record.end_time - record.start_time
        handle = WorkerHandle.of(run)
        together = members[run.run_id]
        if handle is not None:
            cpu = worker_cpu.get((handle.pid, handle.start))
            # A batch run's worker CPU, shared evenly by the reports it built.
            outcome.worker_cpu_s = None if cpu is None else cpu / len(together)
        if run.status != dg.DagsterRunStatus.SUCCESS:
            problems.append(f"{name}: run {run.run_id} {run.status.value}")
        key = run.tags.get("dagster/run_key", "")
        if TAG_REPORT in run.tags:
            expected = run_key(report_id, minute)
        else:
            number = key.partition("#")[2].partition(":")[0]  # which batch of the tick
            expected = batch_run_key(covering[report_id], minute, int(number) if number.isdigit() else 0, together)
        if key != expected:
            problems.append(f"{name}: run key {key!r}, expected {expected!r}")
        materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        own = [
            r
            for r in materialized.records
            if r.event_log_entry.asset_materialization.metadata["report_id"].value == report_id
        ]
        if len(own) != 1:
            problems.append(f"{name}: {len(own)} materialisations")
        audit = service.audit_log(scale.OWNER, report_id).runs
        if len(audit) != 1 or audit[0].status != "SUCCESS" or audit[0].trigger != "schedule":
            problems.append(f"{name}: audit {[(a.status, a.trigger, a.error) for a in audit]}")
            continue
        row = audit[0]
        if row.dagster_run_id != run.run_id:
            problems.append(f"{name}: audit row of run {row.dagster_run_id}, not {run.run_id}")
        outcome.rows, outcome.bytes = row.rows, row.bytes
        outcome.delay_s = aware(row.finished_at).timestamp() - minute.timestamp() if row.finished_at else None
        if combo.destination == "email":
            copies = [attachment_bytes(m) for m in mails.get(address(name), [])]
        elif combo.destination == "sftp":
            copies = [p.read_bytes() for p in (servers.sftp_dir / "inbound").glob(f"{name}_*")]
        else:
            copies = [
                s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys if k.startswith(f"{PREFIX}{name}_")
            ]
        if not (
            len(copies) == 1 and len(copies[0]) == row.bytes and hashlib.sha256(copies[0]).hexdigest() == row.sha256
        ):
            sizes = [len(c) for c in copies]
            problems.append(
                f"{name}: {len(copies)} copies at the {combo.destination} server {sizes}, audit {row.bytes}"
            )
    for combo, rows in _rows_by_combo(outcomes).items():
        if len(set(rows)) > 1:
            problems.append(f"{combo.label}: reports built different row counts {sorted(set(rows))}")
    return outcomes, problems


def _rows_by_combo(outcomes: list[Outcome]) -> dict[Combo, list[int]]:
    rows: dict[Combo, list[int]] = defaultdict(list)
    for o in outcomes:
        if o.rows is not None:
            rows[o.combo].append(o.rows)
    return rows


def print_figures(
    args: argparse.Namespace,
    minute: datetime,
    outcomes: list[Outcome],
    problems: list[str],
    alone: dict[Combo, tuple[float, float]],
    machinery: dict[str, float],
    fork_share: float,
    loads: dict[str, float],
) -> None:
    cores = os.cpu_count() or 1
    n = len(outcomes)
    delays = [o.delay_s for o in outcomes if o.delay_s is not None]
    makespan = max(delays) if delays else float("nan")
    limit = sum(alone[o.combo][0] for o in outcomes) / cores
    cpus = [o.worker_cpu_s + fork_share for o in outcomes if o.worker_cpu_s is not None]
    own_cpu = statistics.fmean(alone[o.combo][1] for o in outcomes)
    created = [o.created_s for o in outcomes if o.created_s is not None]
    queued = [o.queued_s for o in outcomes if o.queued_s is not None]
    run_s = [o.run_s for o in outcomes if o.run_s is not None]
    verified = n - len({p.split(":")[0] for p in problems if p.split(":")[0] in {o.name for o in outcomes}})

    def spread(values: list[float]) -> str:
        return f"{pct(values, 0.5):.1f} / {pct(values, 0.95):.1f} / {max(values):.1f} s" if values else "n/a"

    print(
        f"\n### Burst: {n} reports due at {minute:%H:%M} UTC, `dagster-daemon` with max_concurrent_runs "
        f"{args.max_concurrent_runs}, ForkRunLauncher, "
        + (
            f"{args.scheduler_threads} scheduler threads"
            if args.scheduler_threads
            else "scheduler as in the instance file"
        )
        + "\n"
    )
    print("| figure | value |\n|---|---:|")
    for label, value in [
        ("makespan (scheduled minute to last confirmed delivery)", f"{makespan:.1f} s"),
        (f"physical limit (sum of own work alone {limit * cores:.1f} s / {cores} cores)", f"{limit:.1f} s"),
        ("**makespan / physical limit**", f"**{makespan / limit:.2f}** (goal ≤ 2)"),
        ("throughput", f"{n / makespan * 60:.1f} runs/min"),
        ("delay scheduled minute -> confirmed delivery, p50 / p95 / max", spread(delays)),
        ("scheduler tick: runs created after the minute, first / last", f"{min(created):.1f} / {max(created):.1f} s")
        if created
        else ("scheduler tick", "no run created"),
        ("wait in the run queue (created -> worker started), p50 / p95 / max", spread(queued)),
        ("run (worker started -> run ended), mean", f"{statistics.fmean(run_s):.2f} s" if run_s else "n/a"),
        (
            "run-worker CPU, mean (with the fork server's share)",
            f"{statistics.fmean(cpus):.2f} s over {len(cpus)} workers (own work alone {own_cpu:.2f} s)"
            if cpus
            else "n/a",
        ),
        (
            "run-worker CPU minus own work alone, mean by destination",
            ", ".join(
                f"{where} {statistics.fmean(extra):.2f} s"
                for where in DESTINATIONS
                if (
                    extra := [
                        o.worker_cpu_s + fork_share - alone[o.combo][1]
                        for o in outcomes
                        if o.combo.destination == where and o.worker_cpu_s is not None
                    ]
                )
            )
            or "n/a",
        ),
        (
            "makespan / (run-worker CPU sum / cores)",
            f"{makespan / (sum(cpus) / cores):.2f}" if cpus else "n/a",
        ),
        (
            "CPU besides the run workers, the minute to the last run",
            ", ".join(f"{role} {cpu:.1f} s" for role, cpu in machinery.items()),
        ),
        (
            "verified (one run with its run key, SUCCESS, one materialisation, one audit row, "
            "one copy at the server with the audited size and SHA-256)",
            f"{verified} / {n}",
        ),
        (
            "load average (1 min): at the minute / last delivery / after the reports built alone",
            " / ".join(f"{loads[k]:.1f}" for k in ("minute", "burst", "alone")),
        ),
    ]:
        print(f"| {label} | {value} |")
    print(
        "\n| type, scope, destination | reports | rows | bytes (mean) | own work alone, median wall (CPU) "
        "| run-worker CPU in the burst (mean) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    rows = _rows_by_combo(outcomes)
    counts = Counter(o.combo for o in outcomes)
    for combo in sorted(counts, key=lambda c: c.label):
        sizes = [o.bytes for o in outcomes if o.combo == combo and o.bytes is not None]
        wall, cpu = alone[combo]
        shown = "/".join(f"{r:,}" for r in sorted(set(rows.get(combo, [])))) or "n/a"
        size = f"{statistics.fmean(sizes):,.0f}" if sizes else "n/a"
        workers = [o.worker_cpu_s + fork_share for o in outcomes if o.combo == combo and o.worker_cpu_s is not None]
        worker = f"{statistics.fmean(workers):.2f} s" if workers else "n/a"
        print(f"| {combo.label} | {counts[combo]} | {shown} | {size} | {wall:.2f} s ({cpu:.2f} s) | {worker} |")
    for problem in problems[:20]:
        print(f"\n    {problem}", end="")
    if problems:
        print(f"\n    ({len(problems)} problems)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000, help="reports due at the same minute")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the largest workspace, per usage type")
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="sqlite: dagster.yaml, registry in the data folder; postgres: deploy/dagster.production.yaml",
    )
    parser.add_argument("--max-concurrent-runs", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument(
        "--scheduler-threads",
        type=int,
        default=0,
        help="evaluate schedules on this many threads (instance `schedules: use_threads`); 0: as dagster.yaml",
    )
    parser.add_argument("--alone-repeats", type=int, default=3, help="reports of each combination built alone (median)")
    parser.add_argument("--lead", type=float, help="seconds from registering to the minute (default: estimated)")
    parser.add_argument("--timeout", type=float, help="seconds the burst may take (default: 600 + 3 per report)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--pg-statements",
        type=int,
        default=0,
        metavar="N",
        help="with --storage postgres: load pg_stat_statements and print the N statements that took longest",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    import dagster as dg

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request

    work = Path(tempfile.mkdtemp(prefix="bench-burst-")) if args.keep is None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"## Burst of mixed reports ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"Dagster storage and registry: {args.storage})"
    )
    stack = contextlib.ExitStack()
    daemon: Daemon | None = None
    try:
        registry_url, instance_file, variables, postgres = instance_storage(
            args.storage, stack, statements=bool(args.pg_statements)
        )
        os.environ.update(variables)
        if registry_url:
            os.environ["REPORT_PLATFORM_REGISTRY_URL"] = registry_url
        home = scale.new_home(work / "home", registry_url)
        servers = start_servers(work / "servers")
        stack.callback(servers.stop)
        write_connections(home, servers)
        os.environ.update(servers.environment())
        os.environ["REPORT_PLATFORM_HOME"] = str(home.root)
        day = datetime.now(UTC).date() - timedelta(days=1)
        started = time.perf_counter()
        rows = prepare_store(home, day, args.rows)
        print(
            f"\nStore: {day} (UTC), rows per workspace: "
            + "; ".join(f"{s} " + ", ".join(f"{w} {n:,}" for w, n in sorted(r.items())) for s, r in rows.items())
            + f" ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

        # Reports built alone for the physical limit (`--alone-repeats` of each combination) and a
        # warm-up per type and destination: none is due near the burst.
        quiet = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M:00")
        combos = sorted({combo_of(i) for i in range(args.reports)}, key=lambda c: c.label)
        repeats = args.alone_repeats
        extra = [definition(f"alone-{k:02d}-{r}", c, quiet) for k, c in enumerate(combos) for r in range(repeats)]
        extra += [
            definition(f"warm-{kind}-{where}", Combo(kind, SCOPES[0], where), quiet)
            for kind in scale.TYPES
            for where in DESTINATIONS
        ]
        extra_ids, extra_s = scale.add_reports(home, iter(extra))
        alone_ids = {c: extra_ids[k * repeats : (k + 1) * repeats] for k, c in enumerate(combos)}
        warm_ids = extra_ids[len(combos) * repeats :]
        # The daemon needs up to three minutes to start, load the location and record a first state
        # for every schedule (about 0.1 s each). One report is due a minute before the burst: its
        # run starts the fork server, as earlier runs had in a daemon that has been running.
        per_report = 1.5 * extra_s / len(extra) + 0.1
        lead = args.lead if args.lead is not None else 180 + per_report * (args.reports + len(extra))
        warm_minute = (datetime.now(UTC) + timedelta(seconds=lead)).replace(second=0, microsecond=0)
        warm_minute += timedelta(minutes=1)
        minute = warm_minute + timedelta(minutes=1)
        if minute.date() - timedelta(days=1) != day:
            day = minute.date() - timedelta(days=1)
            rows = prepare_store(home, day, args.rows)
        burst_defs = [
            definition(f"burst-{i:04d}", combo_of(i), minute.strftime("%H:%M:00")) for i in range(args.reports)
        ]
        warm_def = definition("warm-daemon", Combo("sms_usage", SCOPES[0], "sftp"), warm_minute.strftime("%H:%M:00"))
        burst_ids, burst_s = scale.add_reports(home, iter([*burst_defs, warm_def]))
        warm_id = burst_ids.pop()
        burst = {rid: (d["name"], combo_of(i)) for i, (rid, d) in enumerate(zip(burst_ids, burst_defs, strict=True))}
        print(
            f"Registered {len(extra)} other reports and {len(burst)} burst reports ({extra_s + burst_s:.0f} s); "
            f"due at {minute:%Y-%m-%d %H:%M} UTC",
            flush=True,
        )

        dagster_dir = scale.dagster_home(work / "dagster", instance_file)
        config_path = dagster_dir / "dagster.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["concurrency"]["runs"]["max_concurrent_runs"] = args.max_concurrent_runs
        if args.scheduler_threads:
            config["schedules"] = {"use_threads": True, "num_workers": args.scheduler_threads}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        os.environ["DAGSTER_HOME"] = str(dagster_dir)
        env = scale.environment(home.root, dagster_dir, work / "unused")
        if registry_url:
            env["REPORT_PLATFORM_REGISTRY_URL"] = registry_url
        env.pop("PYTHONPYCACHEPREFIX")  # the virtualenv's compiled bytecode, as installed
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # the instance's tables exist before the daemon starts

        from report_platform.app import registry_service
        from report_platform.scheduling.timings import schedule_names

        daemon = Daemon(env, work, free_port() if args.storage == "postgres" else None)
        covering = schedule_names(registry_service(home).system.schedule_specs())
        names = {covering[rid] for rid in [*burst, warm_id]}
        if not wait_for_schedules(instance, names, warm_minute.timestamp() - 5):
            print(f"the daemon had not seen every schedule by {warm_minute:%H:%M}: raise --lead\n{daemon.tail()}")
            return 1
        status = wait_for_tick(instance, warm_minute.isoformat(), minute.timestamp() - 2)
        if status != "SUCCESS":
            print(f"the warm-up run due at {warm_minute:%H:%M}: {status}\n{daemon.tail()}")
            return 1
        time.sleep(max(0.0, minute.timestamp() - 1 - time.time()))
        cpu_before = daemon.cpu()
        pg_before = postgres.cpu_seconds() if postgres else 0.0
        if postgres and args.pg_statements:
            _statements(postgres, reset=True)
        loads = {"minute": os.getloadavg()[0]}
        print(f"Daemon up, fork server warm; waiting for the burst at {minute:%H:%M:%S}", file=sys.stderr, flush=True)
        timeout = args.timeout if args.timeout is not None else 600 + 3 * args.reports
        finished, active = wait_for_burst(instance, minute.isoformat(), len(burst), minute.timestamp() + timeout)
        cpu_after = daemon.cpu()
        pg_cpu = postgres.cpu_seconds() - pg_before if postgres else None
        found = _statements(postgres, reset=False, top=args.pg_statements) if postgres and args.pg_statements else []
        loads["burst"] = os.getloadavg()[0]
        reaped = daemon.stop()
        daemon_log = daemon.tail()
        daemon = None
        delta = {role: cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0) for role in {*cpu_before, *cpu_after}}
        fork = delta.get("fork server", 0.0) + delta.get("fork server's ended children", 0.0)
        machinery = {
            "daemon (scheduler, run queue, sensors, monitoring)": delta.get("daemon", 0.0),
            # Those replaced during the burst included: their CPU is the daemon's ended children's.
            "code servers": sum(delta.values()) - delta.get("daemon", 0.0) - fork,
            "fork server": fork,
        }
        if pg_cpu is not None:
            # The server's backends: every process's statements and connections, the workers' too.
            machinery["PostgreSQL"] = pg_cpu
        fork_share = fork / max(1, finished)

        # Own work alone, in this warm process, with the same servers and store.
        for report_id in warm_ids:
            overhead.own_work(home, report_id, minute)
        alone = {}
        for combo, ids in alone_ids.items():
            walls, cpus = zip(*(overhead.own_work(home, rid, minute) for rid in ids), strict=True)
            alone[combo] = (statistics.median(walls), statistics.median(cpus))
        loads["alone"] = os.getloadavg()[0]

        outcomes, problems = verify(home, servers, minute, burst, reaped)
        if active or finished < len(burst):
            problems.insert(
                0, f"burst: {finished} reports in finished runs, {active} runs still active after {timeout:.0f} s"
            )
        print_figures(args, minute, outcomes, problems, alone, machinery, fork_share, loads)
        if found:
            print_statements(found)
        if problems:
            print(f"\n--- daemon log (end) ---\n{daemon_log}", file=sys.stderr)
        return 1 if problems else 0
    finally:
        if daemon is not None:
            daemon.stop()
        stack.close()
        if args.keep is None:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
