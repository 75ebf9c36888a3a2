"""The production deployment, started the way `report-platform production` starts it, and what
the tests and the load benchmark look at (conftest.py starts it once per test module;
benchmarks/bench_production_load.py once for its run).

One real PostgreSQL server holds Dagster's storage and the registry, each in a
database of its own; `$DAGSTER_HOME/dagster.yaml` is `deploy/dagster.production.yaml`. The
deployment (`report_platform.deployment`: the same functions the supervisor runs) migrates both
schemas, then starts the code server, webserver, daemon and console, with the stand-in SMTP, SFTP
and S3 servers on loopback. Both database passwords are set (the test server trusts loopback and
ignores them), so the tests can check that neither appears anywhere.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from report_platform.deployment import (
    INSTANCE_TEMPLATE,
    Deployment,
    DeploymentError,
    Layout,
    Stopped,
    graphql,
    group_members,
)
from report_platform.processes import STATE, pids, stat_fields
from report_platform.scheduling.batches import member_tag
from report_platform.scheduling.exports import TAG_SCHEDULED
from report_platform.scheduling.timings import run_key, schedule_names
from report_platform.settings import Home, PlatformSettings
from report_platform_devservers.serve import DevServers
from report_platform_devservers.serve import start as start_standins
from report_platform_devservers.standins.net import free_port
from report_platform_devservers.standins.s3 import STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY
from report_platform_tests.servers.postgres import PostgresServer

STORE_BUCKET = "rp-usage-store"
ARCHIVE_BUCKET = "rp-archive"

OWNER = "owner@acme.example"
OWNER_PASSWORD = "the production owner's long password"
LOCATION = "report_platform"
REPOSITORY = "__repository__"
DATA_DAYS = 4  # usage for the four days before today: every period the tests ask for
ROWS_PER_DAY = 100
RUN_TIMEOUT = 150.0  # a report run, from its request to its outcome
IN_PROGRESS = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, detail: Callable[[], str]) -> T:
    """Call `probe` every second until it returns something truthy; fail after `timeout` s with
    what was awaited, the probe's last error, and `detail()` (the tail of the relevant log)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; the last error goes into the message
            last_error = exc
        if time.monotonic() > deadline:
            why = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s{why}\n{detail()}")
        time.sleep(1.0)


class ConsoleSession:
    """A person signed in to the console with e-mail and password: the session cookie, and the
    CSRF token sent with every change."""

    def __init__(self, url: str, email: str, password: str, timeout: float = 60.0) -> None:
        self.url = url
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        answer = self.call("POST", "/api/v1/session", {"email": email, "password": password})
        self.csrf = answer["csrf_token"]

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if getattr(self, "csrf", None):
            headers["X-CSRF-Token"] = self.csrf
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                status, text = answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        if expect is not None:
            assert status == expect, f"{method} {path} answered {status}: {text}"
        elif status >= 400:
            raise AssertionError(f"{method} {path} answered {status}: {text}")
        return json.loads(text) if text else None


@dataclass
class Production:
    """The running deployment and what the tests look at."""

    deployment: Deployment
    home: Home
    environment: dict[str, str]
    servers: DevServers
    secrets: dict[str, str]
    data_days: tuple[date, date]
    migrated: dict[str, Any]  # what the databases held after the migrations, before any service started
    cli_outputs: list[str] = field(default_factory=list)
    _console: ConsoleSession | None = None

    @property
    def layout(self) -> Layout:
        return self.deployment.layout

    @property
    def console(self) -> ConsoleSession:
        """The owner, signed in to the console (once per module)."""
        if self._console is None:
            self._console = ConsoleSession(self.layout.console_url, OWNER, OWNER_PASSWORD)
        return self._console

    @property
    def registry_url(self) -> str:
        return self.environment["REPORT_PLATFORM_REGISTRY_URL"]

    def add_user(self, email: str, org: str, role: str, password: str, workspaces: tuple[str, ...] = ()) -> None:
        add_user(self.home, self.registry_url, email, org, role, password, workspaces)

    def registry(self) -> Any:
        """The registry service on the deployment's database (as the CLI would use it)."""
        from report_platform.app import registry_service

        return registry_service(Home(self.home.root, self.registry_url))

    def tails(self, *names: str) -> str:
        """The end of each named service's log (all four by default), for failure messages."""
        return "\n".join(self.deployment.log_tail(n, 2500) for n in names or [s.name for s in self.deployment.services])

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.layout.webserver_url, query, variables)

    def cli_background(self, *args: str) -> subprocess.Popen[str]:
        """`report-platform …` started as a separate process with the deployment's environment."""
        return subprocess.Popen(  # noqa: S603 - our own command
            [str(self.layout.bin / "report-platform"), *args],
            env=self.layout.child_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli_result(self, process: subprocess.Popen[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(
                f"{' '.join(process.args)} did not finish within {timeout:.0f} s: {err[-2000:]}"
            ) from None
        self.cli_outputs += [out, err]
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    # What Dagster and the delivery servers saw

    def schedules(self) -> set[str]:
        data = self.graphql(
            """query($repo: RepositorySelector!) {
                 repositoryOrError(repositorySelector: $repo) {
                   __typename ... on Repository { schedules { name } }
                 }
               }""",
            {"repo": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
        )["repositoryOrError"]
        return {s["name"] for s in data.get("schedules", [])}

    def dry_run(self, schedule: str, at: datetime) -> dict[str, Any]:
        """The code server's evaluation of `schedule` at `at` (what "Test schedule" shows)."""
        answer = self.graphql(
            """mutation($selector: ScheduleSelector!, $timestamp: Float!) {
                 scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
                   __typename
                   ... on DryRunInstigationTick {
                     evaluationResult { skipReason runRequests { runKey } error { message } }
                   }
                   ... on PythonError { message }
                 }
               }""",
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "scheduleName": schedule,
                },
                "timestamp": at.timestamp(),
            },
        )["scheduleDryRun"]
        assert answer["__typename"] == "DryRunInstigationTick", answer
        return answer["evaluationResult"]

    def runs(self, **tags: str) -> list[dict[str, Any]]:
        """Dagster's runs carrying every given tag (`report_platform/report_id` as `report_id`...)."""
        names = {"report_id": "report_platform/report_id", "run_key": "dagster/run_key", "backfill": "dagster/backfill"}
        data = self.graphql(
            """query($filter: RunsFilter!) {
                 runsOrError(filter: $filter) {
                   __typename ... on Runs { results { runId status tags { key value } } }
                 }
               }""",
            {"filter": {"tags": [{"key": names.get(k, k), "value": v} for k, v in tags.items()]}},
        )["runsOrError"]
        return [
            {"id": r["runId"], "status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
            for r in data["results"]
        ]

    def schedule_of(self, report_id: str) -> str:
        """The schedule that ticks for the report: its own, or its timing's when it shares one."""
        return schedule_names(self.registry().system.schedule_specs())[report_id]

    def tick_runs(self, report_id: str, at: datetime) -> list[dict[str, Any]]:
        """Dagster's runs made for the report's tick at `at`: its own run (run key) or a batch run
        of its timing that holds it (a tag per report, the batch's scheduled time)."""
        own = self.runs(run_key=run_key(report_id, at))
        batched = [
            r
            for r in self.runs(**{member_tag(report_id): "in batch"})
            if datetime.fromisoformat(r["tags"][TAG_SCHEDULED]) == at
        ]
        return own + batched

    def settled_tick_runs(self, report_id: str, at: datetime) -> list[dict[str, Any]]:
        """The runs made for the report's tick at `at`, once one has finished."""
        return wait_until(
            lambda: (done := [r for r in self.tick_runs(report_id, at) if r["status"] not in IN_PROGRESS]) and done,
            RUN_TIMEOUT,
            f"a finished Dagster run for the tick of {report_id} at {at:%H:%M}",
            self.tails,
        )

    def settled_runs(self, count: int, **tags: str) -> list[dict[str, Any]]:
        """The runs carrying `tags` once `count` of them have finished (the audit log says SUCCESS
        while the run is still ending)."""
        return wait_until(
            lambda: (
                (done := [r for r in self.runs(**tags) if r["status"] not in IN_PROGRESS])
                and len(done) >= count
                and done
            ),
            RUN_TIMEOUT,
            f"{count} finished Dagster run(s) tagged {tags}",
            self.tails,
        )

    def failure_of(self, run_id: str) -> str:
        events = self.graphql(
            """query($id: ID!) {
                 logsForRun(runId: $id) {
                   __typename
                   ... on EventConnection { events { __typename ... on MessageEvent { message } } }
                 }
               }""",
            {"id": run_id},
        )["logsForRun"]
        return "\n".join(e.get("message") or e["__typename"] for e in events.get("events", []))[-3000:]

    def schedule_ticks(self, report_id: str) -> list[dict[str, Any]]:
        """The Dagster tick history of the report's schedule: timestamp, status, run ids, skip reason."""
        data = self.graphql(
            """query($selector: ScheduleSelector!) {
                 scheduleOrError(scheduleSelector: $selector) {
                   __typename
                   ... on Schedule { scheduleState { ticks(limit: 100) { timestamp status runIds skipReason } } }
                 }
               }""",
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "scheduleName": self.schedule_of(report_id),
                }
            },
        )["scheduleOrError"]
        assert data["__typename"] == "Schedule", data
        return sorted(data["scheduleState"]["ticks"], key=lambda t: t["timestamp"])

    def event_count(self, run_id: str) -> int:
        """How many events Dagster's event log holds for the run."""
        events = self.graphql(
            """query($id: ID!) {
                 logsForRun(runId: $id, limit: 100000) {
                   __typename ... on EventConnection { events { __typename } }
                 }
               }""",
            {"id": run_id},
        )["logsForRun"]
        assert events["__typename"] == "EventConnection", events
        return len(events["events"])

    def create_reports(self, definitions: dict[str, dict[str, Any]]) -> tuple[dict[str, str], Stopped]:
        """The reports created through the console (handle -> id), once their schedules are in the
        code server; then the daemon is restarted, so that its first pass over the schedules knows
        them (the scheduler starts a schedule it has never seen at the moment it first sees it).
        Also how the replaced daemon stopped."""
        ids = {
            handle: self.console.call("POST", "/api/v1/reports", body, expect=201)["id"]
            for handle, body in definitions.items()
        }
        wanted = {self.schedule_of(report_id) for report_id in ids.values()}
        wait_until(
            lambda: wanted <= self.schedules(),
            120,
            "the schedules of the reports created through the console, in the code server after its reload",
            lambda: self.tails("code-server", "webserver", "console"),
        )
        stopped = self.deployment.stop_service("daemon")
        self.deployment.start_service("daemon")
        return ids, stopped

    def kill_service(self, name: str) -> None:
        """SIGKILL to the service's whole process group (its fork server or gRPC child too), as
        the OOM killer or a lost machine would end it; returns once no process of it is left."""
        pgid = self.deployment.pid(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        wait_until(
            lambda: self.deployment.health(name) is not None and not group_members(pgid),
            30,
            f"every process of {name} ended after SIGKILL",
            lambda: self.tails(name),
        )

    def mails(self, subject_contains: str) -> list[Any]:
        return [m.message for m in self.servers.smtp.received if subject_contains in (m.message["Subject"] or "")]

    def audit_runs(self, report_id: str) -> list[dict[str, Any]]:
        return self.console.call("GET", f"/api/v1/reports/{report_id}/audit-log")["runs"]

    def finished(self, report_id: str, count: int, trigger: str) -> list[dict[str, Any]] | None:
        """The report's audit-log runs of `trigger` once `count` of them have finished, else None."""
        runs = [r for r in self.audit_runs(report_id) if r["trigger"] == trigger]
        done = [r for r in runs if r["status"] in ("SUCCESS", "FAILED")]
        return done if len(done) >= count else None


def definition(name: str, time_of_day: str, destination: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A daily SMS usage report in UTC, for the previous day."""
    return {
        "name": name,
        "type": "sms_usage",
        "workspace": "acme-east",
        "schedule": {"timezone": "UTC", "frequency": "daily", "time_of_day": time_of_day},
        "period": {"kind": "previous_day"},
        "destination": destination,
        "filename_pattern": "{{ReportName}}_{{PeriodStart}}.csv",
        **changes,
    }


def mail_to(address: str) -> dict[str, Any]:
    return {
        "type": "email",
        "to": [address],
        "subject_template": "{{ReportName}} - {{PeriodStart}}",
        "body_template": "Attached: SMS usage for {{PeriodStart}}.",
    }


def quiet_time_of_day(minute: int = 0) -> str:
    """A daily time about 12 hours away, so that no tick of it falls in the test."""
    return f"{(datetime.now(UTC) + timedelta(hours=12)).hour:02d}:{minute:02d}:00"


@contextlib.contextmanager
def started_production(
    postgres: PostgresServer, work: Path, data_days: int = DATA_DAYS, rows_per_day: int = ROWS_PER_DAY
) -> Iterator[Production]:
    """The deployment in `work` on two new databases of `postgres`, with `data_days` days of usage
    before today ingested; stopped and the databases dropped on leaving. Raises DeploymentError
    (after cleaning up) when it does not start."""
    suffix = secrets.token_hex(4)
    dagster_db, registry_db = f"dagster_{suffix}", f"registry_{suffix}"
    postgres.create_database(dagster_db)
    postgres.create_database(registry_db)
    passwords = {"dagster": f"pg-dagster-{secrets.token_hex(8)}", "registry": f"pg-registry-{secrets.token_hex(8)}"}
    registry_url = postgres.url_for(registry_db).replace(
        f"{postgres.user}@", f"{postgres.user}:{passwords['registry']}@", 1
    )
    home = Home(work / "home").ensure()
    servers = start_standins(home, smtp_port=None, sftp_port=None, s3_port=None)
    # No folder shared between the services that a second machine would not have: the usage store
    # and the archive are in S3 (moto on loopback), as docs/deployment.md describes.
    for bucket in (STORE_BUCKET, ARCHIVE_BUCKET):
        servers.s3.create_bucket(bucket)
    environment = {
        **_test_environment(),
        "REPORT_PLATFORM_HOME": str(home.root),
        "REPORT_PLATFORM_REGISTRY_URL": registry_url,
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": passwords["dagster"],
        "DAGSTER_PG_DB": dagster_db,
        "REPORT_PLATFORM_STORE_S3_BUCKET": STORE_BUCKET,
        "REPORT_PLATFORM_STORE_S3_PREFIX": "usage/",
        "REPORT_PLATFORM_STORE_S3_ENDPOINT_URL": servers.s3.endpoint_url,
        "REPORT_PLATFORM_ARCHIVE_S3_BUCKET": ARCHIVE_BUCKET,
        "REPORT_PLATFORM_ARCHIVE_S3_PREFIX": "exports/",
        "REPORT_PLATFORM_ARCHIVE_S3_ENDPOINT_URL": servers.s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": STANDIN_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": STANDIN_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        **servers.environment(),
    }
    layout = new_layout(work / "dagster_home", home, environment)
    deployment = Deployment(layout)
    last = datetime.now(UTC).date() - timedelta(days=1)
    days = (last - timedelta(days=data_days - 1), last)
    try:
        try:
            _usage(layout, days, rows_per_day)
            deployment.migrate()
            migrated = _schemas(registry_url, postgres.url_for(dagster_db))
            _owner(home, registry_url)
            deployment.start()
        except DeploymentError:
            deployment.stop()
            raise
        production = Production(deployment, home, environment, servers, passwords, days, migrated)
        try:
            yield production
        finally:
            deployment.stop()
    finally:
        for pid in processes_of(home):  # run workers of a failed test, in sessions of their own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        servers.stop()
        postgres.drop_database(dagster_db)
        postgres.drop_database(registry_db)


def new_layout(dagster_home: Path, home: Home, environment: dict[str, str]) -> Layout:
    """A layout on free loopback ports, its `dagster.yaml` a copy of the production template."""
    dagster_home.mkdir()
    shutil.copy(INSTANCE_TEMPLATE, dagster_home / "dagster.yaml")
    return Layout(
        dagster_home=dagster_home,
        logs=home.logs,
        environment=environment,
        code_server_port=free_port(),
        webserver_host="127.0.0.1",
        webserver_port=free_port(),
        console_port=free_port(),
    )


def processes_of(home: Home) -> list[int]:
    """Live processes started with this deployment's data folder in their environment."""
    marker = f"REPORT_PLATFORM_HOME={home.root}".encode()
    found = []
    for pid in pids():
        if pid == os.getpid():
            continue
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # ended while we looked, or not ours to read
        fields = stat_fields(pid)
        if marker in environment and fields and fields[STATE] not in ("Z", "X"):
            found.append(pid)
    return found


def _test_environment() -> dict[str, str]:
    """The test process's environment without the platform's own settings (each is set above)."""
    from report_platform.settings import ENV_PREFIX, process_environment

    return {k: v for k, v in process_environment().items() if not k.startswith(ENV_PREFIX) and k != "DAGSTER_HOME"}


def _usage(layout: Layout, days: tuple[date, date], rows_per_day: int) -> None:
    """Demo usage in the landing zone, ingested into the store (before anything serves)."""
    span = ["--start", days[0].isoformat(), "--end", days[1].isoformat()]
    for args in (["demo-data", *span, "--rows-per-day", str(rows_per_day)], ["ingest", *span]):
        done = subprocess.run(  # noqa: S603 - our own command
            [str(layout.bin / "report-platform"), *args],
            env=layout.child_environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"report-platform {' '.join(args)}: {done.stderr[-2000:]}"


def _schemas(registry_url: str, dagster_url: str) -> dict[str, Any]:
    """The registry's Alembic revision and the tables of Dagster's database."""
    from sqlalchemy import inspect

    from report_platform.database import make_engine
    from report_platform.migrations import current_revisions

    found: dict[str, Any] = {}
    for name, url in (("registry", registry_url), ("dagster", dagster_url)):
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                found[f"{name}_revisions"] = current_revisions(connection)
                found[f"{name}_tables"] = set(inspect(connection).get_table_names())
        finally:
            engine.dispose()
    return found


def _owner(home: Home, registry_url: str) -> None:
    """The Owner of acme, with a password for the console (the registry is migrated by now)."""
    add_user(home, registry_url, OWNER, "acme", "owner", OWNER_PASSWORD)


def add_user(
    home: Home, registry_url: str, email: str, org: str, role: str, password: str, workspaces: tuple[str, ...] = ()
) -> None:
    """A person with `role` in `org` (limited to `workspaces` when given) and a console password."""
    from report_platform.app import registry_service, sign_in_store

    located = Home(home.root, registry_url)
    registry_service(located).add_user(email, org, role, workspaces)
    sign_in_store(located, PlatformSettings(home=home.root, registry_url=registry_url)).set_password(email, password)


def sftp_files(servers: DevServers, folder: str) -> list[Path]:
    root = servers.sftp_dir / folder.strip("/")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) if root.exists() else []
