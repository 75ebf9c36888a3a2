"""The production processes on one machine: migrated, started in order, health-checked, stopped.

    report-platform production        (scripts/production.sh runs it)

First the schemas are brought up to date, each by its own command, before anything serves:
`dagster instance migrate` for Dagster's storage (PostgreSQL, named in `$DAGSTER_HOME/dagster.yaml`)
and `python -m report_platform.migrations upgrade head` for the registry and delivery ledger.
Then the services start one after another, each waited for until its health check passes:

1. `code-server`: `dagster code-server start -m report_platform.definitions` on 127.0.0.1. Healthy
   when its gRPC health service answers SERVING (what `dagster api grpc-health-check` asks).
   `code-server start` rather than `dagster api grpc`: the latter cannot reload its code, and a
   new or deleted report's schedule appears only when the code location reloads.
2. `webserver`: `dagster-webserver -w deploy/workspace.production.yaml`. Healthy when
   `/server_info` answers and the code location is loaded from the code server.
3. `daemon`: `dagster-daemon run -w deploy/workspace.production.yaml`. Healthy when every daemon
   the instance requires has sent a heartbeat since this process started (asked of the webserver;
   `dagster-daemon liveness-check` would accept a heartbeat of the daemon it replaced).
4. `console`: `report-platform console`. Healthy when `GET /healthz` answers 200.

Each service runs in a process group of its own, its output in `<logs>/<name>.log`. Stopping one
sends SIGTERM to its group and waits up to its grace period for every process of the group to
end; what is left then gets SIGKILL. Run workers are not in the daemon's group: the fork server
starts each in a session of its own, so a daemon restart does not cut a run short (run monitoring
in the next daemon watches it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from report_platform.processes import GROUP, STATE, default_signal_state, pids, stat_fields
from report_platform.redaction import redact
from report_platform.settings import PROJECT_ROOT, Home, PlatformSettings

log = logging.getLogger(__name__)

LOCATION = "report_platform"
WORKSPACE = PROJECT_ROOT / "deploy" / "workspace.production.yaml"
INSTANCE_TEMPLATE = PROJECT_ROOT / "deploy" / "dagster.production.yaml"
LOOPBACK = "127.0.0.1"
MIGRATION_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 5.0
LOG_TAIL_CHARS = 4000

# A health check, given the wall-clock time its process started: None when healthy, else why not (yet).
Probe = Callable[[float], str | None]


class DeploymentError(RuntimeError):
    """A step did not succeed: a migration failed, or a service did not become healthy in time."""


@dataclass(frozen=True)
class Layout:
    """Where each production process listens, and what it is given."""

    dagster_home: Path
    logs: Path
    environment: Mapping[str, str]
    code_server_port: int
    webserver_host: str
    webserver_port: int
    console_port: int
    bin: Path = field(default_factory=lambda: Path(sys.executable).parent)

    @classmethod
    def from_settings(cls, settings: PlatformSettings, environment: Mapping[str, str]) -> Layout:
        if not settings.dagster_home:
            raise DeploymentError(
                f"DAGSTER_HOME is not set: name the folder holding dagster.yaml (a copy of {INSTANCE_TEMPLATE.name})"
            )
        webserver = urlsplit(settings.dagster_url)
        if webserver.scheme != "http" or not webserver.hostname:
            raise DeploymentError(f"REPORT_PLATFORM_DAGSTER_URL must be http://HOST:PORT, got {settings.dagster_url!r}")
        return cls(
            dagster_home=Path(settings.dagster_home),
            logs=Home(settings.data_home).logs,
            environment=environment,
            code_server_port=settings.code_server_port,
            webserver_host=webserver.hostname,
            webserver_port=webserver.port or 80,
            console_port=settings.console_port,
        )

    @property
    def webserver_url(self) -> str:
        return f"http://{self.webserver_host}:{self.webserver_port}"

    @property
    def console_url(self) -> str:
        return f"http://{LOOPBACK}:{self.console_port}"

    def child_environment(self) -> dict[str, str]:
        """The environment every process gets: the given one, with the layout's own values."""
        return {
            **self.environment,
            "DAGSTER_HOME": str(self.dagster_home),
            "REPORT_PLATFORM_DAGSTER_URL": self.webserver_url,
            "REPORT_PLATFORM_CODE_SERVER_PORT": str(self.code_server_port),
            "PYTHONUNBUFFERED": "1",  # a log's tail is what a failure message quotes
        }


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    probe: Probe
    start_timeout: float
    stop_grace: float


@dataclass(frozen=True)
class Stopped:
    """How a service ended: its exit status (negative: the signal that ended it), how long it
    took after SIGTERM, and whether SIGKILL was needed."""

    name: str
    status: int | None
    seconds: float
    killed: bool

    @property
    def clean(self) -> bool:
        """Ended within its grace period, by its own exit (0) or by the SIGTERM itself (a process
        still loading has no handler for it yet)."""
        return not self.killed and self.status in (0, -signal.SIGTERM)


@dataclass
class _Running:
    service: Service
    process: subprocess.Popen[bytes]
    started: float  # wall clock, to compare with heartbeats


class Deployment:
    """The four services of a layout; `start()` and `stop()` bring them up and down in order."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.services = _services(layout)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    # Migrations

    def migrate(self) -> None:
        """Bring Dagster's storage and the registry's schema up to date (no-ops when they are)."""
        instance_file = self.layout.dagster_home / "dagster.yaml"
        if not instance_file.is_file():
            raise DeploymentError(f"{instance_file} is missing: copy {INSTANCE_TEMPLATE} there")
        bin_ = self.layout.bin
        self._step("dagster-migrate", [str(bin_ / "dagster"), "instance", "migrate"])
        self._step("registry-migrate", [str(bin_ / "python"), "-m", "report_platform.migrations", "upgrade", "head"])

    def _step(self, name: str, argv: list[str]) -> None:
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:
            try:
                done = subprocess.run(  # noqa: S603 - our own interpreter's commands
                    argv,
                    cwd=PROJECT_ROOT,
                    env=self.layout.child_environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=MIGRATION_TIMEOUT_SECONDS,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise DeploymentError(
                    f"{name} did not finish within {MIGRATION_TIMEOUT_SECONDS:.0f} s\n{self.log_tail(name)}"
                ) from None
        if done.returncode != 0:
            raise DeploymentError(f"{name} failed (exit status {done.returncode})\n{self.log_tail(name)}")
        log.info("%s: done", name)

    # Starting

    def start(self, stopping: threading.Event | None = None) -> None:
        """Start every service in order, each once the one before is healthy."""
        for service in self.services:
            self.start_service(service.name, stopping)

    def start_service(self, name: str, stopping: threading.Event | None = None) -> None:
        """Start one service and wait for its health check (at most its start timeout)."""
        service = self.service(name)
        if stopping is not None and stopping.is_set():
            raise DeploymentError(f"stopped before {name} was started")
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if name in self._running and self._running[name].process.poll() is None:
                raise DeploymentError(f"{name} is already running")
            with path.open("ab") as out:
                started = time.time()
                process = subprocess.Popen(  # noqa: S603 - our own interpreter's commands
                    service.argv,
                    cwd=PROJECT_ROOT,
                    env=self.layout.child_environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a group of its own: SIGTERM reaches its children too
                    preexec_fn=_end_with_supervisor,  # noqa: PLW1509 - only a prctl call, before exec
                )
            self._running[name] = _Running(service, process, started)
        log.info("%s: started (pid %s), waiting for its health check", name, process.pid)
        deadline = time.monotonic() + service.start_timeout
        while True:
            if stopping is not None and stopping.is_set():
                raise DeploymentError(f"stopped while {name} was starting")
            if process.poll() is not None:
                raise DeploymentError(
                    f"{name} exited with status {process.returncode} before it was healthy\n{self.log_tail(name)}"
                )
            why = self.health(name)
            if why is None:
                log.info("%s: healthy after %.1f s", name, time.time() - started)
                return
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"{name} was not healthy within {service.start_timeout:.0f} s ({why})\n{self.log_tail(name)}"
                )
            time.sleep(POLL_SECONDS)

    def health(self, name: str) -> str | None:
        """None when the service is running and its health check passes; else why not."""
        running = self._running.get(name)
        if running is None or running.process.poll() is not None:
            return f"{name} is not running"
        try:
            return running.service.probe(running.started)
        except Exception as exc:  # noqa: BLE001 - a probe that fails says "not healthy", with why
            return redact(f"{type(exc).__name__}: {exc}")

    # Stopping

    def stop(self) -> list[Stopped]:
        """Stop every running service, the last started first."""
        return [self.stop_service(s.name) for s in reversed(self.services) if s.name in self._running]

    def stop_service(self, name: str) -> Stopped:
        """SIGTERM to the service's process group; SIGKILL to what is left after its grace period."""
        with self._lock:
            running = self._running.pop(name)
        process, grace = running.process, running.service.stop_grace
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        killed = not _wait_for_group(process, grace)
        if killed:
            log.warning("%s: still running %.0f s after SIGTERM; killing its process group", name, grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            _wait_for_group(process, grace)
        stopped = Stopped(name, process.returncode, time.monotonic() - began, killed)
        log.info("%s: stopped with status %s after %.1f s", name, stopped.status, stopped.seconds)
        return stopped

    # Looking at it

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def pid(self, name: str) -> int:
        return self._running[name].process.pid

    def exited(self) -> dict[str, int]:
        """Services that ended on their own, and their exit status."""
        with self._lock:
            return {name: r.process.returncode for name, r in self._running.items() if r.process.poll() is not None}

    def log_path(self, name: str) -> Path:
        return self.layout.logs / f"{name}.log"

    def log_tail(self, name: str, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")[-chars:]
        except OSError:
            text = "(no log)"
        return f"--- last lines of {self.log_path(name)} ---\n{redact(text)}"

    # The supervisor

    def run(self, stopping: threading.Event) -> int:
        """Migrate, start everything, then wait until `stopping` is set or a service ends on its own;
        then stop every service. 0 when asked to stop and every service stopped cleanly, else 1
        (a step failed, a service ended on its own, or one needed SIGKILL)."""
        failed = False
        try:
            self.migrate()
            self.start(stopping)
            log.info(
                "ready: webserver %s, console %s, code server %s:%s",
                self.layout.webserver_url,
                self.layout.console_url,
                LOOPBACK,
                self.layout.code_server_port,
            )
            while not stopping.wait(1.0):
                ended = self.exited()
                for name, status in ended.items():
                    log.error("%s exited with status %s; stopping the others\n%s", name, status, self.log_tail(name))
                if ended:
                    failed = True
                    break
        except DeploymentError as exc:
            if not stopping.is_set():  # a stop asked for during the start is no failure
                log.error("%s", exc)
                failed = True
        finally:
            stopped = self.stop()
        return 1 if failed or not all(s.clean for s in stopped) else 0


def _services(layout: Layout) -> list[Service]:
    bin_ = layout.bin
    workspace = str(WORKSPACE)
    return [
        Service(
            "code-server",
            [
                str(bin_ / "dagster"),
                "code-server",
                "start",
                "-m",
                "report_platform.definitions",
                "--location-name",
                LOCATION,
                "-h",
                LOOPBACK,
                "-p",
                str(layout.code_server_port),
                "-d",
                str(PROJECT_ROOT),
            ],  # fmt: skip
            lambda _started: grpc_serving(LOOPBACK, layout.code_server_port),
            start_timeout=180.0,
            stop_grace=30.0,
        ),
        Service(
            "webserver",
            [
                str(bin_ / "dagster-webserver"),
                "-w",
                workspace,
                "-h",
                layout.webserver_host,
                "-p",
                str(layout.webserver_port),
            ],  # fmt: skip
            lambda _started: webserver_ready(layout.webserver_url),
            start_timeout=180.0,
            # uvicorn answers the requests under way first, and a code-location reload reloads the
            # code server: seen taking over 30 s on an overloaded machine.
            stop_grace=60.0,
        ),
        Service(
            "daemon",
            [str(bin_ / "dagster-daemon"), "run", "-w", workspace],
            lambda started: daemon_beating(layout.webserver_url, since=started),
            start_timeout=180.0,
            stop_grace=60.0,  # each daemon thread gets up to 30 s to finish its iteration
        ),
        Service(
            "console",
            [str(bin_ / "report-platform"), "console", "--host", LOOPBACK, "--port", str(layout.console_port)],
            lambda _started: console_healthy(layout.console_url),
            start_timeout=120.0,
            stop_grace=40.0,  # uvicorn lets requests under way finish for up to 30 s
        ),
    ]


# Health checks


def grpc_serving(host: str, port: int) -> str | None:
    """The code server's gRPC health service, as `dagster api grpc-health-check` asks it."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            return f"gRPC health check: {exc.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    return None if status == "SERVING" else f"gRPC health check: {status}"


LOCATION_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}"""

DAEMON_QUERY = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required lastHeartbeatTime } } } }"""


def webserver_ready(url: str) -> str | None:
    """`/server_info` answers, and the webserver has loaded the code location from the code server."""
    with urllib.request.urlopen(f"{url}/server_info", timeout=PROBE_TIMEOUT_SECONDS) as answer:  # noqa: S310
        if answer.status != 200:
            return f"/server_info answered {answer.status}"
    workspace = graphql(url, LOCATION_QUERY)["workspaceOrError"]
    entries = {entry["name"]: entry for entry in workspace.get("locationEntries", [])}
    entry = entries.get(LOCATION)
    if entry is None:
        return f"the workspace has no code location {LOCATION}"
    loaded = entry["locationOrLoadError"] or {}
    if loaded.get("__typename") == "PythonError":
        first = (loaded.get("message") or "").strip().splitlines()[:1]
        return f"the code location did not load: {first[0] if first else 'no message'}"
    if entry["loadStatus"] != "LOADED" or loaded.get("__typename") != "RepositoryLocation":
        return f"the code location is {entry['loadStatus'].lower()}"
    return None


def daemon_beating(url: str, since: float) -> str | None:
    """Every daemon the instance requires has sent a heartbeat since `since` (a wall-clock time)."""
    statuses = graphql(url, DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [s for s in statuses if s["required"]]
    if not required:
        return "the instance requires no daemons"
    waiting = sorted(s["daemonType"] for s in required if (s["lastHeartbeatTime"] or 0.0) < since)
    return f"no heartbeat yet from {', '.join(waiting)}" if waiting else None


def console_healthy(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=PROBE_TIMEOUT_SECONDS) as answer:  # noqa: S310
            return None if answer.status == 200 else f"/healthz answered {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"/healthz answered {exc.code}"


def graphql(url: str, query: str, variables: dict[str, object] | None = None) -> dict:
    """One GraphQL query to the webserver; its `data`, or an error naming what it said."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(  # noqa: S310 - the deployment's own webserver
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_SECONDS * 6) as answer:  # noqa: S310
        payload = json.loads(answer.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


PR_SET_PDEATHSIG = 1


def _end_with_supervisor() -> None:
    """In the child, before exec: SIGTERM it when the process that started it ends, even by
    SIGKILL, so a supervisor that dies leaves no service running unsupervised (Linux); and start it
    with the stop signals obeyed, whatever state the supervisor itself was started in."""
    import ctypes

    default_signal_state()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies, already ended, are not counted)."""
    members = []
    for pid in pids():
        fields = stat_fields(pid)  # None: it ended while we looked
        if fields and int(fields[GROUP]) == pgid and fields[STATE] not in ("Z", "X"):
            members.append(pid)
    return members


def _wait_for_group(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the process and every other member of its group ended within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=POLL_SECONDS / 5)
        if process.returncode is not None and not group_members(process.pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS / 5)
