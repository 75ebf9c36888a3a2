"""Report runs launched by ForkRunLauncher on a real Dagster instance (SQLite, temporary home).

Runs go through `instance.launch_run`, as the daemon's run queue launches them: the launcher hands
each to its fork server, which forks a real run worker executing `dagster api execute_run`'s body.
A run worker that dies is reported failed to run monitoring, `terminate` stops a running worker, a
fork server that dies is replaced, and when no fork server can start the run is still executed in
a fresh process. The fork server holds no thread, database connection or stray descriptor.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher.base import WorkerStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from report_platform.app import registry_service
from report_platform.scheduling.exports import TAG_REPORT, TAG_SCHEDULED, TAG_TRIGGER, partition_key
from report_platform.scheduling.fork_launcher import ForkRunLauncher, WorkerHandle, wait_for_exit
from report_platform.scheduling.fork_server import PRELOADED, registry_driver
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))
LAUNCHER = {"module": "report_platform.scheduling.fork_launcher", "class": "ForkRunLauncher"}


@pytest.fixture
def forking(platform: Home) -> Iterator[dg.DagsterInstance]:
    """The test's Dagster instance, configured with the fork launcher as dagster.yaml names it."""
    config = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    config.write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "run_launcher": LAUNCHER}))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_launcher, ForkRunLauncher)
        yield instance


@pytest.fixture
def silent_smtp(platform: Home) -> Iterator[int]:
    """An SMTP port that accepts the connection and never greets: a delivery waits there mid-run."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _use_smtp(home: Home, port: int) -> None:
    connection = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "reports@acme.example",
        "organizations": ["acme"],
    }
    home.connections.write_text(yaml.safe_dump({"smtp": {"default": connection}}))


def _launch(instance: dg.DagsterInstance, report_id: str) -> str:
    recon_job = ReconstructableRepository.for_module(
        "report_platform.definitions", "report_platform_location", working_directory=str(ROOT)
    ).get_reconstructable_job("sms_usage_report_job")
    from report_platform.scheduling.exports import ensure_report_partition

    ensure_report_partition(instance, "sms_usage", report_id)
    key = partition_key(report_id, SCHEDULED.date())
    tags = {
        TAG_REPORT: report_id,
        TAG_SCHEDULED: SCHEDULED.isoformat(),
        TAG_TRIGGER: "schedule",
        "dagster/partition": str(key),
        **{f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()},
    }
    run = instance.create_run_for_job(
        job_def=recon_job.get_definition(), run_config={}, tags=tags, job_code_origin=recon_job.get_python_origin()
    )
    instance.launch_run(run.run_id, workspace=None)  # as the run queue's daemon launches it
    return run.run_id


def _wait(instance: dg.DagsterInstance, run_id: str, until, timeout: float = 120.0) -> dg.DagsterRun:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if until(run) or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def _finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    return _wait(instance, run_id, lambda run: run.is_finished)


def _assert_delivered(instance: dg.DagsterInstance, run_id: str, report_id: str) -> None:
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    (record,) = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    materialization = record.event_log_entry.asset_materialization
    assert materialization.metadata["report_id"].value == report_id
    (audit,) = registry_service(Home.from_env()).audit_log(USER, report_id).runs
    assert audit.status == "SUCCESS" and audit.dagster_run_id == run_id
    assert audit.sha256 == materialization.metadata["sha256"].value


def _assert_fork_safe(launcher: ForkRunLauncher) -> None:
    (status,) = launcher.fork_server_status()
    assert status["threads"] == ["MainThread"]
    assert status["objects"] == {}, "the fork server holds a connection or socket a worker would share"
    assert status["problems"] == []
    # An S3 run does not import boto3 itself, nor a run the registry's database driver.
    assert status["preloaded"] == [*PRELOADED, registry_driver()]
    # Its standard streams, its listening socket and the connection asking: nothing else.
    extra = {fd: target for fd, target in status["descriptors"].items() if int(fd) > 2}
    assert len(extra) == 2 and all(target.startswith("socket:") for target in extra.values()), extra


def test_runs_are_forked_from_the_fork_server_and_deliver_with_their_audit_row(forking, smtp):
    service = registry_service(Home.from_env())
    reports = [service.create_report(OWNER, sms_definition(name=f"Forked {i}")) for i in range(2)]
    runs = {report_id: _launch(forking, report_id) for report_id in reports}
    for report_id, run_id in runs.items():
        assert _finished(forking, run_id).status == dg.DagsterRunStatus.SUCCESS
        _assert_delivered(forking, run_id, report_id)
        handle = WorkerHandle.of(forking.get_run_by_id(run_id))
        assert handle is not None and handle.via == "fork" and handle.pid != os.getpid()
        assert forking.run_launcher.check_run_worker_health(forking.get_run_by_id(run_id)).status in (
            WorkerStatus.SUCCESS,
            WorkerStatus.RUNNING,  # the worker may still be closing its instance after the run ended
        )
    assert sorted(mail.message["Subject"] for mail in smtp.received) == [
        "Forked 0 - 2026-03-09",
        "Forked 1 - 2026-03-09",
    ]
    _assert_fork_safe(forking.run_launcher)


def test_a_killed_worker_fails_its_run_and_terminate_stops_a_running_one(forking, silent_smtp, platform):
    _use_smtp(platform, silent_smtp)
    service = registry_service(Home.from_env())
    killed, stopped = (service.create_report(OWNER, sms_definition(name=name)) for name in ("Killed", "Stopped"))
    killed_run, stopped_run = _launch(forking, killed), _launch(forking, stopped)
    launcher = forking.run_launcher
    for run_id in (killed_run, stopped_run):
        run = _wait(forking, run_id, lambda r: r.status != dg.DagsterRunStatus.STARTING)
        assert run.status == dg.DagsterRunStatus.STARTED  # waiting for the silent SMTP server's greeting
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING

    run = forking.get_run_by_id(killed_run)
    handle = WorkerHandle.of(run)
    os.kill(handle.pid, signal.SIGKILL)
    assert wait_for_exit(handle, 10)
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED and f"pid {handle.pid}" in health.msg
    # Run monitoring, as the daemon runs it, then fails the run (and run retries would retry it).
    record = forking.get_run_records(dg.RunsFilter(run_ids=[killed_run]))[0]
    monitor_started_run(forking, None, record, logging.getLogger("test"))
    assert forking.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE

    handle = WorkerHandle.of(forking.get_run_by_id(stopped_run))
    assert launcher.terminate(stopped_run) is True
    assert wait_for_exit(handle, 30)
    assert _finished(forking, stopped_run).status == dg.DagsterRunStatus.CANCELED
    assert launcher.terminate(stopped_run) is False  # already finished


@pytest.mark.parametrize("via", ["fork", "process"])
def test_terminate_stops_a_run_launched_from_a_thread_that_blocked_or_ignored_the_stop_signals(
    forking, silent_smtp, platform, via
):
    """Blocked and ignored signals survive fork and exec. A launcher called from a thread that
    blocks SIGTERM (threads some libraries start do), or in a daemon started with SIGINT ignored
    (Dagster maps SIGTERM to SIGINT's handler), must not hand that on to its fork server and run
    workers: they would ignore `terminate` until killed, and the run would stay CANCELING."""
    _use_smtp(platform, silent_smtp)
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition(name="Stopped"))
    launcher = forking.run_launcher
    if via == "process":
        launcher.start_timeout_seconds = 0.0  # no fork server: a fresh `dagster api execute_run`
    launcher.terminate_grace_seconds = 120.0  # no SIGKILL within the test: the worker must obey SIGTERM
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_id = _launch(forking, report_id)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
    run = _wait(forking, run_id, lambda r: r.status != dg.DagsterRunStatus.STARTING)
    assert run.status == dg.DagsterRunStatus.STARTED  # waiting for the silent SMTP server's greeting
    handle = WorkerHandle.of(run)
    assert handle is not None and handle.via == via

    assert launcher.terminate(run_id) is True
    assert wait_for_exit(handle, 30), "the run worker did not stop on SIGTERM"
    assert _finished(forking, run_id).status == dg.DagsterRunStatus.CANCELED


def test_a_dead_fork_server_is_replaced_and_the_next_run_succeeds(forking, smtp):
    service = registry_service(Home.from_env())
    first, second = (service.create_report(OWNER, sms_definition(name=name)) for name in ("First", "Second"))
    assert _finished(forking, _launch(forking, first)).status == dg.DagsterRunStatus.SUCCESS
    (status,) = forking.run_launcher.fork_server_status()
    os.kill(status["pid"], signal.SIGKILL)

    run_id = _launch(forking, second)
    assert _finished(forking, run_id).status == dg.DagsterRunStatus.SUCCESS
    _assert_delivered(forking, run_id, second)
    assert WorkerHandle.of(forking.get_run_by_id(run_id)).via == "fork"
    (restarted,) = forking.run_launcher.fork_server_status()
    assert restarted["pid"] != status["pid"]
    _assert_fork_safe(forking.run_launcher)


def test_a_run_is_executed_in_a_fresh_process_when_no_fork_server_starts(forking, smtp):
    report_id = registry_service(Home.from_env()).create_report(OWNER, sms_definition(name="Fallback"))
    forking.run_launcher.start_timeout_seconds = 0.0  # no fork server can be ready in no time
    run_id = _launch(forking, report_id)
    assert _finished(forking, run_id).status == dg.DagsterRunStatus.SUCCESS
    _assert_delivered(forking, run_id, report_id)
    assert WorkerHandle.of(forking.get_run_by_id(run_id)).via == "process"
    messages = [e.message for e in forking.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    assert any("fresh `dagster api execute_run` process" in m and "TimeoutError" in m for m in messages)


def test_the_registry_driver_preloaded_is_the_one_its_url_names(monkeypatch):
    monkeypatch.setenv("REPORT_PLATFORM_REGISTRY_URL", "postgresql://reports@127.0.0.1:5432/registry")
    assert registry_driver() == "psycopg"  # what SQLAlchemy 2.1 opens a bare postgresql:// URL with
    monkeypatch.setenv("REPORT_PLATFORM_REGISTRY_URL", "sqlite:////tmp/registry.db")
    assert registry_driver() == "sqlite3.dbapi2"
