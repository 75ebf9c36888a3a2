"""A run launcher that forks each run worker from a preloaded process instead of starting a new
interpreter: a report run then costs its own work plus Dagster's run machinery, not the ~2 s of
CPU that importing Dagster and the platform takes in every fresh `dagster api execute_run`.

Configured in the instance YAML (dagster.yaml):

    run_launcher:
      module: report_platform.scheduling.fork_launcher
      class: ForkRunLauncher

On the first launch for a code location, the launcher starts a fork server
(`report_platform.scheduling.fork_server`) for it: a child process that imports Dagster and loads
the location as a run worker does, then listens on a Unix socket in a private (0700) folder. Each
launch hands it the run's `ExecuteRunArgs`; it forks a detached worker that runs the body of
`dagster api execute_run` (same function, so events, run status, run retries and failure sensors
behave as with any launcher) and answers the worker's pid. The pid, its start time and the host
are kept in the run's `report_platform/run_worker` tag, as other launchers keep their container
or pod: run monitoring asks `check_run_worker_health` about it (a dead worker's run is failed,
then retried by run retries), and `terminate` signals it.

A run worker loads the code location without reading the registry, so the server never needs
reloading when reports change; a code deploy restarts the daemon, and with it the server. If the
server cannot be started or reached, or refuses to fork, the run is launched as a fresh
`dagster api execute_run` process (the same tag is kept), and the reason is logged and written to
the run's event log: a run is never lost to the fork server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_shared.serdes import serialize_value

from report_platform.processes import STATE, default_signal_state, stat_fields
from report_platform.scheduling.fork_server import (
    IO_TIMEOUT_SECONDS,
    MAX_ANSWER_BYTES,
    process_start_ticks,
    read_frame,
    write_frame,
)

TAG_RUN_WORKER = "report_platform/run_worker"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerHandle:
    """Which process runs a run: enough to find it again, and not mistake a reused pid for it."""

    pid: int
    start: int | None
    host: str
    via: str

    def to_tag(self) -> str:
        return json.dumps({"pid": self.pid, "start": self.start, "host": self.host, "via": self.via})

    @classmethod
    def of(cls, run: DagsterRun) -> WorkerHandle | None:
        try:
            value = json.loads(run.tags[TAG_RUN_WORKER])
            return cls(int(value["pid"]), value.get("start"), str(value["host"]), str(value.get("via", "")))
        except (KeyError, ValueError, TypeError):
            return None

    def is_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # a process of another user has the pid: not ours, unless the start time says so
        if self.start is None:
            return True
        start = process_start_ticks(self.pid)
        if start != self.start:
            return False  # gone, and the pid reused
        return _state(self.pid) not in ("Z", "X")


def _state(pid: int) -> str:
    fields = stat_fields(pid)
    return "X" if fields is None else fields[STATE]


class _ForkServer:
    """One fork server process, started for one code location."""

    def __init__(self, origin: Any, start_timeout: float) -> None:
        self.folder = tempfile.mkdtemp(prefix="report-platform-runs-")  # mode 0700: only we may connect
        self.socket_path = os.path.join(self.folder, "fork.sock")
        pointer = origin.code_pointer
        self.process = subprocess.Popen(
            [origin.executable_path, "-m", "report_platform.scheduling.fork_server", self.socket_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=getattr(pointer, "working_directory", None) or os.getcwd(),
            # The daemon's own environment is inherited, as a run worker's would be (its signal state
            # is not: the server resets that itself, fork_server.main).
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(serialize_value(origin).encode() + b"\n")
            self.process.stdin.flush()
            self._await_ready(self.process.stdout, start_timeout)
        except Exception:
            self.close()
            raise
        finally:
            self.process.stdout.close()

    def _await_ready(self, stdout: Any, timeout: float) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise TimeoutError(f"the fork server was not ready within {timeout:.0f} s")
        line = stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the fork server did not start (exit code {self.process.poll()})")

    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, value: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(IO_TIMEOUT_SECONDS)
            conn.connect(self.socket_path)
            write_frame(conn, value)
            return read_frame(conn, MAX_ANSWER_BYTES)

    def close(self, timeout: float = 5.0) -> None:
        """Stops the server (closing its stdin tells it to exit); workers it forked keep running."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class ForkRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a worker forked from a preloaded fork server on this machine."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        start_timeout_seconds: float = 120.0,
        terminate_grace_seconds: float = 30.0,
    ) -> None:
        self._inst_data = inst_data
        self.start_timeout_seconds = start_timeout_seconds
        self.terminate_grace_seconds = terminate_grace_seconds
        self._servers: dict[str, _ForkServer] = {}
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        from dagster import Field

        return {
            "start_timeout_seconds": Field(float, is_required=False, default_value=120.0),
            "terminate_grace_seconds": Field(float, is_required=False, default_value=30.0),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> ForkRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        from dagster._grpc.types import ExecuteRunArgs

        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no job code origin: it cannot be executed in a run worker")
        args = serialize_value(
            ExecuteRunArgs(
                job_origin=origin,
                run_id=run.run_id,
                instance_ref=self._instance.get_ref(),
                set_exit_code_on_failure=True,
            )
        )
        try:
            handle = self._fork(origin.repository_origin, args)
            message = f"Started run worker (pid {handle.pid}) forked from the preloaded fork server."
        except Exception as exc:  # noqa: BLE001 - any failure of the fork server means: start a fresh process
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("Run %s: the fork server failed (%s); starting a fresh run worker process", run.run_id, reason)
            handle = self._spawn(origin, args)
            message = (
                f"Started run worker (pid {handle.pid}) as a fresh `dagster api execute_run` process: "
                f"the fork server failed ({reason})."
            )
        self._instance.add_run_tags(run.run_id, {TAG_RUN_WORKER: handle.to_tag()})
        self._instance.report_engine_event(message, run, cls=self.__class__)

    def _fork(self, repository_origin: Any, args: str) -> WorkerHandle:
        key = serialize_value(repository_origin)
        with self._lock:
            server = self._servers.get(key)
            if server is None or not server.alive():
                if server is not None:
                    log.warning("The fork server (pid %s) has exited; starting a new one", server.process.pid)
                    server.close()
                server = self._servers[key] = _ForkServer(repository_origin, self.start_timeout_seconds)
            answer = server.request({"op": "launch", "args": args})
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return WorkerHandle(int(answer["pid"]), answer.get("start"), socket.gethostname(), "fork")

    def _spawn(self, origin: Any, args: str) -> WorkerHandle:
        process = subprocess.Popen(
            [origin.executable_path, "-m", "dagster", "api", "execute_run", args],
            stdin=subprocess.DEVNULL,
            cwd=getattr(origin.repository_origin.code_pointer, "working_directory", None) or os.getcwd(),
            start_new_session=True,
            # `dagster api execute_run` is not ours to change: it starts with the stop signals
            # obeyed, whatever the launching thread blocked or the daemon ignored.
            preexec_fn=default_signal_state,  # noqa: PLW1509 - only system calls, before exec
        )
        # Reaped here so that it leaves no zombie in this long-lived process.
        threading.Thread(target=process.wait, name=f"reap-run-worker-{process.pid}", daemon=True).start()
        return WorkerHandle(process.pid, process_start_ticks(process.pid), socket.gethostname(), "process")

    def fork_server_status(self) -> list[dict[str, Any]]:
        """What each running fork server holds (threads, descriptors, connections): for checks."""
        with self._lock:
            return [server.request({"op": "status"}) for server in self._servers.values() if server.alive()]

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        handle = WorkerHandle.of(run)
        if handle is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"run has no {TAG_RUN_WORKER} tag")
        if handle.host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"run worker is on host {handle.host}")
        if handle.is_alive():
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(handle.pid))
        current = self._instance.get_run_by_id(run.run_id) or run
        if current.is_finished:
            status = WorkerStatus.SUCCESS if current.is_success else WorkerStatus.FAILED
            return CheckRunHealthResult(status, run_worker_id=str(handle.pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker (pid {handle.pid}) is no longer running", run_worker_id=str(handle.pid)
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        handle = WorkerHandle.of(run)
        self._instance.report_run_canceling(run)
        if handle is None or handle.host != socket.gethostname() or not handle.is_alive():
            self._instance.report_engine_event(
                "No live run worker to send a termination request to.", run, cls=self.__class__
            )
            return False
        # SIGTERM, as `dagster api execute_run` maps it, interrupts the run (which is then CANCELED);
        # the whole group stops, so no child of the worker (gpg, for one) outlives it.
        os.killpg(handle.pid, signal.SIGTERM)
        timer = threading.Timer(self.terminate_grace_seconds, _kill_if_still_running, (handle,))
        timer.daemon = True
        timer.start()
        return True

    def dispose(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.close()
            self._servers.clear()


def _kill_if_still_running(handle: WorkerHandle) -> None:
    if handle.is_alive():
        log.warning("Run worker (pid %s) ignored the termination request; killing it", handle.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle.pid, signal.SIGKILL)


def wait_for_exit(handle: WorkerHandle, timeout: float) -> bool:
    """Whether the worker exited within `timeout` seconds (for tools and tests)."""
    deadline = time.monotonic() + timeout
    while handle.is_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
