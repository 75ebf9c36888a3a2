"""Report runs as the deployment runs them, for breaking them on purpose.

`open_platform` makes a data folder with a usage store, a registry, a Dagster instance configured
by the project's own `dagster.yaml` (queued runs, ForkRunLauncher, run monitoring, run retries)
and a workspace with the code location loaded in this process. Its `Platform` then takes each
run through the daemon's steps with Dagster's own functions: the run queue launches it
(`QueuedRunCoordinatorDaemon`), run monitoring fails a run whose worker died
(`execute_run_monitoring_iteration`), the failure sensor records it in the audit log, and
`consume_new_runs_for_automatic_reexecution` launches the retry, which the queue launches again.

Used by `report_platform_tests/faults/` and by `benchmarks/process_faults.py`; nothing here
changes what a run does. The one setting a run gets that production does not is a short delivery
lease (`LEASE_SECONDS`, in run config), so that a retry takes over a dead worker's claim after
seconds instead of the default two minutes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import consume_new_runs_for_automatic_reexecution
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from report_platform.delivery.ledger import DeliveryLedger, LedgerRow, deliveries
from report_platform.domain.tenancy import DEMO_TENANCY
from report_platform.ingest.load import SourceSettings, ingest_day
from report_platform.registry.service import ReportService
from report_platform.registry.views import RunRecord
from report_platform.reports.archive import MANIFEST, ArchivedFile, verify
from report_platform.scheduling.exports import (
    TAG_REPORT,
    TAG_SCHEDULED,
    TAG_TRIGGER,
    ensure_report_partition,
    partition_key,
)
from report_platform.scheduling.fork_launcher import WorkerHandle, wait_for_exit
from report_platform.settings import Home
from report_platform.store.duck import ensure_catalog
from report_platform_tests.registry_setup import fresh_registry
from report_platform_tests.samples import sms_definition
from report_platform_tests.servers.variables import environment

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "report_platform"  # as workspace.yaml names it
REPORT_TYPE = "sms_usage"
JOB = f"{REPORT_TYPE}_report_job"
OWNER = "owner@acme.example"
USER = "user@acme.example"
NEW_YORK = ZoneInfo("America/New_York")
# The big reports cover 2026-03-02..08 (Monday to Sunday); a small one the Sunday before.
SMALL_DAY = date(2026, 3, 1)
WEEK = tuple(date(2026, 3, day) for day in range(2, 9))
SMALL_AT = datetime(2026, 3, 2, 6, 0, tzinfo=NEW_YORK)  # previous_day: 2026-03-01
BIG_AT = datetime(2026, 3, 9, 6, 0, tzinfo=NEW_YORK)  # previous_day: 2026-03-08; previous_week: 03-02..08
SMALL_ROWS_PER_DAY = 400
LEASE_SECONDS = 3.0
RUN_TIMEOUT_SECONDS = 300.0
ENV_SFTP_KEY = "FAULTS_SFTP_KEY"
ENV_AWS_KEY_ID = "FAULTS_AWS_KEY_ID"
ENV_AWS_SECRET = "FAULTS_AWS_SECRET"
SFTP, S3 = "partner-sftp", "partner-s3"
LOG = logging.getLogger("faults")


@dataclass(frozen=True)
class Servers:
    """Where the platform's connections point: the relay, sshd and S3 (often a proxy in front of moto)."""

    smtp_port: int
    sftp_host: str
    sftp_port: int
    sftp_user: str
    sftp_host_key: str
    sftp_client_key: str
    s3_endpoint: str
    s3_key_id: str
    s3_secret: str


@dataclass(frozen=True)
class Store:
    """What the usage store holds: 400 SMS a day on SMALL_DAY, `rows_per_day` on each of `big_days`."""

    rows_per_day: int = 400_000
    big_days: tuple[date, ...] = (WEEK[-1],)


def _connections(servers: Servers) -> dict[str, Any]:
    return {
        "smtp": {
            "default": {
                "host": "127.0.0.1",
                "port": servers.smtp_port,
                "security": "none",
                "from_address": "reports@acme.example",
                "organizations": ["acme"],
            }
        },
        "sftp": {
            SFTP: {
                "host": servers.sftp_host,
                "port": servers.sftp_port,
                "username": servers.sftp_user,
                "private_key_env": ENV_SFTP_KEY,
                "host_key": servers.sftp_host_key,
                "organizations": ["acme"],
            }
        },
        "s3": {
            S3: {
                "region": "us-east-1",
                "endpoint_url": servers.s3_endpoint,
                "access_key_id_env": ENV_AWS_KEY_ID,
                "secret_access_key_env": ENV_AWS_SECRET,
                "organizations": ["acme"],
            }
        },
    }


def make_store(home: Home, store: Store) -> None:
    """Ingest the synthetic SMS usage the reports read, with the project's own ingestion."""
    ingest_day(
        home.store, None, "sms_messages", SMALL_DAY, DEMO_TENANCY, SourceSettings(rows_per_day=SMALL_ROWS_PER_DAY)
    )
    for day in store.big_days:
        ingest_day(home.store, None, "sms_messages", day, DEMO_TENANCY, SourceSettings(rows_per_day=store.rows_per_day))
    ensure_catalog(home.store, home.catalog)


def instance_yaml() -> str:
    """The project's dagster.yaml, as `make run` installs it."""
    return (ROOT / "dagster.yaml").read_text()


@contextlib.contextmanager
def open_platform(
    workdir: Path,
    servers: Servers,
    store: Store | None = None,
    *,
    home: Home | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[Platform]:
    """A platform in `workdir` whose connections reach `servers`; everything is stopped after.

    `home` gives a data folder made elsewhere (e.g. on a small disk); its store is filled unless
    it already holds one. `settings` are more `REPORT_PLATFORM_*` variables for every process.
    """
    _forget_definitions()
    home = (home or Home(workdir / "home")).ensure()
    if not any(home.store.glob("sms_messages/day=*")):
        make_store(home, store or Store())
    home.connections.write_text(yaml.safe_dump(_connections(servers)))
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(instance_yaml())
    env = {
        "REPORT_PLATFORM_HOME": str(home.root),
        "DAGSTER_HOME": str(dagster_home),
        # No webserver: nothing tries to reload a code location.
        "REPORT_PLATFORM_DAGSTER_URL": "http://127.0.0.1:9",
        ENV_SFTP_KEY: servers.sftp_client_key,
        ENV_AWS_KEY_ID: servers.s3_key_id,
        ENV_AWS_SECRET: servers.s3_secret,
        **(settings or {}),
    }
    with (
        environment(env),
        fresh_registry(home, [(OWNER, "acme", "owner"), (USER, "acme", "user")]) as service,
        dg.DagsterInstance.get() as instance,
    ):
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                executable_path=sys.executable, module_name="report_platform.definitions", working_directory=str(ROOT)
            ),
            location_name=LOCATION,
        )
        try:
            with (
                WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace,
                QueuedRunCoordinatorDaemon(interval_seconds=1) as queue,
            ):
                yield Platform(home, instance, workspace, queue, service)
        finally:
            _forget_definitions()


def _forget_definitions() -> None:
    """Drop the code location this process loaded for another platform: its resources name that
    platform's folders and settings, and Dagster keeps the last job definition per process."""
    from report_platform import definitions

    definitions.forget_loaded()
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


@dataclass
class Platform:
    home: Home
    instance: dg.DagsterInstance
    workspace: WorkspaceProcessContext
    queue: QueuedRunCoordinatorDaemon
    service: ReportService

    # --- reports -----------------------------------------------------------------------------

    def create_report(self, name: str, destination: dict[str, Any], period: str = "previous_day") -> str:
        definition = sms_definition(
            name=name,
            destination=destination,
            period={"kind": period},
            filename_pattern="{{ReportName}}_{{PeriodStart}}.csv",
        )
        return self.service.create_report(OWNER, definition)

    # --- runs, as the daemon takes them ------------------------------------------------------

    def launch(self, report_id: str, scheduled_at: datetime) -> str:
        """Create the report's run as its schedule tick does, queue it, and let the queue launch it."""
        ensure_report_partition(self.instance, REPORT_TYPE, report_id)
        key = partition_key(report_id, scheduled_at.date())
        tags = {
            TAG_REPORT: report_id,
            TAG_SCHEDULED: scheduled_at.isoformat(),
            TAG_TRIGGER: "schedule",
            "dagster/partition": str(key),
            **{f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()},
        }
        run_config = {"resources": {"delivery_io_manager": {"config": {"lease_seconds": LEASE_SECONDS}}}}
        return self.launch_job(JOB, tags, run_config)

    def launch_job(
        self,
        job: str,
        tags: dict[str, str],
        run_config: dict[str, Any] | None = None,
        assets: list[str] | None = None,
    ) -> str:
        """Create a run of `job` (of only its `assets`, if given) as the scheduler does
        (`_create_scheduler_run`), submit it to the instance's run coordinator and let one pass of
        the run queue launch it."""
        run_config = run_config or {}
        selection = frozenset(dg.AssetKey(name) for name in assets) if assets else None
        request = self.workspace.create_request_context()
        location = request.get_code_location(LOCATION)
        (repository,) = location.get_repositories().values()
        remote_job = location.get_job(
            JobSubsetSelector(
                location_name=LOCATION,
                repository_name=repository.name,
                job_name=job,
                op_selection=None,
                asset_selection=list(selection) if selection else None,
            )
        )
        plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None, known_state=None)
        run = self.instance.create_run(
            job_name=job,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=None,
            op_selection=remote_job.op_selection,
            status=dg.DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.run_tags, **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=selection,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        self.instance.submit_run(run.run_id, request)
        self.dequeue()
        return run.run_id

    def dequeue(self) -> None:
        """One pass of the run queue's daemon: queued runs are launched (ForkRunLauncher)."""
        for _ in self.queue.run_iteration(self.workspace):
            pass

    def run(self, run_id: str) -> dg.DagsterRun:
        run = self.instance.get_run_by_id(run_id)
        assert run is not None, run_id
        return run

    def worker(self, run_id: str) -> WorkerHandle:
        handle = WorkerHandle.of(self.run(run_id))
        assert handle is not None, f"run {run_id} has no run worker"
        return handle

    def kill(self, run_id: str) -> WorkerHandle:
        """SIGKILL the run's worker and wait until it is gone."""
        handle = self.worker(run_id)
        os.kill(handle.pid, signal.SIGKILL)
        assert wait_for_exit(handle, 30), f"run worker {handle.pid} did not exit after SIGKILL"
        return handle

    def monitor(self) -> None:
        """One pass of run monitoring: a started run whose worker is gone is failed."""
        for _ in execute_run_monitoring_iteration(self.workspace, LOG):
            pass

    def record_failure(self, run_id: str) -> None:
        """The failure sensor on this failed run, as the daemon evaluates it."""
        from report_platform_tests.scheduling.conftest import evaluate_failure_sensor

        evaluate_failure_sensor(self.instance, run_id)

    def retry(self, run_id: str) -> str | None:
        """Dagster's run retries on this failed run; the retry's id (launched), or None."""
        records = self.instance.get_run_records(dg.RunsFilter(run_ids=[run_id]))
        for _ in consume_new_runs_for_automatic_reexecution(self.workspace, records, LOG):
            pass
        retried = self.run(run_id).tags.get("dagster/auto_retry_run_id")
        if retried is not None:
            self.dequeue()
        return retried

    def finish(self, run_id: str, timeout: float = RUN_TIMEOUT_SECONDS) -> dg.DagsterRun:
        """Wait for the run to end; run monitoring fails it if its worker is gone."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run.is_finished:
                return run
            handle = WorkerHandle.of(run)
            if run.status == dg.DagsterRunStatus.STARTED and handle is not None and not handle.is_alive():
                self.monitor()
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run.status.value} after {timeout:.0f} s")
            time.sleep(0.1)

    def settle(self, run_id: str) -> list[dg.DagsterRun]:
        """Follow a run and its retries to the end: each failure is recorded and retried while
        Dagster's run retries say so. Returns every run, first to last."""
        runs = []
        current: str | None = run_id
        while current is not None:
            run = self.finish(current)
            runs.append(run)
            if run.status == dg.DagsterRunStatus.SUCCESS:
                break
            self.record_failure(current)
            current = self.retry(current)
            assert len(runs) <= 10, "more retries than any configuration allows"
        return runs

    def wait_started(self, run_id: str, timeout: float = 120.0) -> WorkerHandle:
        deadline = time.monotonic() + timeout
        while self.run(run_id).status != dg.DagsterRunStatus.STARTED:
            assert not self.run(run_id).is_finished, f"run {run_id} ended: {self.run(run_id).status}"
            assert time.monotonic() < deadline, f"run {run_id} did not start within {timeout:.0f} s"
            time.sleep(0.02)
        return self.worker(run_id)

    # --- what the platform recorded ------------------------------------------------------------

    def audit(self, report_id: str) -> list[RunRecord]:
        """The report's runs in the audit log, oldest first."""
        return list(reversed(self.service.audit_log(USER, report_id).runs))

    def ledger(self, report_id: str) -> list[LedgerRow]:
        rows = DeliveryLedger.open(self.home.registry_url).rows()
        return [row for row in rows if row.scope.startswith(f"{report_id}/")]

    def archived(self, report_id: str) -> list[Path]:
        """Files under final names in the report's archive folders (not `.tmp` or hidden ones)."""
        folder = self.home.archive / report_id
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix == ".csv")

    def temporary_builds(self) -> list[Path]:
        """Files in the data folder's temporary build folders (a build in progress, or a killed one's)."""
        folders = [*self.home.root.glob("tmp*"), *self.home.root.glob(".build-*")]
        return sorted(p for folder in folders for p in folder.glob("*") if p.is_file())

    def failure_text(self, run_id: str) -> str:
        """Every failure message Dagster recorded for the run (step and run failures)."""
        kinds = (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
        return "\n".join(
            (entry.dagster_event.event_specific_data.error.message if _has_error(entry) else entry.message) or ""
            for kind in kinds
            for entry in self.instance.all_logs(run_id, of_type=kind)
        )


def _has_error(entry: Any) -> bool:
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    return getattr(data, "error", None) is not None


class RegistryLock:
    """Holds the registry database's write lock from this process: every writer (the ledger's
    confirmation, a lease renewal) waits, readers do not (WAL). A worker that has sent a file and
    waits here is a worker between the send and its confirmation."""

    def __init__(self, home: Home) -> None:
        url = home.registry_url
        assert url.startswith("sqlite:///"), url
        self._path = url.removeprefix("sqlite:///")
        self._conn: sqlite3.Connection | None = None
        self.taken = threading.Event()

    def acquire(self) -> None:
        if self._conn is not None:
            return
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        self._conn = conn
        self.taken.set()

    def ledger_states(self, report_id: str) -> list[str]:
        """The report's ledger rows' states, read through the lock's own connection (the platform's
        engine begins every transaction with BEGIN IMMEDIATE, so it would wait for this lock)."""
        assert self._conn is not None, "only while the lock is held"
        rows = self._conn.execute(
            f"SELECT state FROM {deliveries.name} WHERE scope LIKE ? ORDER BY id", (f"{report_id}/%",)
        )
        return [state for (state,) in rows]

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RegistryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    """Call `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Outcome:
    """What one repetition of a fault left: at the server, in the ledger, the audit log and Dagster."""

    fault: str
    runs: list[str] = field(default_factory=list)  # Dagster run statuses, first to last
    copies: dict[str, int] = field(default_factory=dict)  # where -> complete copies with the right bytes
    leftovers: dict[str, int] = field(default_factory=dict)  # where -> partial or unfinished pieces
    ledger: list[str] = field(default_factory=list)
    audit: list[tuple[str, int, str]] = field(default_factory=list)  # (status, attempt, error)
    evidence: dict[str, bool] = field(default_factory=dict)  # the fault was produced as intended
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def final(self) -> str:
        return self.runs[-1] if self.runs else "none"


def record(p: Platform, report_id: str, runs: list[dg.DagsterRun], outcome: Outcome) -> Outcome:
    """Fill in what Dagster, the ledger and the audit log say about the report's runs, and check
    the archive: every file under a final name there has the bytes its manifest records."""
    outcome.runs = [run.status.value for run in runs]
    rows = p.ledger(report_id)
    outcome.ledger = [row.state for row in rows]
    outcome.notes["ledger attempts"] = [row.attempt for row in rows]
    audit = p.audit(report_id)
    outcome.audit = [(row.status, row.attempt, row.error or "") for row in audit]
    outcome.notes["receipts"] = [receipt for row in audit for receipt in row.delivered_to]
    archived = p.archived(report_id)
    intact = [path for path in archived if (found := _archived_at(path)) is not None and verify(found)]
    outcome.leftovers["archived files not matching their manifest"] = len(archived) - len(intact)
    outcome.notes["archived files"] = len(archived)
    return outcome


def _archived_at(path: Path) -> ArchivedFile | None:
    try:
        manifest = json.loads((path.parent / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("file") != path.name:
        return None
    return ArchivedFile(
        path=path,
        sha256=manifest["sha256"],
        size=int(manifest["bytes"]),
        report_id=manifest["report_id"],
        scheduled_at=datetime.fromisoformat(manifest["scheduled_at"]),
        built_at=datetime.fromisoformat(manifest["built_at"]),
    )
