"""Thirty reports due in the same minute, run on Dagster's own machinery (correctness only).

The thirty share a timing, so they share a schedule, whose tick asks for one run of
`report_batch_job` per batch of due reports; each run is executed by `execute_run`, the function
a run worker runs (one of them in a real `dagster api execute_run` process, as every run launcher
starts it). Every report must come out with its own materialisation and asset check, its own
audit row and exactly one e-mail; evaluating the tick again (a daemon restart) asks for the same
run keys. A report that fails in a batch stops none of the others and runs again on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._grpc.types import ExecuteRunArgs
from dagster_shared.serdes import serialize_value

from report_platform import definitions
from report_platform.app import registry_service
from report_platform.definitions import build_definitions
from report_platform.resources import deployment_resources
from report_platform.scheduling.batches import BATCH_JOB, report_batch_failure_sensor
from report_platform.scheduling.exports import TAG_REPORT
from report_platform.scheduling.schedules import report_schedules
from report_platform.settings import Home
from report_platform_tests.scheduling.conftest import (
    OWNER,
    USER,
    evaluate_failure_sensor,
    failing_sftp_report,
    sms_definition,
)

ROOT = Path(__file__).resolve().parents[2]
REPORTS = 30
TICK = datetime(2026, 3, 9, 6, 0, tzinfo=ZoneInfo("America/New_York"))


@pytest.fixture(autouse=True)
def _fresh_location() -> Iterator[None]:
    """Each test's platform has its own folders and registry: the code location this process
    loaded for another test (and Dagster's last job per process) names the other's."""

    def forget() -> None:
        definitions.forget_loaded()
        ReconstructableJob.get_definition.cache_clear()
        ReconstructableJob.get_repository_definition.cache_clear()

    forget()
    yield
    forget()


def _requests(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """Every schedule's decision for the 06:00 tick, evaluated as the daemon does."""
    schedules, revision = report_schedules(registry_service(Home.from_env()))
    repository = build_definitions(schedules, revision).get_repository_def()
    requests: list[dg.RunRequest] = []
    for schedule in schedules:
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=TICK,
            repository_def=repository,
            resources=deployment_resources(),
        ) as context:
            requests += schedule.evaluate_tick(context).run_requests or []
    return requests


def _batch_job():  # noqa: ANN202
    return ReconstructableRepository.for_module(
        "report_platform.definitions", "report_platform_location", working_directory=str(ROOT)
    ).get_reconstructable_job(BATCH_JOB)


def _create_run(instance: dg.DagsterInstance, recon_job, request: dg.RunRequest) -> dg.DagsterRun:  # noqa: ANN001
    tags = {**request.tags, "dagster/run_key": request.run_key}
    key = request.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        tags["dagster/partition"] = str(key)
        tags.update({f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()})
    return instance.create_run_for_job(
        job_def=recon_job.get_definition(),
        run_config=request.run_config,
        tags=tags,
        job_code_origin=recon_job.get_python_origin(),
    )


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetMaterialization]:
    """The report id -> its materialisation, of the run."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    found = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        report_id = materialization.metadata["report_id"].value
        assert report_id not in found, f"{report_id} materialised twice in run {run_id}"
        found[report_id] = materialization
    return found


def test_thirty_reports_due_at_the_same_minute_are_each_delivered_once_in_batches(platform, smtp, instance):
    service = registry_service(Home.from_env())
    ids = {service.create_report(OWNER, sms_definition(name=f"Burst {i:02d}")) for i in range(REPORTS)}
    requests = _requests(instance)
    assert len(requests) == 2  # 30 due reports, batches of at most BATCH_SIZE (20), of even sizes
    members = [members_of_request(r) for r in requests]
    assert sorted(len(m) for m in members) == [15, 15]
    assert {i for m in members for i in m} == ids
    assert all(r.job_name == BATCH_JOB and r.tags["report_platform/scheduled_at"] == TICK.isoformat() for r in requests)
    # A daemon restarted mid-tick evaluates the tick again: the same run keys, so no second run.
    again = _requests(instance)
    assert [(r.run_key, members_of_request(r)) for r in again] == [
        (r.run_key, m) for r, m in zip(requests, members, strict=True)
    ]

    recon_job = _batch_job()
    runs = [_create_run(instance, recon_job, request) for request in requests]
    # One run in a real run worker process, as the run launchers start it ...
    args = ExecuteRunArgs(recon_job.get_python_origin(), runs[0].run_id, instance.get_ref(), True)
    worker = subprocess.run(
        [sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    # ... the other through the same function in this process.
    execute_run(recon_job, runs[1], instance)

    for run, expected in zip(runs, members, strict=True):
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
        materializations = _materializations(instance, run.run_id)
        assert sorted(materializations) == expected
        checks = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        checked = {r.event_log_entry.dagster_event.event_specific_data.partition for r in checks}
        assert checked == {f"2026-03-09|{report_id}" for report_id in expected}
        for report_id, materialization in materializations.items():
            assert materialization.asset_key == dg.AssetKey("sms_usage_export")
            assert materialization.partition == f"2026-03-09|{report_id}"
            (audit,) = service.audit_log(USER, report_id).runs
            assert audit.status == "SUCCESS" and audit.dagster_run_id == run.run_id and audit.trigger == "schedule"
            assert audit.sha256 == materialization.metadata["sha256"].value
    subjects = sorted(mail.message["Subject"] for mail in smtp.received)
    assert subjects == sorted(f"Burst {i:02d} - 2026-03-09" for i in range(REPORTS))


def test_a_report_that_fails_in_a_batch_stops_no_other_and_runs_again_on_its_own(platform, smtp, instance):
    service = registry_service(Home.from_env())
    good = {service.create_report(OWNER, sms_definition(name=f"Good {i}")) for i in range(3)}
    bad = failing_sftp_report(platform)
    (request,) = _requests(instance)
    assert set(members_of_request(request)) == {*good, bad}
    run = _create_run(instance, _batch_job(), request)
    execute_run(_batch_job(), run, instance, raise_on_error=False)

    finished = instance.get_run_by_id(run.run_id)
    assert finished.status == dg.DagsterRunStatus.FAILURE  # loud: it names the report that failed
    assert sorted(_materializations(instance, run.run_id)) == sorted(good)
    assert sorted(m.message["Subject"] for m in smtp.received) == [f"Good {i} - 2026-03-09" for i in range(3)]
    (failed,) = service.audit_log(USER, bad).runs
    assert failed.status == "FAILED" and failed.attempt == 1 and failed.dagster_run_id == run.run_id

    # The failure sensor asks for the failed report's own run, once (its run key).
    (rerun,) = evaluate_failure_sensor(instance, run.run_id, report_batch_failure_sensor)
    assert rerun.run_key == f"{bad}@2026-03-09T10:00:00+00:00"
    assert rerun.job_name == "sms_usage_report_job"
    assert rerun.partition_key == f"2026-03-09|{bad}"
    assert rerun.tags[TAG_REPORT] == bad

    own_job = ReconstructableRepository.for_module(
        "report_platform.definitions", "report_platform_location", working_directory=str(ROOT)
    ).get_reconstructable_job("sms_usage_report_job")
    own = _create_run(instance, own_job, rerun)
    execute_run(own_job, own, instance, raise_on_error=False)
    assert instance.get_run_by_id(own.run_id).status == dg.DagsterRunStatus.FAILURE  # still no password
    second, first = service.audit_log(USER, bad).runs  # newest first
    assert first.id == failed.id
    assert second.dagster_run_id == own.run_id and second.attempt == 2 and second.trigger == "retry"
    for report_id in good:
        (audit,) = service.audit_log(USER, report_id).runs
        assert audit.status == "SUCCESS"


def members_of_request(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["deliver_reports"]["config"]["report_ids"]
