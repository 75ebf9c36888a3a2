"""One full run of the platform with real secrets, and everything it left behind.

The platform is set up as production runs it: the registry and the delivery ledger on PostgreSQL,
Dagster's storage on PostgreSQL (a database of its own), runs launched by ForkRunLauncher as the
run queue launches them, the console served by uvicorn in a process of its own, the CLI as an
operator runs it. Every secret is long, random and distinctive: the SMTP AUTH password, a wrong
SMTP password (one report's relay refuses it), the SFTP password and the SFTP private key, the S3
secret access key, both databases' passwords (the test server trusts loopback, so these two are
carried everywhere a real one is, but not checked), two people's console passwords, an API token
and a session token. (OpenPGP encryption takes public keys only: it has no secret to leak.)

Reports of two organisations deliver by e-mail, SFTP and S3, several destinations each; one fails
at its relay's AUTH. Runs are launched by the run launcher, by "run now" through the console's
API and by `reports run-now` on the command line. `FullRun` keeps what the run left: the
servers' deliveries, every HTTP answer the console gave (recorded by the client, below), the
output of every process started, and what to read Dagster and the databases with.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest
import yaml

from report_platform.ingest.runner import ingest_range
from report_platform.settings import Home
from report_platform_devservers.standins import MotoStandin, SmtpStandin, SshdStandin
from report_platform_devservers.standins.net import free_port
from report_platform_devservers.standins.sftp import create_password_user, remove_password_user
from report_platform_tests.samples import sms_definition
from report_platform_tests.security.leaks import Secret, distinctive
from report_platform_tests.servers.postgres import PostgresServer, find_bindir

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))
PERIOD = date(2026, 3, 8)  # the previous day of SCHEDULED: every run delivers this local day
OWNER = "owner@acme.example"
GLOBEX_OWNER = "owner@globex.example"
BUCKET_PREFIX = "security-"
PROCESS_TIMEOUT_SECONDS = 240
WAIT_SECONDS = 240

# What each report is, who owns it and how it is launched.
REPORTS: dict[str, dict[str, Any]] = {
    "acme_sms": {"type": "sms_usage", "workspace": "acme-east", "launch": "run launcher"},
    "acme_broken": {"type": "sms_usage", "workspace": "acme-east", "launch": "run launcher"},
    "globex_aegis": {"type": "aegis_interaction", "workspace": "globex-main", "launch": "run launcher"},
    "acme_aegis": {"type": "aegis_interaction", "workspace": "acme-east", "launch": "console API"},
    "globex_sms": {"type": "sms_usage", "workspace": "globex-main", "launch": "CLI"},
}
ORGANIZATION = {"acme-east": "acme", "globex-main": "globex"}


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the console, as the client received it."""

    method: str
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def text(self) -> str:
        head = "\n".join(f"{name}: {value}" for name, value in self.headers)
        return f"{self.method} {self.url} -> {self.status}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


@dataclass(frozen=True)
class Output:
    """What a process started during the run wrote to its standard streams."""

    label: str
    stdout: str
    stderr: str


@dataclass
class FullRun:
    work: Path
    home: Home
    dagster_home: Path
    env: dict[str, str]
    secrets: dict[str, Secret]
    postgres: PostgresServer
    databases: dict[str, str]  # "registry" | "dagster" -> database name
    smtp: SmtpStandin
    sshd: SshdStandin
    sftp_user: str  # the local login of globex's SFTP password, made for this run
    moto: MotoStandin
    bucket: str
    sftp_dirs: dict[str, Path]  # organisation -> its upload folder
    reports: dict[str, str] = field(default_factory=dict)  # key of REPORTS -> report id
    answers: list[Answer] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    issued_token_output: str = ""  # `users token` prints the token: that is its purpose

    def stop_servers(self) -> None:
        self.smtp.stop()
        self.sshd.stop()
        remove_password_user(self.sftp_user)
        shutil.rmtree(self.sshd.root_dir, ignore_errors=True)

    def secret_values(self) -> list[Secret]:
        return list(self.secrets.values())

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """The platform's environment in this process (to open its Dagster instance), then restored."""
        with pytest.MonkeyPatch.context() as patch:
            for name in ("DAGSTER_HOME", "REPORT_PLATFORM_HOME", "REPORT_PLATFORM_REGISTRY_URL", "DAGSTER_PG_PASSWORD"):
                patch.setenv(name, self.env[name])
            yield

    def run(self, label: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as the operator does, with the platform's environment; keep its output."""
        ran = subprocess.run(
            list(args),
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT_SECONDS,
        )
        self.outputs.append(Output(label, ran.stdout, ran.stderr))
        return ran

    def cli(self, *args: str, stdin: str | None = None, fails: bool = False) -> subprocess.CompletedProcess[str]:
        ran = self.run(f"report-platform {' '.join(args[:2])}", sys.executable, "-m", "report_platform.cli.main",
                       *args, stdin=stdin)  # fmt: skip
        assert (ran.returncode != 0) is fails, f"{args[:2]} exited {ran.returncode}: {ran.stderr[-3000:]}"
        return ran

    def client(self, base_url: str, **headers: str) -> httpx2.Client:
        """An HTTP client of the console whose every answer is kept in `answers`."""

        def keep(response: httpx2.Response) -> None:
            response.read()
            self.answers.append(
                Answer(
                    response.request.method,
                    str(response.request.url),
                    response.status_code,
                    tuple(response.headers.multi_items()),
                    response.content,
                )
            )

        return httpx2.Client(base_url=base_url, headers=headers, timeout=60, event_hooks={"response": [keep]})

    def pg_dump(self, which: str) -> str:
        """The whole database as SQL, by Debian's pg_dump of the server's own version."""
        ran = self.run(
            f"pg_dump {which}",
            str(find_bindir() / "pg_dump"),
            "--host", self.postgres.host, "--port", str(self.postgres.port), "--username", self.postgres.user,
            "--no-password", self.databases[which],
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        return ran.stdout

    def delivered_files(self) -> list[tuple[str, str, bytes]]:
        """(where, file name, bytes) of every file at the SFTP server, in the bucket and attached to a mail."""
        found: list[tuple[str, str, bytes]] = []
        for org, folder in self.sftp_dirs.items():
            found += [(f"sftp {org}", p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]
        s3 = self.moto.client()
        for item in s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            body = s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            found.append((f"s3 {item['Key'].split('/')[0]}", item["Key"].split("/")[-1], body))
        for mail in self.smtp.received:
            for part in mail.message.iter_attachments():
                content = part.get_content()  # text for a CSV attachment
                data = content.encode() if isinstance(content, str) else content
                found.append((f"mail to {','.join(mail.rcpt_tos)}", part.get_filename(), data))
        return found


def _make_secrets(sftp_key: str) -> dict[str, Secret]:
    values = {
        "SMTP AUTH password": distinctive("smtp"),
        "wrong SMTP password": distinctive("smtpwrong"),
        "SFTP password": distinctive("sftp"),
        "SFTP private key": sftp_key,
        "S3 secret access key": distinctive("s3secret"),
        "registry database password": distinctive("registrydb"),
        "Dagster database password": distinctive("dagsterdb"),
        "acme Owner's password": distinctive("owner"),
        "globex Owner's password": distinctive("globex"),
    }
    return {name: Secret(name, value) for name, value in values.items()}


ENV_OF = {
    "SMTP AUTH password": "SEC_SMTP_PASSWORD",
    "wrong SMTP password": "SEC_SMTP_WRONG_PASSWORD",
    "SFTP password": "SEC_SFTP_PASSWORD",
    "SFTP private key": "SEC_SFTP_KEY",
    "S3 secret access key": "SEC_S3_SECRET",
    "Dagster database password": "DAGSTER_PG_PASSWORD",
}


def _connections(run: FullRun) -> dict[str, Any]:
    smtp = {
        "host": run.smtp.host,
        "port": run.smtp.port,
        "security": "starttls",
        "ca_file": str(run.smtp.cert_file),
        "username": "reports",
        "password_env": ENV_OF["SMTP AUTH password"],
        "from_address": "reports@platform.example",
        "timeout": 10,
        "organizations": ["acme", "globex"],
    }
    sftp = {"host": run.sshd.host, "port": run.sshd.port, "host_key": run.sshd.host_key, "timeout": 10}
    return {
        "smtp": {
            "default": smtp,
            "relay-wrong-password": {**smtp, "password_env": ENV_OF["wrong SMTP password"], "organizations": ["acme"]},
        },
        "sftp": {
            "acme-sftp": {
                **sftp,
                "username": run.sshd.username,
                "private_key_env": ENV_OF["SFTP private key"],
                "organizations": ["acme"],
            },
            "globex-sftp": {
                **sftp,
                "username": run.sftp_user,
                "password_env": ENV_OF["SFTP password"],
                "organizations": ["globex"],
            },
        },
        "s3": {
            "reports-s3": {
                "region": "us-east-1",
                "endpoint_url": run.moto.endpoint_url,
                "access_key_id_env": "SEC_S3_KEY_ID",
                "secret_access_key_env": ENV_OF["S3 secret access key"],
                "sdk_max_attempts": 1,
                "organizations": ["acme", "globex"],
            }
        },
    }


def _definition(run: FullRun, key: str) -> dict[str, Any]:
    spec = REPORTS[key]
    org = ORGANIZATION[spec["workspace"]]
    email = {"type": "email", "to": [f"ops@{org}.example"], "subject_template": "{{ReportName}} - {{Date}}"}
    sftp = {"type": "sftp", "connection": f"{org}-sftp", "remote_dir": str(run.sftp_dirs[org])}
    s3 = {"type": "s3", "connection": "reports-s3", "bucket": run.bucket, "prefix": f"{org}/"}
    destinations = {
        "acme_sms": [email, sftp, s3],
        "acme_broken": [{**email, "connection": "relay-wrong-password"}],
        "globex_aegis": [sftp, s3, email],
        "acme_aegis": [s3, email],
        "globex_sms": [sftp, email],
    }[key]
    definition = sms_definition(
        name=f"Security {key.replace('_', ' ')}",
        type=spec["type"],
        workspace=spec["workspace"],
        destinations=destinations,
        filename_pattern="{{ReportName}}_{{PeriodStart}}_{{PeriodEnd}}.csv",
    )
    del definition["destination"]
    return definition


def _start_console(run: FullRun, port: int) -> subprocess.Popen[bytes]:
    logs = run.work / "console"
    logs.mkdir()
    with (logs / "stdout").open("wb") as stdout, (logs / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "report_platform.cli.main", "console", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=run.env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    probe = run.client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx2.TransportError):
            if probe.get("/login").status_code == 200:
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the console did not start: {(logs / 'stderr').read_text()[-3000:]}")
        time.sleep(0.2)


def _stop_console(run: FullRun, process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    logs = run.work / "console"
    run.outputs.append(Output("report-platform console", (logs / "stdout").read_text(), (logs / "stderr").read_text()))


def _wait_for_audit_run(client: httpx2.Client, report_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        runs = client.get(f"/api/v1/reports/{report_id}/audit-log").json()["runs"]
        if runs and runs[0]["status"] not in ("QUEUED", "STARTED"):
            return runs[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run of {report_id} did not finish within {WAIT_SECONDS} s: {runs}")
        time.sleep(1)


def prepare(work: Path, postgres: PostgresServer, moto: MotoStandin) -> FullRun:
    """Servers, databases, a data folder with three days of usage, connections and the environment."""
    # The password user must reach its folder: pytest's temporary folders are private to root.
    sftp_root = Path(tempfile.mkdtemp(prefix="sftp-root-"))
    sftp_root.chmod(0o755)
    sshd = SshdStandin(root_dir=sftp_root, workdir=work / "sshd", password_auth=True)
    smtp: SmtpStandin | None = None
    sftp_user: str | None = None
    try:
        secrets_ = _make_secrets(sshd.start().client_key_text)
        # A login of its own: a fixed name's password would be taken by a full run made at the same
        # time (another xdist worker, another test run on the machine), and sshd would refuse ours.
        sftp_user = create_password_user(secrets_["SFTP password"].value)
        smtp = SmtpStandin(security="starttls", users={"reports": secrets_["SMTP AUTH password"].value}).start()
        return _prepare_with(work, postgres, moto, sshd, sftp_user, smtp, secrets_)
    except BaseException:
        for server in (smtp, sshd):
            if server is not None:
                server.stop()
        if sftp_user is not None:
            remove_password_user(sftp_user)
        shutil.rmtree(sftp_root, ignore_errors=True)
        raise


def _prepare_with(
    work: Path,
    postgres: PostgresServer,
    moto: MotoStandin,
    sshd: SshdStandin,
    sftp_user: str,
    smtp: SmtpStandin,
    secrets_: dict[str, Secret],
) -> FullRun:
    sftp_dirs = {"acme": sshd.root_dir / "acme", "globex": sshd.root_dir / "globex"}
    for org, folder in sftp_dirs.items():
        folder.mkdir()
        if org == "globex":
            shutil.chown(folder, user=sftp_user)
    bucket = f"{BUCKET_PREFIX}{uuid.uuid4().hex[:12]}"
    moto.create_bucket(bucket)
    databases = {"registry": f"registry_{uuid.uuid4().hex[:12]}", "dagster": f"dagster_{uuid.uuid4().hex[:12]}"}
    for name in databases.values():
        postgres.create_database(name)
    home = Home(work / "home").ensure()
    dagster_home = work / "dagster_home"
    dagster_home.mkdir()
    run = FullRun(
        work=work,
        home=home,
        dagster_home=dagster_home,
        env={},
        secrets=secrets_,
        postgres=postgres,
        databases=databases,
        smtp=smtp,
        sshd=sshd,
        sftp_user=sftp_user,
        moto=moto,
        bucket=bucket,
        sftp_dirs=sftp_dirs,
    )
    home.connections.write_text(yaml.safe_dump(_connections(run)))
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(_instance_config(postgres, databases["dagster"])))
    registry_password = urllib.parse.quote(secrets_["registry database password"].value, safe="")
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REPORT_PLATFORM_", "DAGSTER_", "SEC_", "PYTEST_"))
    }
    run.env = {
        **base_env,
        "REPORT_PLATFORM_HOME": str(home.root),
        "REPORT_PLATFORM_REGISTRY_URL": (
            f"postgresql+psycopg://{postgres.user}:{registry_password}@{postgres.host}:{postgres.port}/"
            f"{databases['registry']}"
        ),
        "REPORT_PLATFORM_DAGSTER_URL": "http://127.0.0.1:9",  # no webserver: run now executes in-process
        "DAGSTER_HOME": str(dagster_home),
        "SEC_S3_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
        **{ENV_OF[name]: secrets_[name].value for name in ENV_OF},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPORT_PLATFORM_ROWS_PER_DAY", "200")
        patch.delenv("DAGSTER_HOME", raising=False)
        ingest_range(home, date(2026, 3, 7), date(2026, 3, 9))
    return run


def _instance_config(postgres: PostgresServer, database: str) -> dict[str, Any]:
    """Dagster's storage on PostgreSQL and the fork launcher, as deploy/dagster.production.yaml has them."""
    return {
        "telemetry": {"enabled": False},
        "storage": {
            "custom": {
                "module": "report_platform.scheduling.pg_storage",
                "class": "PooledPostgresStorage",
                "config": {
                    "postgres_db": {
                        "hostname": postgres.host,
                        "port": postgres.port,
                        "username": postgres.user,
                        "password": {"env": "DAGSTER_PG_PASSWORD"},
                        "db_name": database,
                    }
                },
            }
        },
        "run_launcher": {"module": "report_platform.scheduling.fork_launcher", "class": "ForkRunLauncher"},
    }


def run_everything(run: FullRun) -> None:
    """Register the people, create and run every report, read every view of them."""
    secret = run.secrets
    run.cli("users", "add", OWNER, "--org", "acme", "--role", "owner", "--password-stdin",
            stdin=secret["acme Owner's password"].value + "\n")  # fmt: skip
    run.cli("users", "add", GLOBEX_OWNER, "--org", "globex", "--role", "owner", "--password-stdin",
            stdin=secret["globex Owner's password"].value + "\n")  # fmt: skip
    issued = run.cli("users", "token", OWNER, "--name", "reports script")
    token = issued.stdout.strip()
    run.issued_token_output = issued.stdout
    run.outputs[-1] = Output(run.outputs[-1].label, "", issued.stderr)  # the printed token is checked apart
    run.secrets["API token"] = Secret("API token", token)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    console = _start_console(run, port)
    launcher: subprocess.Popen[str] | None = None
    try:
        acme = run.client(base, Authorization=f"Bearer {token}")
        globex = run.client(base)
        signed_in = globex.post(
            "/api/v1/session", json={"email": GLOBEX_OWNER, "password": secret["globex Owner's password"].value}
        )
        assert signed_in.status_code == 200, signed_in.text
        globex.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
        # The CSRF token is no secret at rest: it is kept as it is (pages hand it to their scripts)
        # and signs nobody in without the session's cookie.
        run.secrets["session token"] = Secret("session token", globex.cookies["rp_session"])
        for key, spec in REPORTS.items():
            client = acme if ORGANIZATION[spec["workspace"]] == "acme" else globex
            created = client.post("/api/v1/reports", json=_definition(run, key))
            assert created.status_code == 201, created.text
            run.reports[key] = created.json()["id"]

        scheduled = [
            f"{run.reports[k]}={REPORTS[k]['type']}" for k, s in REPORTS.items() if s["launch"] == "run launcher"
        ]
        launcher = _start_launcher(run, scheduled)
        period = {"period_start": PERIOD.isoformat(), "period_end": PERIOD.isoformat()}
        queued = acme.post(f"/api/v1/reports/{run.reports['acme_aegis']}/run-now", json=period)
        assert queued.status_code == 202, queued.text
        run.cli("reports", "run-now", run.reports["globex_sms"], "--user", GLOBEX_OWNER,
                "--period-start", PERIOD.isoformat(), "--period-end", PERIOD.isoformat(), "--json")  # fmt: skip
        assert _wait_for_audit_run(acme, run.reports["acme_aegis"])["status"] == "SUCCESS"
        _finish_launcher(run, launcher)

        _read_every_view(run, acme, globex)
    finally:
        if launcher is not None and launcher.poll() is None:  # a step above failed while runs went on
            launcher.kill()
            launcher.wait(10)
        _stop_console(run, console)


def _start_launcher(run: FullRun, reports: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "report_platform_tests.security.launch_runs", SCHEDULED.isoformat(), *reports],
        cwd=ROOT,
        env=run.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish_launcher(run: FullRun, launcher: subprocess.Popen[str]) -> None:
    try:
        stdout, stderr = launcher.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        launcher.kill()
        stdout, stderr = launcher.communicate()
    run.outputs.append(Output("run launcher, fork server and run workers", stdout, stderr))
    assert launcher.returncode == 0, stderr[-3000:]


def _read_every_view(run: FullRun, acme: httpx2.Client, globex: httpx2.Client) -> None:
    """Every page and API answer about the reports, as their owners see them, and the CLI's."""
    for key, spec in REPORTS.items():
        org = ORGANIZATION[spec["workspace"]]
        client, owner = (acme, OWNER) if org == "acme" else (globex, GLOBEX_OWNER)
        report_id = run.reports[key]
        for path in (f"/api/v1/reports/{report_id}", f"/api/v1/reports/{report_id}/audit-log",
                     f"/reports/{report_id}", f"/reports/{report_id}/audit-log"):  # fmt: skip
            assert client.get(path).status_code == 200, path
        if key in ("acme_broken", "globex_sms"):  # the failed run, and the one the CLI ran
            run.cli("reports", "audit-log", report_id, "--user", owner, "--json")
    for client in (acme, globex):
        for path in ("/", "/api/v1/reports", "/api/v1/folders", "/reports/new"):
            assert client.get(path).status_code == 200, path
    # Each connection's check signs in with its secret; the wrong password's fails at AUTH.
    for name, kind, extra in (
        ("default", "smtp", {}),
        ("relay-wrong-password", "smtp", {}),
        ("acme-sftp", "sftp", {"remote_dir": str(run.sftp_dirs["acme"])}),
        ("reports-s3", "s3", {"bucket": run.bucket, "prefix": "acme/"}),
    ):
        answer = acme.post(f"/api/v1/connections/{name}/test", json={"kind": kind, **extra})
        assert answer.status_code == 200 and answer.json()["ok"] is (name != "relay-wrong-password"), answer.text
    answer = globex.post(
        "/api/v1/connections/globex-sftp/test", json={"kind": "sftp", "remote_dir": str(run.sftp_dirs["globex"])}
    )
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.text
    run.cli("connections", "test", "relay-wrong-password", "--kind", "smtp", fails=True)
