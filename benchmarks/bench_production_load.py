"""Load on the production deployment: many reports due at once, an ingestion backfill and console
users, all at the same time on this machine.

    .venv/bin/python benchmarks/bench_production_load.py [--reports 200] [--users 20] [--seconds 120]
        [--backfill-days 30] [--baseline-seconds 20] [--lead 120] [--settle 900]

The deployment is the one the production tests start (report_platform_tests/production/harness.py):
PostgreSQL for Dagster and the registry, the code server, webserver, daemon and console as
`report-platform production` starts them, and the stand-in SMTP, SFTP and S3 servers, all on
127.0.0.1. `--reports` daily reports (every type, eight timezones, e-mail, SFTP and S3, in acme and
globex) are registered, each due at the same minute in its own timezone, at least `--lead` seconds
ahead; the daemon ticks them. Twenty seconds before that minute, a partition backfill of the usage
assets over the last `--backfill-days` days is launched through the webserver's GraphQL
(`launchPartitionBackfill`, what the UI's "Materialize" does), and `--users` people (owners,
admins and users of both organisations, each with a session of their own) use the console for
`--seconds`: list reports, open one, its audit log, folders, the preview of its definition
(owners), and now and then "run now" (owners, on reports of their own that are not due).

Once every run has finished, the same users (without "run now") use the console again for
`--baseline-seconds` with nothing else running: the quiet baseline for the loaded/quiet ratio.

Reported: console p50/p95/max per request kind and overall with the ratio to the baseline, errors,
runs per minute, each report's scheduled run (SUCCESS, once), each backfill partition, the delay
from the scheduled minute to the audit log's confirmed delivery and to the file's arrival at its
server, each file once at its server with the audited SHA-256, and the load average. Exit status 1
on any miss. Every wait and loop is bounded.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The same spread of report types, timezones and workspaces as the scale benchmark's reports.
from bench_scale import TIMEZONES, TYPES, WORKSPACES  # noqa: E402

from report_platform_tests.production.harness import (  # noqa: E402
    IN_PROGRESS,
    OWNER,
    OWNER_PASSWORD,
    ConsoleSession,
    Production,
    quiet_time_of_day,
    started_production,
    wait_until,
)
from report_platform_tests.servers.postgres import running_postgres  # noqa: E402

USAGE_ASSETS = ("voice_calls", "sms_messages", "aegis_transactions", "aegis_events", "billing_line_items")
GLOBEX_OWNER = "load-owner@globex.example"
PASSWORD = "the load test's long password"
BUCKET = "acme-reports"
REQUEST_TIMEOUT = 30.0
MAX_REQUESTS_PER_USER_SECOND = 10  # the bound on each user's loop, whatever the think time
RUN_NOWS_PER_OWNER = 3
# People of both organisations and every role; users are limited to one workspace.
PEOPLE = (
    ("acme", "owner", ()),
    ("acme", "admin", ()),
    ("acme", "user", ("acme-east",)),
    ("globex", "owner", ()),
    ("acme", "user", ("acme-west",)),
    ("globex", "admin", ()),
    ("acme", "admin", ()),
    ("globex", "user", ("globex-main",)),
    ("acme", "owner", ()),
    ("acme", "user", ("acme-labs",)),
)


# ---------------------------------------------------------------------------------------------
# Reports and people


def due_definition(i: int, tick_at: datetime) -> dict[str, Any]:
    """The i-th report: daily over the previous day, due at `tick_at` in its own timezone."""
    kind, tz, workspace = TYPES[i % 4], TIMEZONES[(i // 4) % 8], WORKSPACES[(i // 2) % 4]
    local = tick_at.astimezone(ZoneInfo(tz))
    name = f"load-{kind}-{i:03d}"
    where = "email" if workspace.startswith("globex") else ("email", "sftp", "s3")[i % 3]
    destination: dict[str, Any] = {
        "email": {
            "type": "email",
            "to": [f"load{i:03d}@acme.example"],
            "subject_template": "{{ReportName}} - {{PeriodStart}}",
        },
        "sftp": {"type": "sftp", "connection": "demo-sftp", "remote_dir": f"/inbound/load/{name}", "create_dirs": True},
        "s3": {"type": "s3", "connection": "demo-s3", "bucket": BUCKET, "prefix": f"load/{name}/"},
    }[where]
    definition: dict[str, Any] = {
        "name": name,
        "type": kind,
        "workspace": workspace,
        "folder": f"Load {i % 5}",
        "schedule": {"timezone": tz, "frequency": "daily", "time_of_day": local.strftime("%H:%M:00")},
        "period": {"kind": "previous_day"},
        "destination": destination,
        "filename_pattern": "{{ReportName}}_{{PeriodStart}}." + ("xlsx" if kind == "billing" else "csv"),
    }
    if kind == "aegis_interaction":
        definition["filters"] = {"workflows": [], "include_event_details": i % 2 == 0}
    return definition


def run_now_definition(org: str, n: int) -> dict[str, Any]:
    """A report not due during the test, for "run now": by e-mail, so its files never mix with
    the scheduled reports' files."""
    return {
        "name": f"load-run-now-{org}-{n}",
        "type": "sms_usage",
        "workspace": "globex-main" if org == "globex" else "acme-east",
        "folder": "Run now",
        "schedule": {"timezone": "UTC", "frequency": "daily", "time_of_day": quiet_time_of_day()},
        "period": {"kind": "previous_day"},
        "destination": {
            "type": "email",
            "to": [f"run-now-{org}@acme.example"],
            "subject_template": "{{ReportName}} - {{PeriodStart}}",
        },
        "filename_pattern": "{{ReportName}}_{{PeriodStart}}.csv",
    }


@dataclass(frozen=True)
class Person:
    email: str
    password: str
    org: str
    role: str


def people(production: Production, count: int) -> list[Person]:
    """`count` people across both organisations and every role, each with a console password."""
    found = [Person(OWNER, OWNER_PASSWORD, "acme", "owner")]
    for k in range(1, count):
        org, role, workspaces = PEOPLE[k % len(PEOPLE)]
        address = (
            GLOBEX_OWNER if (org, role) == ("globex", "owner") and k == 3 else f"load-{role}-{k:02d}@{org}.example"
        )
        production.add_user(address, org, role, PASSWORD, workspaces)
        found.append(Person(address, PASSWORD, org, role))
    if not any(p.email == GLOBEX_OWNER for p in found):
        production.add_user(GLOBEX_OWNER, "globex", "owner", PASSWORD)
    return found


def owner_of(definition: dict[str, Any]) -> str:
    return GLOBEX_OWNER if definition["workspace"].startswith("globex") else OWNER


# ---------------------------------------------------------------------------------------------
# Console users


@dataclass
class Requests:
    """Every request's kind, milliseconds and outcome, from all users (one lock)."""

    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    run_nows: list[tuple[str, str]] = field(default_factory=list)  # (email of the owner, audit run id)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, kind: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            answer = call()
        except Exception as exc:  # noqa: BLE001 - counted and reported, the user goes on
            with self.lock:
                self.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
            return None
        with self.lock:
            self.times[kind].append((time.perf_counter() - started) * 1000)
        return answer


def console_user(
    production: Production,
    person: Person,
    seconds: float,
    requests: Requests,
    run_now_ids: list[str],
    seed: int,
) -> None:
    """One person using the console for `seconds` (at most `seconds` x 10 requests)."""
    rng = random.Random(seed)  # noqa: S311 - a user's choices, not a secret
    session = requests.timed(
        "sign in", lambda: ConsoleSession(production.layout.console_url, person.email, person.password, REQUEST_TIMEOUT)
    )
    if session is None:
        return
    deadline = time.monotonic() + seconds
    budget = int(seconds * MAX_REQUESTS_PER_USER_SECOND)
    run_nows = 0
    while time.monotonic() < deadline and budget > 0:
        budget -= 1
        rows = requests.timed("list reports", lambda: session.call("GET", "/api/v1/reports")) or []
        due = [r for r in rows if r["name"].startswith("load-") and not r["name"].startswith("load-run-now")]
        if due:
            report_id = rng.choice(due)["id"]
            view = requests.timed("open report", lambda rid=report_id: session.call("GET", f"/api/v1/reports/{rid}"))
            requests.timed("audit log", lambda rid=report_id: session.call("GET", f"/api/v1/reports/{rid}/audit-log"))
            if person.role == "owner" and view is not None:
                requests.timed(
                    "preview", lambda body=view["definition"]: session.call("POST", "/api/v1/reports/preview", body)
                )
        requests.timed("folders", lambda: session.call("GET", "/api/v1/folders"))
        if run_now_ids and person.role == "owner" and run_nows < RUN_NOWS_PER_OWNER and rng.random() < 0.15:
            target = rng.choice(run_now_ids)
            queued = requests.timed(
                "run now", lambda rid=target: session.call("POST", f"/api/v1/reports/{rid}/run-now", {}, expect=202)
            )
            if queued is not None:
                run_nows += 1
                with requests.lock:
                    requests.run_nows.append((person.email, queued["audit_run_id"]))
        time.sleep(rng.uniform(0.2, 1.0))  # a person reads what they opened


def use_console(
    production: Production, persons: list[Person], seconds: float, run_now_ids: dict[str, list[str]]
) -> Requests:
    requests = Requests()
    threads = [
        threading.Thread(
            target=console_user,
            args=(production, p, seconds, requests, run_now_ids.get(p.org, []), k),
            name=f"user-{k}",
            daemon=True,
        )
        for k, p in enumerate(persons)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT * 6)
    if any(t.is_alive() for t in threads):
        requests.errors.append("a console user was still running after its time and timeouts")
    return requests


# ---------------------------------------------------------------------------------------------
# Dagster


BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } }
}"""

RUNS = """
query {
  runsOrError {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
  }
}"""


def launch_ingestion_backfill(production: Production, days: list[date]) -> str:
    answer = production.graphql(
        BACKFILL,
        {
            "params": {
                "assetSelection": [{"path": [name]} for name in USAGE_ASSETS],
                "partitionNames": [d.isoformat() for d in days],
            }
        },
    )["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"the ingestion backfill was refused: {answer}")
    return answer["backfillId"]


def all_runs(production: Production) -> list[dict[str, Any]]:
    results = production.graphql(RUNS)["runsOrError"]["results"]
    return [r | {"tags": {t["key"]: t["value"] for t in r["tags"]}} for r in results]


def reload_code_location(production: Production) -> None:
    answer = production.graphql(
        """mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }""",
        {"name": "report_platform"},
    )["reloadRepositoryLocation"]
    if answer["__typename"] != "WorkspaceLocationEntry":
        raise SystemExit(f"the code location did not reload: {answer}")


# ---------------------------------------------------------------------------------------------
# What arrived


@dataclass(frozen=True)
class Arrival:
    sha256: str
    at: datetime


def arrivals(production: Production, definitions: dict[str, dict[str, Any]]) -> dict[str, list[Arrival]]:
    """Every file each report's destination received, with when it arrived at the server."""
    found: dict[str, list[Arrival]] = defaultdict(list)
    names = {d["name"]: report_id for report_id, d in definitions.items()}
    servers = production.servers
    for path in sorted(servers.mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        report_id = names.get(str(message["Subject"] or "").split(" - ")[0])
        if report_id is None:
            continue
        at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        for part in message.iter_attachments():  # type: ignore[attr-defined]
            found[report_id].append(Arrival(hashlib.sha256(part.get_payload(decode=True)).hexdigest(), at))
    for report_id, d in definitions.items():
        destination = d["destination"]
        if destination["type"] == "sftp":
            folder = servers.sftp_dir / destination["remote_dir"].strip("/")
            for path in sorted(folder.rglob("*")) if folder.exists() else []:
                if path.is_file() and not path.name.startswith("."):
                    at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                    found[report_id].append(Arrival(hashlib.sha256(path.read_bytes()).hexdigest(), at))
    client = servers.s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="load/", MaxKeys=1000).get("Contents", [])
    by_prefix = {d["destination"]["prefix"]: rid for rid, d in definitions.items() if d["destination"]["type"] == "s3"}
    for item in listed:
        report_id = by_prefix.get(item["Key"].rsplit("/", 1)[0] + "/")
        if report_id is not None:
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[report_id].append(Arrival(hashlib.sha256(body).hexdigest(), item["LastModified"]))
    return found


# ---------------------------------------------------------------------------------------------
# Figures


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return (float("nan"),) * 3
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))], ordered[-1]


class LoadSampler(threading.Thread):
    """The 1-minute load average every 5 s until stopped (bounded by `limit` samples)."""

    def __init__(self, limit: int) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stopping = threading.Event()
        self.limit = limit

    def run(self) -> None:
        while len(self.samples) < self.limit and not self.stopping.wait(5.0):
            self.samples.append(os.getloadavg()[0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--backfill-days", type=int, default=30)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--lead", type=float, default=120.0, help="seconds from registering to the due minute")
    parser.add_argument("--settle", type=float, default=900.0, help="seconds every run gets to finish")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as work, running_postgres("unused") as postgres:
        began = time.monotonic()
        with started_production(postgres, Path(work)) as production:
            print(f"deployment up in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
            return load(production, args)


def load(production: Production, args: argparse.Namespace) -> int:  # noqa: PLR0915 - one story, told in order
    misses: list[str] = []
    load_at_start = os.getloadavg()
    persons = people(production, args.users)
    registry = production.registry()

    # Registered directly in the registry (as the CLI does), then one reload of the code location.
    tick_at = (datetime.now(UTC) + timedelta(seconds=args.lead + 59)).replace(second=0, microsecond=0)
    definitions: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for i in range(args.reports):
        d = due_definition(i, tick_at)
        definitions[registry.create_report(owner_of(d), d)] = d
    run_now_ids = {
        org: [
            registry.create_report(OWNER if org == "acme" else GLOBEX_OWNER, run_now_definition(org, n))
            for n in range(2)
        ]
        for org in ("acme", "globex")
    }
    print(f"registered {len(definitions)} reports in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    from report_platform.scheduling.timings import schedule_names

    reload_code_location(production)
    covering = schedule_names(production.registry().system.schedule_specs())
    wanted = {covering[r] for r in definitions}
    wait_until(
        lambda: wanted <= production.schedules(),
        300,
        "the new reports' schedules in the code server",
        lambda: production.tails("code-server", "webserver"),
    )
    # The scheduler reads its schedules when it starts and then about once a minute: a restart
    # makes its first pass know them all (as an operator does after a large import).
    production.deployment.stop_service("daemon")
    production.deployment.start_service("daemon")
    ready = datetime.now(UTC)
    print(f"daemon ready at {ready:%H:%M:%S}, reports due at {tick_at:%H:%M:%S} UTC", file=sys.stderr, flush=True)
    if ready > tick_at - timedelta(seconds=5):
        raise SystemExit(f"ready only at {ready:%H:%M:%S}, too close to the due minute {tick_at:%H:%M}: raise --lead")

    # Load: the backfill and the users start 20 s before the due minute.
    time.sleep(max(0.0, (tick_at - datetime.now(UTC)).total_seconds() - 20))
    sampler = LoadSampler(limit=int((args.seconds + args.settle) / 5) + 10)
    sampler.start()
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    days = [last_day - timedelta(days=n) for n in reversed(range(args.backfill_days))]
    backfill_id = launch_ingestion_backfill(production, days)
    load_began = datetime.now(UTC)
    loaded = use_console(production, persons, args.seconds, run_now_ids)
    print(f"console users done at {datetime.now(UTC):%H:%M:%S}", file=sys.stderr, flush=True)

    # Every run finishes: the scheduled ones, run-now, and the backfill.
    def settled() -> bool:
        runs = all_runs(production)
        status = production.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"].get("status")
        scheduled = [r for r in runs if r["tags"].get("report_platform/trigger") == "schedule"]
        return (
            len(scheduled) >= len(definitions)
            and not [r for r in runs if r["status"] in IN_PROGRESS]
            and status not in ("REQUESTED", None)
        )

    try:
        wait_until(settled, args.settle, "every run finished", lambda: production.tails("daemon"))
    except AssertionError as exc:
        misses.append(str(exc).splitlines()[0])
    settled_at = datetime.now(UTC)
    sampler.stopping.set()
    sampler.join(timeout=10)

    # The quiet baseline: the same people, nothing else running, no run now.
    if misses:
        print("the baseline runs with runs still in progress: it is not quiet", file=sys.stderr, flush=True)
    quiet = use_console(production, persons, args.baseline_seconds, {})

    # Checks
    runs = all_runs(production)
    audit = {rid: registry.audit_log(owner_of(d), rid).runs for rid, d in definitions.items()}
    got = arrivals(production, definitions)
    confirmed_delays, arrival_delays = [], []
    outcome = Counter()
    for rid, d in definitions.items():
        rows = [r for r in audit[rid] if r.trigger == "schedule"]
        if len(rows) != 1:
            misses.append(f"{d['name']}: {len(rows)} scheduled runs in the audit log, not 1")
            outcome["missing or doubled"] += 1
            continue
        (row,) = rows
        outcome[row.status] += 1
        if row.status != "SUCCESS":
            misses.append(f"{d['name']}: {row.status} {row.error or ''}"[:300])
            continue
        if row.scheduled_at is None or row.scheduled_at.timestamp() != tick_at.timestamp():
            misses.append(f"{d['name']}: scheduled at {row.scheduled_at}, not {tick_at}")
        confirmed = row.finished_at if row.finished_at.tzinfo else row.finished_at.replace(tzinfo=UTC)
        confirmed_delays.append((confirmed - tick_at).total_seconds())
        files = got.get(rid, [])
        if [f.sha256 for f in files] != [row.sha256]:
            misses.append(f"{d['name']}: {len(files)} file(s) at the {d['destination']['type']} server, not one "
                          f"with the audited SHA-256")  # fmt: skip
            continue
        arrival_delays.append((files[0].at - tick_at).total_seconds())
    run_now_rows = {
        r.id: r
        for org, ids in run_now_ids.items()
        for rid in ids
        for r in registry.audit_log(OWNER if org == "acme" else GLOBEX_OWNER, rid).runs
    }
    run_now_ok = sum(
        1 for _, run_id in loaded.run_nows if run_now_rows.get(run_id) and run_now_rows[run_id].status == "SUCCESS"
    )
    if run_now_ok != len(loaded.run_nows):
        misses.append(f"run now: {run_now_ok} of {len(loaded.run_nows)} SUCCESS")
    backfill_runs = [r for r in runs if r["tags"].get("dagster/backfill") == backfill_id]
    partitions_ok = {r["tags"].get("dagster/partition") for r in backfill_runs if r["status"] == "SUCCESS"}
    missing_days = [d.isoformat() for d in days if d.isoformat() not in partitions_ok]
    if missing_days:
        misses.append(f"backfill: no successful run for {len(missing_days)} partition(s): {missing_days[:5]}")
    dagster_failed = [r for r in runs if r["status"] != "SUCCESS"]
    if dagster_failed:
        misses.append(f"{len(dagster_failed)} Dagster run(s) not SUCCESS: {[r['runId'] for r in dagster_failed][:5]}")
    for name, requests in (("loaded", loaded), ("quiet", quiet)):
        if requests.errors:
            misses.append(f"console ({name}): {len(requests.errors)} error(s), first: {requests.errors[0]}")
    finished = [r for r in runs if r["startTime"] and r["endTime"]]
    span = max(r["endTime"] for r in finished) - min(r["startTime"] for r in finished) if finished else 0.0
    scheduled_runs = [r for r in finished if r["tags"].get("report_platform/trigger") == "schedule"]
    scheduled_span = max(r["endTime"] for r in scheduled_runs) - tick_at.timestamp() if scheduled_runs else 0.0

    # Report
    command = (
        f"`.venv/bin/python benchmarks/bench_production_load.py --reports {args.reports} --users {args.users} "
        f"--seconds {args.seconds:.0f} --backfill-days {args.backfill_days} "
        f"--baseline-seconds {args.baseline_seconds:.0f}`"
    )
    print(f"## Production load: {args.reports} reports due at once, a {args.backfill_days}-day ingestion backfill, "
          f"{args.users} console users for {args.seconds:.0f} s\n")  # fmt: skip
    print(f"{command}, {os.cpu_count()} cores; reports due at {tick_at:%H:%M} UTC, load from "
          f"{load_began:%H:%M:%S} to {settled_at:%H:%M:%S}.\n")  # fmt: skip
    columns = ["console request", "n loaded", "p50 ms", "p95 ms", "max ms", "n quiet", "quiet p50", "quiet p95"]
    print("| " + " | ".join([*columns, "p50 loaded/quiet", "p95 loaded/quiet"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    kinds = sorted(set(loaded.times) | set(quiet.times))
    everything_loaded = [v for k in kinds if k not in ("sign in", "run now") for v in loaded.times.get(k, [])]
    everything_quiet = [v for k in kinds if k not in ("sign in", "run now") for v in quiet.times.get(k, [])]
    for kind, lv, qv in [(k, loaded.times.get(k, []), quiet.times.get(k, [])) for k in kinds] + [
        ("all but sign-in and run now", everything_loaded, everything_quiet)
    ]:
        lp, qp = quantiles(lv), quantiles(qv)
        ratio50 = f"{lp[0] / qp[0]:.1f}×" if qv else "–"
        ratio95 = f"{lp[1] / qp[1]:.1f}×" if qv else "–"
        print(f"| {kind} | {len(lv)} | {lp[0]:.0f} | {lp[1]:.0f} | {lp[2]:.0f} | {len(qv)} | "
              f"{qp[0]:.0f} | {qp[1]:.0f} | {ratio50} | {ratio95} |")  # fmt: skip
    print()
    c50, c95, cmax = quantiles(confirmed_delays)
    a50, a95, amax = quantiles(arrival_delays)
    rows = [
        ("console errors (loaded / quiet)", f"{len(loaded.errors)} / {len(quiet.errors)}"),
        (
            "scheduled report runs",
            ", ".join(f"{n} {s}" for s, n in sorted(outcome.items())) + f" of {len(definitions)}",
        ),
        ("run now from the console", f"{run_now_ok} SUCCESS of {len(loaded.run_nows)}"),
        (
            "backfill partitions SUCCESS",
            f"{len(days) - len(missing_days)} of {len(days)} (runs: "
            + ", ".join(f"{n} {status}" for status, n in sorted(Counter(r["status"] for r in backfill_runs).items()))
            + ")",
        ),
        (
            "Dagster runs, all",
            f"{len(runs)}: " + ", ".join(f"{n} {st}" for st, n in sorted(Counter(r["status"] for r in runs).items())),
        ),
        ("runs per minute, all (first start to last end)", f"{len(finished) / (span / 60):.1f}" if span else "–"),
        (
            "runs per minute, scheduled (due minute to last end)",
            f"{len(scheduled_runs) / (scheduled_span / 60):.1f}" if scheduled_span else "–",
        ),  # fmt: skip
        ("due minute -> audit log's confirmed delivery, p50 / p95 / max s", f"{c50:.0f} / {c95:.0f} / {cmax:.0f}"),
        ("due minute -> arrival at the server, p50 / p95 / max s", f"{a50:.0f} / {a95:.0f} / {amax:.0f}"),
        ("files at their server once with the audited SHA-256", f"{len(arrival_delays)} of {len(definitions)}"),
        (
            "load average (1 min) at start; during the load, mean / max",
            f"{load_at_start[0]:.1f}; {statistics.fmean(sampler.samples or [0]):.1f} / "
            f"{max(sampler.samples or [0]):.1f}",
        ),  # fmt: skip
    ]
    print("| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    for miss in misses[:30]:
        print(f"MISS: {miss}", file=sys.stderr)
    print(f"{len(misses)} miss(es)" if misses else "no misses", file=sys.stderr)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
