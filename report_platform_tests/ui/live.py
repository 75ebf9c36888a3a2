"""A real Report Platform deployment for end-to-end tests, started the way `make run` starts it.

`LivePlatform.start()` makes a data folder with a few days of demo usage, registers users and
reports, starts the demo's stand-in SMTP/SFTP/S3 servers with their connections, then runs
`dagster dev` (webserver + daemon) on a free port with the environment `scripts/run.sh` gives
it. `stop()` ends Dagster's process group and the servers. Helpers talk to it over GraphQL and
the CLI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "report_platform"
REPOSITORY = "__repository__"
OWNER = "owner@acme.example"
VIEWER = "user@acme.example"  # role User: may view reports and their runs, change nothing
STARTUP_TIMEOUT = 180.0

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """Call `probe` until it returns something other than None/False; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; the last error goes into the message
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"{what}: not within {timeout:.0f} s{detail}")
        time.sleep(every)


def quiet_time_of_day(timezone: str, now: datetime | None = None) -> str:
    """A daily time about 12 hours away, so no real schedule tick interferes with a test run."""
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone)) + timedelta(hours=12)
    return f"{local.hour:02d}:00:00"


def report_definitions() -> dict[str, dict[str, Any]]:
    """The reports registered before Dagster starts, keyed by the handle the tests use."""
    return {
        "sms_email": {
            "name": "Daily SMS usage (East)",
            "type": "sms_usage",
            "folder": "SMS",
            "workspace": "acme-east",
            "schedule": {
                "timezone": "America/New_York",
                "frequency": "daily",
                "time_of_day": quiet_time_of_day("America/New_York"),
            },
            "period": {"kind": "previous_day"},
            "destination": {
                "type": "email",
                "to": ["ops@acme.example"],
                "subject_template": "{{ReportName}} - {{Date}}",
                "body_template": "Attached: SMS usage for {{PeriodStart}}.",
            },
            "filename_pattern": "{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv",
        },
        "voice_sftp": {
            "name": "Daily voice usage (West)",
            "type": "voice_usage",
            "folder": "Voice Reports",
            "workspace": "acme-west",
            "schedule": {
                "timezone": "America/Los_Angeles",
                "frequency": "daily",
                "time_of_day": quiet_time_of_day("America/Los_Angeles"),
            },
            "period": {"kind": "previous_day"},
            "destination": {
                "type": "sftp",
                "connection": "demo-sftp",
                "remote_dir": "/inbound/voice",
                "create_dirs": True,
            },
            "filename_pattern": "voice_{{PeriodStart}}_{{PeriodEnd}}.csv",
        },
        "billing_paused": {
            "name": "Acme monthly billing",
            "type": "billing",
            "folder": "Billing",
            "organization": "acme",
            "schedule": {
                "timezone": "America/New_York",
                "frequency": "monthly",
                "day_of_month": 1,
                "time_of_day": "08:00:00",
            },
            "period": {"kind": "previous_month"},
            "destination": {
                "type": "email",
                "to": ["finance@acme.example"],
                "subject_template": "{{ReportName}} {{PeriodStart}} to {{PeriodEnd}}",
                "body_template": "The billing workbook for last month is attached.",
            },
            "filename_pattern": "acme_billing_{{PeriodStart}}.xlsx",
        },
    }


def late_report_definition() -> dict[str, Any]:
    """A report registered while Dagster runs: its schedule must appear without a restart."""
    return {
        "name": "Aegis screening, daily",
        "type": "aegis_interaction",
        "folder": "Compliance",
        "workspace": "acme-east",
        "filters": {"workflows": ["inbound-screening"], "include_event_details": True},
        "schedule": {"timezone": "UTC", "frequency": "daily", "time_of_day": quiet_time_of_day("UTC")},
        "period": {"kind": "previous_day"},
        "destination": {"type": "s3", "connection": "demo-s3", "bucket": "acme-reports", "prefix": "aegis/"},
        "filename_pattern": "aegis_{{PeriodStart}}_{{PeriodEnd}}.csv",
    }


@dataclass
class Pending:
    """A CLI command started in the background; `result()` waits for it."""

    args: tuple[str, ...]
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    _done: subprocess.CompletedProcess[str] | None = None
    finished: float | None = None

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        if self._done is None:
            try:
                out, err = self.process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, err = self.process.communicate()
                raise AssertionError(f"report-platform {' '.join(self.args)} hung; stderr: {err[-2000:]}") from None
            self.finished = time.monotonic()
            self._done = subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)
        return self._done

    def json(self, timeout: float = 300) -> Any:
        done = self.result(timeout)
        assert done.returncode == 0, f"report-platform {' '.join(self.args)} failed: {done.stderr.strip()}"
        return json.loads(done.stdout)


@dataclass
class LivePlatform:
    """A running webserver + daemon over a data folder of its own."""

    workdir: Path
    port: int
    env: dict[str, str]
    report_ids: dict[str, str] = field(default_factory=dict)
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_days: tuple[date, date] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    initial_schedules: list[str] = field(default_factory=list)  # as first loaded by the webserver
    _standins: list[Any] = field(default_factory=list)

    # --- layout -------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return Path(self.env["REPORT_PLATFORM_HOME"])

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mail_dir(self) -> Path:
        return self.home / "standins" / "mail"

    @property
    def sftp_dir(self) -> Path:
        return self.home / "standins" / "sftp"

    @property
    def dagster_log(self) -> Path:
        return self.workdir / "dagster-dev.log"

    # --- start and stop -----------------------------------------------------------------------

    @classmethod
    def create(cls, workdir: Path, port: int) -> LivePlatform:
        home, dagster_home = workdir / "home", workdir / "dagster_home"
        env = {
            **os.environ,
            "REPORT_PLATFORM_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "REPORT_PLATFORM_DAGSTER_URL": f"http://127.0.0.1:{port}",
        }
        env.pop("REPORT_PLATFORM_REGISTRY_URL", None)  # the registry lives in this data folder
        env.pop("REPORT_PLATFORM_SOURCE", None)
        return cls(workdir=workdir, port=port, env=env)

    def start(self, days: int = 3, rows_per_day: int = 200) -> None:
        """Everything `make run` does, in this platform's folders; returns when the UI answers."""
        self.home.mkdir(parents=True)
        self.dagster_home.mkdir(parents=True)
        shutil.copy(ROOT / "dagster.yaml", self.dagster_home / "dagster.yaml")
        self._start_standins()
        span = self._register(days, rows_per_day)
        self._create_instance_storage()
        dagster = self._launch_dagster()
        self.cli_inline("ingest", *span)  # meanwhile Dagster boots (the slowest step by far)
        self._wait_for_dagster(dagster)

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
                args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as a whole in stop()
            )
        self.processes.append(process)
        return process

    def _start_standins(self) -> None:
        """The demo's stand-in SMTP, SFTP (OpenSSH) and S3 servers, with the demo connections.

        Started in this process rather than as `python -m report_platform_devservers`
        (same servers, same `connections.yaml` and variables): nothing outside the test can
        then stop them by matching that command line, and they stop with the session."""
        from report_platform_devservers.serve import DEMO_BUCKETS, DevServers
        from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin

        root = self.home / "standins"
        for sub in ("mail", "sftp", "sshd"):
            (root / sub).mkdir(parents=True)
        smtp = SmtpStandin(security="none", save_dir=root / "mail").start()
        self._standins.append(smtp)
        sftp = SshdStandin(root_dir=root / "sftp", workdir=root / "sshd").start()
        self._standins.append(sftp)
        s3 = MotoStandin().start()
        self._standins.append(s3)
        for bucket in DEMO_BUCKETS:
            s3.create_bucket(bucket)
        servers = DevServers(root=root, smtp=smtp, sftp=sftp, s3=s3)
        (self.home / "connections.yaml").write_text(yaml.safe_dump(servers.connections(), sort_keys=False))
        self.env.update(servers.environment())

    def cli_inline(self, *args: str) -> str:
        """Run a `report-platform` command in this process (setup only: saves the import time)."""
        from click.testing import CliRunner

        import report_platform.cli.reports  # noqa: F401  (registers the reports and users groups)
        from report_platform.cli.main import cli

        names = ("REPORT_PLATFORM_HOME", "DAGSTER_HOME", "REPORT_PLATFORM_DAGSTER_URL")
        overrides: dict[str, str | None] = {k: self.env[k] for k in names}
        overrides |= {"REPORT_PLATFORM_REGISTRY_URL": None, "REPORT_PLATFORM_SOURCE": None}  # as in self.env
        result = CliRunner().invoke(cli, list(args), env=overrides, catch_exceptions=False)
        assert result.exit_code == 0, f"report-platform {' '.join(args)}: {result.output}"
        return result.output

    def _register(self, days: int, rows_per_day: int) -> list[str]:
        """Demo usage in the landing zone, users and reports; returns the days for `ingest`."""
        last = datetime.now(UTC).date() - timedelta(days=1)
        first = last - timedelta(days=days - 1)
        self.data_days = (first, last)
        span = ["--start", first.isoformat(), "--end", last.isoformat()]
        self.cli_inline("demo-data", *span, "--rows-per-day", str(rows_per_day))
        self.cli_inline("users", "add", OWNER, "--org", "acme", "--role", "owner")
        self.cli_inline("users", "add", VIEWER, "--org", "acme", "--role", "user")
        reports_dir = self.workdir / "reports"
        reports_dir.mkdir()
        self.definitions = report_definitions()
        for handle, definition in self.definitions.items():
            path = reports_dir / f"{handle}.yaml"
            path.write_text(yaml.safe_dump(definition, sort_keys=False))
            self.report_ids[handle] = self.cli_inline("reports", "create", str(path), "--user", OWNER).strip()
        self.cli_inline("reports", "pause", self.report_ids["billing_paused"], "--user", OWNER)
        return span

    def _create_instance_storage(self) -> None:
        """Create the instance's SQLite tables now, so `ingest` and `dagster dev` never race to."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            instance.get_runs(limit=1)

    def _launch_dagster(self) -> subprocess.Popen[bytes]:
        return self._spawn(
            [str(BIN / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)],
            self.dagster_log,
        )

    def _wait_for_dagster(self, process: subprocess.Popen[bytes]) -> None:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({process.returncode}): {self.log_tail()}")
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as answer:  # noqa: S310 - loopback
                if answer.status != 200:
                    return False
            return bool(self.schedule_names())

        try:
            wait_until(ready, STARTUP_TIMEOUT, f"dagster dev serves {self.url} with the code location loaded")
        except (AssertionError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n--- dagster dev log ---\n{self.log_tail()}") from None
        self.initial_schedules = self.schedule_names()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.dagster_log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """End every process group started here: SIGTERM, then SIGKILL for what is left."""
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # stragglers: code servers, run workers
            process.wait()
        for server in reversed(self._standins):
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - stop the others regardless
                logging.getLogger(__name__).exception("stopping %s failed", type(server).__name__)

    # --- talking to it ------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            payload = json.loads(answer.read())
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def schedules(self) -> dict[str, str]:
        """Schedule name -> its state (RUNNING/STOPPED) in the loaded code location."""
        data = self.graphql(
            """query($repo: RepositorySelector!) {
                 repositoryOrError(repositorySelector: $repo) {
                   __typename ... on Repository { schedules { name scheduleState { status } } }
                 }
               }""",
            {"repo": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
        )["repositoryOrError"]
        if data["__typename"] != "Repository":
            return {}
        return {s["name"]: s["scheduleState"]["status"] for s in data["schedules"]}

    def schedule_names(self) -> list[str]:
        return sorted(self.schedules())

    def schedule_of(self, report_id: str) -> str:
        """The name of the schedule of the report's timing, as the registry has the report now."""
        from report_platform.app import registry_service
        from report_platform.scheduling.timings import schedule_names
        from report_platform.settings import Home

        service = registry_service(Home(self.home, self.env.get("REPORT_PLATFORM_REGISTRY_URL")))
        return schedule_names(service.system.schedule_specs())[report_id]

    def failure_of(self, run_id: str) -> str:
        """The error messages of a Dagster run (for assertion messages when a run failed)."""
        events = self.graphql(
            """query($id: ID!) {
                 logsForRun(runId: $id) {
                   __typename
                   ... on EventConnection {
                     events {
                       __typename
                       ... on ExecutionStepFailureEvent { message error { message } }
                       ... on RunFailureEvent { message }
                     }
                   }
                 }
               }""",
            {"id": run_id},
        )["logsForRun"]
        lines = [
            f"{e['__typename']}: {(e.get('error') or {}).get('message') or e.get('message')}"
            for e in events.get("events", [])
            if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
        ]
        return "\n".join(lines) or f"run {run_id}: no failure events"

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`report-platform …` as a separate process with the deployment's environment."""
        return self.cli_background(*args).result(timeout)

    def cli_background(self, *args: str) -> Pending:
        process = subprocess.Popen(  # noqa: S603
            [str(BIN / "report-platform"), *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Pending(args=args, process=process)
