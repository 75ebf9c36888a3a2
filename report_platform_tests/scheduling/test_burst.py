"""Thirty reports due in the same minute, run on Dagster's own machinery (correctness only).

Each report's schedule is evaluated for the same tick, as the daemon does; each run request
becomes a Dagster run of the report's job, executed by `execute_run`, the function a run worker
runs (one of them in a real `dagster api execute_run` process, as every run launcher starts it).
Every report must come out with its own run, its own materialisation, its own audit row and
exactly one e-mail; evaluating the tick again (a daemon restart) asks for the same run keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._grpc.types import ExecuteRunArgs
from dagster_shared.serdes import serialize_value

from report_platform.app import registry_service
from report_platform.definitions import build_definitions
from report_platform.resources import deployment_resources
from report_platform.scheduling.exports import TAG_REPORT
from report_platform.scheduling.schedules import report_schedules
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import OWNER, USER, sms_definition

ROOT = Path(__file__).resolve().parents[2]
REPORTS = 30
TICK = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))


def _requests(instance: dg.DagsterInstance) -> dict[str, dg.RunRequest]:
    """Every report schedule's decision for the 06:00 tick, evaluated as the daemon does."""
    schedules, revision = report_schedules(registry_service(Home.from_env()))
    repository = build_definitions(schedules, revision).get_repository_def()
    requests: dict[str, dg.RunRequest] = {}
    for schedule in schedules:
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=TICK,
            repository_def=repository,
            resources=deployment_resources(),
        ) as context:
            (request,) = schedule.evaluate_tick(context).run_requests or []
        requests[request.tags[TAG_REPORT]] = request
    return requests


def _create_run(instance: dg.DagsterInstance, recon_job, request: dg.RunRequest) -> dg.DagsterRun:  # noqa: ANN001
    key = request.partition_key
    assert isinstance(key, dg.MultiPartitionKey)
    tags = {
        **request.tags,
        "dagster/run_key": request.run_key,
        "dagster/partition": str(key),
        **{f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()},
    }
    return instance.create_run_for_job(
        job_def=recon_job.get_definition(), run_config={}, tags=tags, job_code_origin=recon_job.get_python_origin()
    )


def test_thirty_reports_due_at_the_same_minute_are_each_delivered_once_with_their_own_run(platform, smtp, instance):
    service = registry_service(Home.from_env())
    ids = {service.create_report(OWNER, sms_definition(name=f"Burst {i:02d}")) for i in range(REPORTS)}
    requests = _requests(instance)
    assert set(requests) == ids
    assert len({r.run_key for r in requests.values()}) == REPORTS
    # A daemon restarted mid-tick evaluates the tick again: the same run keys, so no second run.
    assert {k: r.run_key for k, r in _requests(instance).items()} == {k: r.run_key for k, r in requests.items()}

    recon_job = ReconstructableRepository.for_module(
        "report_platform.definitions", "report_platform_location", working_directory=str(ROOT)
    ).get_reconstructable_job("sms_usage_report_job")
    runs = {report_id: _create_run(instance, recon_job, request) for report_id, request in requests.items()}
    first, *rest = sorted(runs)
    # One run in a real run worker process, as the run launchers start it ...
    args = ExecuteRunArgs(recon_job.get_python_origin(), runs[first].run_id, instance.get_ref(), True)
    worker = subprocess.run(
        [sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    # ... the others through the same function in this process (a process start each is slow).
    for report_id in rest:
        execute_run(recon_job, runs[report_id], instance)

    for report_id, run in runs.items():
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
        (record,) = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        materialization = record.event_log_entry.asset_materialization
        assert materialization.metadata["report_id"].value == report_id
        assert materialization.partition == f"2026-03-09|{report_id}"
        (audit,) = service.audit_log(USER, report_id).runs
        assert audit.status == "SUCCESS" and audit.dagster_run_id == run.run_id and audit.trigger == "schedule"
        assert audit.sha256 == materialization.metadata["sha256"].value
    subjects = sorted(mail.message["Subject"] for mail in smtp.received)
    assert subjects == sorted(f"Burst {i:02d} - 2026-03-09" for i in range(REPORTS))
